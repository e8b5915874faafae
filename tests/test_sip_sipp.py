"""sipp 3.6 as the caller: real SIP/RTP from another implementation.

Part of these tests run against the FAKE ToneSession (keys arriving, transport behaviour); the dialogue
tests with sipp use the real CallSession (tests/test_serve_real.py).
"""

import json
import time
from pathlib import Path

import pytest
import yaml
from sipp.harness import SIPP_DIR, ServerThread, pcap_rtp, run_sipp, scenario
from sipp.tone_session import ToneFactory

pytestmark = pytest.mark.realpeer

CAPTURES = yaml.safe_load((SIPP_DIR / "pcaps.yaml").read_text(encoding="utf-8"))["captures"]


def wait(pred, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred():
        time.sleep(0.02)
    return pred()


def capture(mode: str, faq_id: int | None = None) -> dict:
    return next(c for c in CAPTURES if c["mode"] == mode and (faq_id is None or c.get("faq_id") == faq_id))


@pytest.fixture
def tone(tmp_path):
    factory = ToneFactory(tmp_path / "logs", greeting_s=3.0)
    srv = ServerThread(factory, ring=0.1, t1=0.5, t2=4.0)
    try:
        yield srv, factory
    finally:
        srv.close()


@pytest.mark.parametrize("mode", ["rfc4733"])
def test_sipp_keys_reach_the_session_once_each(tone, tmp_path, mode):
    srv, factory = tone
    cap = capture(mode, 9)
    scen = scenario(tmp_path, "uac_play.xml", pcap=cap["file"], lead_ms=500, hold_ms=1500)
    result = run_sipp(scen, srv.sip_port, tmp_path)
    assert result.returncode == 0, result
    (session,) = factory.sessions.values()
    assert "".join(session.digits) == cap["keys"]
    assert wait(lambda: session.ended)
    assert session.events[-1]["type"] == "hangup" and session.events[-1]["reason"] == "caller"
    audio = [p for p in pcap_rtp(SIPP_DIR / cap["file"]) if p.payload_type == 0]
    assert session.audio_frames == len(audio)  # every PCMU packet between the events reached the session


def test_sipp_caller_hangs_up_during_the_greeting(tone, tmp_path):
    srv, factory = tone
    scen = scenario(tmp_path, "uac_play.xml", pcap=capture("rfc4733", 9)["file"], lead_ms=0, hold_ms=0)
    # plays nothing long: the BYE arrives while the 3 s greeting tone is still playing
    result = run_sipp(scen, srv.sip_port, tmp_path)
    assert result.returncode == 0, result
    (session,) = factory.sessions.values()
    assert wait(lambda: session.ended) and session.remaining > 0  # greeting cut short
    log = [json.loads(x) for x in (tmp_path / "logs" / f"{session.call_id}.jsonl").read_text().splitlines()]
    assert log[-1]["type"] == "hangup"


def test_sipp_cancel_before_answer(tmp_path):
    factory = ToneFactory(tmp_path / "logs")
    srv = ServerThread(factory, ring=5.0)
    try:
        result = run_sipp(scenario(tmp_path, "uac_cancel.xml"), srv.sip_port, tmp_path)
        assert result.returncode == 0, result
        assert wait(lambda: srv.call(lambda: len(srv.server.sip.calls)) == 0)
        assert factory.sessions == {}  # a call never confirmed never gets a session
        assert srv.server.limiter.active == 0 and srv.server.limiter.n_pending == 0
    finally:
        srv.close()


def test_sipp_options(tone, tmp_path):
    srv, _ = tone
    result = run_sipp(scenario(tmp_path, "uac_options.xml"), srv.sip_port, tmp_path)
    assert result.returncode == 0, result


def test_sipp_ten_concurrent_calls_all_answered(tone, tmp_path):
    srv, factory = tone
    cap = capture("rfc4733", 13)
    scen = scenario(tmp_path, "uac_play.xml", pcap=cap["file"], lead_ms=300, hold_ms=2500)
    result = run_sipp(scen, srv.sip_port, tmp_path, calls=10, concurrent=10, rate=50)
    assert result.returncode == 0, result
    assert len(factory.sessions) == 10
    assert wait(lambda: all(s.ended for s in factory.sessions.values()))
    assert all("".join(s.digits) == cap["keys"] for s in factory.sessions.values())
    logs = list(Path(tmp_path / "logs").glob("*.jsonl"))
    assert len(logs) == 10
