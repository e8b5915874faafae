"""AudioSocket framing and the TCP listener, with a client speaking the protocol.

The FAKE ToneSession isolates the protocol; the real CallSession is tested over AudioSocket in
test_serve_real.py.
"""

import socket
import struct
import time
import uuid

import numpy as np
import pytest
from sipp.harness import ServerThread
from sipp.tone_session import ToneFactory

from ivr.phone import audiosocket as asock


class AudioSocketClient:
    """What Asterisk's AudioSocket() application does, over a blocking TCP socket."""

    def __init__(self, port: int, source: str | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=(source, 0) if source else None)

    def send(self, kind: int, payload: bytes = b"") -> None:
        self.sock.sendall(asock.encode(kind, payload))

    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def frame(self) -> tuple[int, bytes] | None:
        try:
            kind, length = struct.unpack("!BH", self.recv_exact(3))
            return kind, self.recv_exact(length)
        except (EOFError, ConnectionError):
            return None

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def factory(tmp_path):
    return ToneFactory(tmp_path / "logs", greeting_s=0.6)


@pytest.fixture
def server(factory):
    srv = ServerThread(factory, sip=None)
    try:
        yield srv
    finally:
        srv.close()


def wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not pred():
        time.sleep(0.02)
    return pred()


def test_frame_encoding_and_checks():
    call = uuid.uuid4()
    data = asock.uuid_frame(call)
    assert data[:3] == b"\x01\x00\x10" and data[3:] == call.bytes
    assert asock.encode(asock.KIND_AUDIO, b"\x00" * 320)[:3] == b"\x10\x01\x40"
    asock.check(asock.Frame(asock.KIND_DTMF, b"#"))
    asock.check(asock.Frame(0x02, bytes(320)))  # silence, and kinds we do not know, are skipped
    for bad in (asock.Frame(0x42, bytes(asock.MAX_OTHER + 1)), asock.Frame(asock.KIND_UUID, b"short"), asock.Frame(asock.KIND_AUDIO, b"odd"),
                asock.Frame(asock.KIND_DTMF, b"x"), asock.Frame(asock.KIND_DTMF, b"12")):
        with pytest.raises(asock.FrameError):
            asock.check(bad)


def test_call_with_audio_both_ways_a_key_and_hangup(server, factory, tmp_path):
    call = uuid.uuid4()
    c = AudioSocketClient(server.audiosocket_port)
    try:
        c.send(asock.KIND_UUID, call.bytes)
        frames = []
        start = time.monotonic()
        for i in range(40):
            c.send(asock.KIND_AUDIO, (np.full(160, 300 + i, dtype="<i2")).tobytes())
            frame = c.frame()
            assert frame is not None
            frames.append(frame)
        elapsed = time.monotonic() - start
        assert {k for k, _ in frames} == {asock.KIND_AUDIO} and {len(p) for _, p in frames} == {320}
        pcm = np.frombuffer(b"".join(p for _, p in frames), dtype="<i2")
        assert np.abs(pcm).max() > 4000  # the greeting tone, as signed 16-bit little-endian
        assert elapsed > 0.6  # paced by the 20 ms clock, not sent as fast as possible
        c.send(asock.KIND_DTMF, b"7")
        session = factory.sessions[str(call)]
        assert wait(lambda: session.digits == ["7"])
        assert wait(lambda: session.audio_frames >= 40)
        c.send(asock.KIND_HANGUP)
        assert wait(lambda: session.ended)
        assert session.events[-1] == {**session.events[-1], "type": "hangup", "reason": "caller"}
        assert (tmp_path / "logs" / f"{call}.jsonl").exists()
        assert wait(lambda: server.server.limiter.active == 0)
    finally:
        c.close()


def test_ivr_hangup_sends_hangup_frame(server, factory):
    call = uuid.uuid4()
    c = AudioSocketClient(server.audiosocket_port)
    try:
        c.send(asock.KIND_UUID, call.bytes)
        c.send(asock.KIND_DTMF, b"9")
        kinds = []
        while (frame := c.frame()) is not None:
            kinds.append(frame[0])
        assert kinds[-1] == asock.KIND_HANGUP and asock.KIND_AUDIO in kinds
        assert factory.sessions[str(call)].ended
    finally:
        c.close()


@pytest.mark.parametrize("junk,calls", [
    (b"\x10\x00\x10" + b"\x00" * 16, 0),  # audio before the call UUID
    (b"\x01\x00\x04abcd", 0),  # short UUID
    (b"\x01\x00\x10" + b"u" * 16 + b"\x42\x00\x00", 1),  # unknown kind
    (b"\x01\x00\x10" + b"u" * 16 + b"\x10\xff\xff", 1),  # oversized audio
    (b"\x01\x00\x10" + b"u" * 16 + b"\x10\x00\x03abc", 1),  # odd audio length
    (b"\x01\x00\x10" + b"u" * 16 + b"\x03\x00\x01z", 1),  # not a key
    (b"\x01\x00\x10" + b"u" * 16 + b"\x01\x00\x10" + b"v" * 16, 1),  # second UUID
    (b"\x01\x00", 0),  # truncated header, then the peer closes
])
def test_bad_frames_end_the_call_not_the_server(server, factory, junk, calls):
    """``calls``: a session exists only when a whole UUID frame came first."""
    c = AudioSocketClient(server.audiosocket_port)
    try:
        c.sock.sendall(junk)
        if junk == b"\x01\x00":
            c.sock.shutdown(socket.SHUT_WR)
        while c.frame() is not None:
            pass  # the server closes the connection
    finally:
        c.close()
    assert wait(lambda: server.server.limiter.active == 0)
    # the session is made on a worker thread, maybe after the connection is gone: wait for it; where none
    # may exist, watch for one for a second (one made by mistake would appear within milliseconds)
    if calls:
        wait(lambda: len(factory.sessions) >= calls)
    else:
        wait(lambda: len(factory.sessions) > 0, 1.0)
    assert len(factory.sessions) == calls, factory.sessions
    for session in factory.sessions.values():  # the call was ended and the session told so
        assert wait(lambda s=session: s.ended)
        assert session.events[-1]["type"] == "hangup", session.events
    good = AudioSocketClient(server.audiosocket_port)  # the listener still takes calls
    try:
        good.send(asock.KIND_UUID, uuid.uuid4().bytes)
        assert good.frame()[0] == asock.KIND_AUDIO
        good.send(asock.KIND_HANGUP)
    finally:
        good.close()


def test_max_calls_refuses_extra_connections(factory):
    srv = ServerThread(factory, sip=None, max_calls=1)
    a, b = AudioSocketClient(srv.audiosocket_port), None
    try:
        a.send(asock.KIND_UUID, uuid.uuid4().bytes)
        assert a.frame()[0] == asock.KIND_AUDIO
        b = AudioSocketClient(srv.audiosocket_port)
        b.send(asock.KIND_UUID, uuid.uuid4().bytes)
        assert b.frame() == (asock.KIND_HANGUP, b"")
    finally:
        a.close()
        if b:
            b.close()
        srv.close()


def test_silence_and_unknown_kinds_are_skipped(server, factory):
    call = uuid.uuid4()
    c = AudioSocketClient(server.audiosocket_port)
    try:
        c.send(asock.KIND_UUID, call.bytes)
        c.send(0x02, bytes(320))  # Asterisk's silence message
        c.send(0x7E, b"future")  # a kind added later
        c.send(asock.KIND_DTMF, b"4")
        assert wait(lambda: str(call) in factory.sessions and factory.sessions[str(call)].digits == ["4"])
        assert not factory.sessions[str(call)].ended
        c.send(asock.KIND_HANGUP)
        assert wait(lambda: factory.sessions[str(call)].ended)
    finally:
        c.close()


def test_connections_without_uuid_take_no_call_slot_and_are_closed(factory, tmp_path):
    srv = ServerThread(factory, sip=None, max_calls=2, max_pending=10, max_pending_per_source=3, uuid_timeout=1.0)
    silent = [AudioSocketClient(srv.audiosocket_port) for _ in range(5)]
    good = AudioSocketClient(srv.audiosocket_port, source="127.0.0.2")
    try:
        call = uuid.uuid4()
        good.send(asock.KIND_UUID, call.bytes)
        frame = good.frame()
        assert frame is not None and frame[0] == asock.KIND_AUDIO
        assert list(factory.sessions) == [str(call)]
        # the two beyond the per-source bound are refused at once, the others closed after uuid_timeout
        start = time.monotonic()
        for c in silent:
            while (f := c.frame()) is not None:
                assert f[0] == asock.KIND_HANGUP
        assert time.monotonic() - start < 5
        assert list(factory.sessions) == [str(call)] and len(list((tmp_path / "logs").glob("*"))) == 1
        assert srv.server.limiter.n_pending == 0 and srv.server.limiter.active == 1
        good.send(asock.KIND_HANGUP)
        assert wait(lambda: srv.server.limiter.active == 0 and factory.sessions[str(call)].ended)
    finally:
        for c in silent + [good]:
            c.close()
        srv.close()
