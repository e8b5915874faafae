"""`ivr serve` with the real call session (dialogue, DTMF receiver, TTS cache, call log), driven by real
peers: sipp over SIP/RTP and an AudioSocket client. Speech recognition is off here (--model none): the
keypad drives the dialogue; the voice path is covered by the session and ASR tests.
"""

import socket
import struct
import threading
import time
import uuid

import numpy as np
import pytest
import yaml
from sipp.harness import SIPP_DIR, IvrServe, SipClient, run_sipp, scenario

from ivr.media import dtmf
from ivr.phone import audiosocket as asock

pytestmark = pytest.mark.realpeer

CAPTURES = yaml.safe_load((SIPP_DIR / "pcaps.yaml").read_text(encoding="utf-8"))["captures"]


def capture(mode: str, faq_id: int) -> dict:
    return next(c for c in CAPTURES if c["mode"] == mode and c.get("faq_id") == faq_id)


@pytest.fixture(scope="module")
def menu():
    from ivr.content.faq import load_faq
    from ivr.content.prompts import load_prompts
    from ivr.core.menu import build_menu

    return build_menu(load_faq(), load_prompts())


@pytest.fixture
def serve(tmp_path):
    procs = []

    def start(*args):
        p = IvrServe(tmp_path, "--model", "none", *args)
        procs.append(p)
        return p

    try:
        yield start
    finally:
        for p in procs:
            p.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One `ivr serve` for the sipp call tests of this module (each test reads the logs of its own calls)."""
    ivr = IvrServe(tmp_path_factory.mktemp("shared-serve"), "--model", "none")
    try:
        yield ivr
    finally:
        code = ivr.terminate()
        assert code == 0


def logs_after(ivr: IvrServe, before: set, n: int, timeout: float = 20.0) -> list[list[dict]]:
    """The ``n`` call logs written since ``before`` (a set of paths), once each call has hung up."""
    import json

    end = time.monotonic() + timeout
    while True:
        paths = sorted(set(ivr.log_dir.glob("*.jsonl")) - before)
        logs = [[json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()] for p in paths]
        if len(logs) >= n and all(log and log[-1]["type"] == "hangup" for log in logs) or time.monotonic() > end:
            return logs
        time.sleep(0.05)  # the server and sipp need the CPU more than this loop does


def wait_until_refusing(probe: SipClient, timeout: float = 30.0) -> None:
    """Probe with offer-less INVITEs (fresh Call-IDs) until the server answers 503: while it still takes
    calls it answers 488 (no offer), and neither answer starts a call."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        probe.call_id = f"{uuid.uuid4()}@probe"
        probe.request("INVITE")
        resp = probe.wait_for(lambda m: m.status in (488, 503) and m.call_id == probe.call_id, 10)
        if resp.status == 503:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server still takes calls {timeout} s after SIGTERM")


def existing(ivr: IvrServe) -> set:
    return set(ivr.log_dir.glob("*.jsonl")) if ivr.log_dir.exists() else set()


def events_of(log: list[dict], kind: str) -> list[dict]:
    return [e for e in log if e["type"] == kind]


@pytest.mark.parametrize("mode,faq_id", [("rfc4733", 9), ("inband", 13)])
def test_sipp_keys_reach_the_answer(shared, tmp_path, menu, mode, faq_id):
    cap = capture(mode, faq_id)
    assert "".join(menu.path_to(faq_id)) == cap["keys"], "menu changed: run scripts/make_pcaps.py"
    before = existing(shared)
    scen = scenario(tmp_path, "uac_play.xml", pcap=cap["file"], lead_ms=1500, hold_ms=7000)
    result = run_sipp(scen, shared.sip_port, tmp_path)
    assert result.returncode == 0, f"{result}\n{shared.stderr()}"
    (log,) = logs_after(shared, before, 1)
    keys = events_of(log, "key")
    assert "".join(k["digit"] for k in keys) == cap["keys"]
    assert {k["via"] for k in keys} == {"signal" if mode == "rfc4733" else "tone"}
    answers = events_of(log, "answer")
    assert [a["faq_id"] for a in answers] == [faq_id]
    plays = events_of(log, "play")
    assert any(p.get("faq_id") == faq_id for p in plays)  # the answer itself started playing
    assert log[-1]["type"] == "hangup"


def test_sipp_caller_hangs_up_in_the_middle_of_the_greeting(shared, tmp_path):
    before = existing(shared)
    scen = scenario(tmp_path, "uac_play.xml", pcap=capture("rfc4733", 9)["file"], lead_ms=1200, hold_ms=0)
    result = run_sipp(scen, shared.sip_port, tmp_path)
    assert result.returncode == 0, f"{result}\n{shared.stderr()}"
    (log,) = logs_after(shared, before, 1)
    first_play = events_of(log, "play")[0]
    ended = {e["play_id"] for e in events_of(log, "play_end")}
    assert first_play["play_id"] not in ended and first_play["seconds"] > 2.0  # cut off mid-greeting
    assert log[-1]["type"] == "hangup" and log[-1].get("by") != "ivr"


def test_sipp_ten_concurrent_calls_reach_the_answer(shared, tmp_path):
    cap = capture("rfc4733", 9)
    before = existing(shared)
    scen = scenario(tmp_path, "uac_play.xml", pcap=cap["file"], lead_ms=1500, hold_ms=3000)
    result = run_sipp(scen, shared.sip_port, tmp_path, calls=10, concurrent=10, rate=20)
    assert result.returncode == 0, f"{result}\n{shared.stderr()}"
    logs = logs_after(shared, before, 10)
    assert len(logs) == 10
    for log in logs:
        assert [a["faq_id"] for a in events_of(log, "answer")] == [9]


def test_sigterm_refuses_new_calls_then_says_goodbye_and_hangs_up(serve, tmp_path):
    ivr = serve("--grace", "1")
    client = SipClient(ivr.sip_port)
    late = SipClient(ivr.sip_port)
    try:
        ok, _ = client.invite()
        answered = time.monotonic()  # the call's clock starts at the ACK, just after this
        time.sleep(0.5)
        code = {}
        waiter = threading.Thread(target=lambda: code.setdefault("rc", ivr.terminate(60)))
        sigterm_t = time.monotonic() - answered  # at or before the signal, in (at least) call time
        waiter.start()
        wait_until_refusing(late)
        late.call_id = f"{uuid.uuid4()}@late"
        late.request("INVITE", body=late.offer())
        assert late.status(503).get("Retry-After")
        heard = []
        client.rtp.settimeout(0.5)
        bye = None
        end = time.monotonic() + 30
        while time.monotonic() < end and bye is None:
            msg = client.receive(0.2)
            if msg is not None and msg.method == "BYE":
                bye = msg
            try:
                while True:
                    heard.append(client.rtp.recvfrom(2048)[0])
            except (TimeoutError, BlockingIOError):
                pass
        assert bye is not None
        client.reply(bye, 200)
        waiter.join(60)
        assert code.get("rc") == 0
    finally:
        client.close()
        late.close()
    (log,) = ivr.logs()
    goodbye = [p for p in events_of(log, "play") if p.get("prompt_id") == "goodbye"]
    assert goodbye and log[-1]["type"] == "hangup" and log[-1]["by"] == "ivr"
    assert goodbye[0]["t"] >= sigterm_t + 1.0 - 0.1, (goodbye, sigterm_t)  # after the 1 s grace period


class AudioSocketPeer:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.received = bytearray()
        self.kinds: list[int] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 3:
                    kind, n = struct.unpack("!BH", buf[:3])
                    if len(buf) < 3 + n:
                        break
                    self.kinds.append(kind)
                    if kind == asock.KIND_AUDIO:
                        self.received += buf[3 : 3 + n]
                    buf = buf[3 + n :]
        except OSError:
            return

    def send(self, kind: int, payload: bytes = b"") -> None:
        self.sock.sendall(asock.encode(kind, payload))

    def audio(self, pcm: np.ndarray) -> None:
        """Send ``pcm`` as 20 ms frames in real time."""
        start = time.monotonic()
        for i in range(0, len(pcm), 160):
            frame = pcm[i : i + 160]
            frame = np.pad(frame, (0, 160 - len(frame)))
            self.send(asock.KIND_AUDIO, frame.astype("<i2").tobytes())
            delay = start + (i // 160 + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def test_audiosocket_call_with_tones_a_dtmf_message_and_hangup(serve, menu):
    ivr = serve()
    faq_id = 10
    keys = "".join(menu.path_to(faq_id))
    call = uuid.uuid4()
    peer = AudioSocketPeer(ivr.audiosocket_port)
    try:
        peer.send(asock.KIND_UUID, call.bytes)
        peer.audio(np.zeros(8000, dtype=np.int16))  # 1 s into the greeting
        peer.audio(dtmf.generate(keys[0], rate=8000, tone_ms=100, gap_ms=200))  # first key in-band
        for key in keys[1:]:
            peer.send(asock.KIND_DTMF, key.encode())  # the rest as DTMF messages
        peer.audio(np.zeros(16000, dtype=np.int16))  # the answer starts
        peer.send(asock.KIND_HANGUP)
        time.sleep(0.5)
    finally:
        peer.sock.close()
    assert ivr.terminate() == 0
    (log,) = ivr.logs()
    start = events_of(log, "start")[0]
    assert start["channel"] == "audiosocket"
    assert start["call_id"] == str(call)  # identifiers are not masked: the log matches Asterisk's UUID
    assert [(k["digit"], k["via"]) for k in events_of(log, "key")] == [(keys[0], "tone")] + [
        (k, "signal") for k in keys[1:]]
    assert [a["faq_id"] for a in events_of(log, "answer")] == [faq_id]
    pcm = np.frombuffer(bytes(peer.received), dtype="<i2").astype(np.float64)
    assert len(pcm) >= 8000 * 3  # 20 ms frames kept coming for the whole call
    rms_db = 20 * np.log10(np.sqrt(np.mean(pcm[:8000] ** 2)) / 32768 + 1e-12)
    assert rms_db > -35  # the greeting is speech, not silence


def test_sipp_speech_with_keys_over_it(shared, tmp_path, menu):
    cap = next(c for c in CAPTURES if c["file"] == "speech_with_keys.pcap")
    node = menu
    for key in cap["keys"]:
        node = node.options[key]
    faq_id = node.faq_id  # where those keys lead in today's menu
    assert faq_id is not None
    before = existing(shared)
    scen = scenario(tmp_path, "uac_play.xml", pcap=cap["file"], lead_ms=500, hold_ms=5000)
    result = run_sipp(scen, shared.sip_port, tmp_path)
    assert result.returncode == 0, f"{result}\n{shared.stderr()}"
    (log,) = logs_after(shared, before, 1)
    assert "".join(k["digit"] for k in events_of(log, "key")) == cap["keys"]
    assert [a["faq_id"] for a in events_of(log, "answer")] == [faq_id]


def send_event(client: SipClient, key: str, port: int, ts: int) -> None:
    from ivr.phone import rtp

    for i in range(5):
        client.rtp.sendto(rtp.build_packet(101, ts // 8 + i, ts, 4242, rtp.event_payload(key, i == 4, 160 * (i + 1))),
                          ("127.0.0.1", port))


def answer_port(ok) -> int:
    return int(next(ln for ln in ok.body.decode().splitlines() if ln.startswith("m=audio")).split()[1])


def test_operator_transfer_refer_accepted(serve, menu):
    ivr = serve("--operator-uri", "sip:operator@127.0.0.1:5999")
    client = SipClient(ivr.sip_port)
    try:
        ok, local_tag = client.invite()
        time.sleep(1.0)
        send_event(client, "0", answer_port(ok), 8000)  # 0: a person, please
        refer = client.wait_for(lambda m: m.method == "REFER", 30)
        assert refer.get("Refer-To") == "<sip:operator@127.0.0.1:5999>"
        assert refer.get("From").endswith(f"tag={local_tag}")
        client.reply(refer, 202)
        client.request("NOTIFY", to_tag=local_tag, cseq=2, body="SIP/2.0 200 OK\r\n", ctype="message/sipfrag",
                       extra="Event: refer\r\nSubscription-State: terminated;reason=noresource\r\n")
        bye = client.wait_for(lambda m: m.method == "BYE", 10)
        client.reply(bye, 200)
    finally:
        client.close()
    assert ivr.terminate() == 0
    (log,) = ivr.logs()
    assert [e["target"] for e in events_of(log, "transfer")] == ["operator"]
    assert not events_of(log, "transfer_failed")
    # the outcome, in call time that never runs backwards
    assert [e["outcome"] for e in events_of(log, "transfer_outcome")] == ["attempted", "accepted", "completed"]
    times = [e["t"] for e in log]
    assert times == sorted(times), str([(e["t"], e["type"]) for e in log])
    assert refer.get("X-IVR-Menu-Path") == "0"  # the context for the operator
    from ivr.channels.calllog import report

    data = report([ivr.log_dir])
    assert (data["calls"], data["transfers"], data["transfers_completed"], data["transfers_failed"]) == (1, 1, 1, 0)


def test_operator_transfer_refused_goes_back_to_the_menu(serve):
    ivr = serve("--operator-uri", "sip:operator@127.0.0.1:5999")
    client = SipClient(ivr.sip_port)
    try:
        ok, local_tag = client.invite()
        time.sleep(1.0)
        send_event(client, "0", answer_port(ok), 8000)
        refer = client.wait_for(lambda m: m.method == "REFER", 30)
        client.reply(refer, 603)
        # the call goes on: read the socket for 2 s (a BYE would be sent at once and retransmitted)
        end = time.monotonic() + 2.0
        while (left := end - time.monotonic()) > 0:
            client.receive(min(0.1, left))
        assert not any(m.method == "BYE" for m in client.inbox), [client._line(m) for m in client.inbox]
        client.request("BYE", to_tag=local_tag, cseq=3)
        client.status(200, "BYE")
    finally:
        client.close()
    assert ivr.terminate() == 0
    (log,) = ivr.logs()
    (failed,) = events_of(log, "transfer_failed")
    assert "603" in failed["reason"]
    outcomes = events_of(log, "transfer_outcome")
    assert [e["outcome"] for e in outcomes] == ["attempted", "failed"] and "603" in outcomes[-1]["reason"]
    from ivr.channels.calllog import report

    data = report([ivr.log_dir])
    assert (data["transfers"], data["transfers_completed"], data["transfers_failed"]) == (1, 0, 1)
    assert any(p["t"] >= failed["t"] for p in events_of(log, "play"))  # the apology and the menu again


def test_idle_serve_exits_promptly_after_sigterm(serve, capsys):
    """After its calls ended, nothing of them is kept: SIGTERM with no call up ends the process at once
    (no wait for goodbyes, BYE answers or sessions that are gone)."""
    ivr = serve()
    c = SipClient(ivr.sip_port)
    try:
        ok, local_tag = c.invite()
        c.rtp.settimeout(10)
        c.rtp.recvfrom(2048)  # the greeting is flowing
        c.request("BYE", to_tag=local_tag, cseq=2)
        c.status(200, "BYE")
        a = socket.create_connection(("127.0.0.1", ivr.audiosocket_port), timeout=10)
        a.sendall(asock.uuid_frame(uuid.uuid4()))
        a.recv(3)
        a.sendall(asock.encode(asock.KIND_HANGUP))
        a.close()
        time.sleep(0.5)
    finally:
        c.close()
    start = time.monotonic()
    code = ivr.terminate(timeout=30)
    took = time.monotonic() - start
    with capsys.disabled():
        print(f"\n`ivr serve` with no call up: exit {took:.2f} s after SIGTERM")
    assert code == 0
    assert took < 5.0, f"took {took:.1f} s (goodbye timeout is 10 s): something of an ended call was waited for"
    assert "event loop: uvloop" in ivr.stderr_path.read_text()  # a declared dependency: it runs every RTP packet
