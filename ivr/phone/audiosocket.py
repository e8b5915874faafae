"""Asterisk AudioSocket framing (TCP): 1 byte kind, 2-byte big-endian length, payload.

Kinds: 0x00 hangup, 0x01 call UUID (16 bytes, the first message), 0x03 DTMF key (one ASCII byte),
0x10 signed 16-bit little-endian 8 kHz mono audio (20 ms = 320 bytes, both ways), 0xff error. Other kinds
(Asterisk sends 0x02 silence, later versions may add more) are skipped.
The dialplan line ``AudioSocket(${UUID},127.0.0.1:9092)`` connects a call to ``ivr serve``.

A connection is a call only once its UUID arrived: until then it is *pending* (bounded in all and per source
address, closed after ``uuid_timeout`` seconds) and has no session, no log and no call slot.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from dataclasses import dataclass

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF
KIND_SILENCE = 0x02
KINDS = {KIND_HANGUP, KIND_UUID, KIND_SILENCE, KIND_DTMF, KIND_AUDIO, KIND_ERROR}
MAX_OTHER = 4096  # bytes in one message of a kind we skip
MAX_AUDIO = 8000  # bytes in one audio message (0.5 s); Asterisk sends 320
DTMF_KEYS = "0123456789*#ABCD"


class FrameError(ValueError):
    """A frame that breaks the protocol: the call ends, the server goes on."""


@dataclass
class Frame:
    kind: int
    payload: bytes

    def to_bytes(self) -> bytes:
        return encode(self.kind, self.payload)


def encode(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > 0xFFFF:
        raise FrameError("payload longer than 65535 bytes")
    return struct.pack("!BH", kind, len(payload)) + payload


def uuid_frame(call: uuid.UUID | str) -> bytes:
    value = call if isinstance(call, uuid.UUID) else uuid.UUID(str(call))
    return encode(KIND_UUID, value.bytes)


def check(frame: Frame) -> None:
    """Raise ``FrameError`` for a frame whose kind or length is wrong."""
    kind, n = frame.kind, len(frame.payload)
    if kind not in KINDS and n > MAX_OTHER:
        raise FrameError(f"message of unknown kind 0x{kind:02x} with {n} bytes (at most {MAX_OTHER})")
    if kind == KIND_UUID and n != 16:
        raise FrameError(f"call UUID of {n} bytes (expected 16)")
    if kind == KIND_AUDIO and (n % 2 or n > MAX_AUDIO):
        raise FrameError(f"audio message of {n} bytes (expected an even length up to {MAX_AUDIO})")
    if kind == KIND_DTMF and (n != 1 or chr(frame.payload[0]) not in DTMF_KEYS):
        raise FrameError(f"DTMF message {frame.payload[:4]!r} is not one key")


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, or None at end of stream. Raises ``FrameError`` on a bad frame."""
    try:
        head = await reader.readexactly(3)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("connection closed inside a frame header") from None
        return None
    kind, length = struct.unpack("!BH", head)
    if kind == KIND_AUDIO and length > MAX_AUDIO:
        raise FrameError(f"audio message of {length} bytes (at most {MAX_AUDIO})")
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("connection closed inside a frame") from None
    frame = Frame(kind, payload)
    check(frame)
    return frame


# ---------------------------------------------------------------- server


class AudioSocketServer:
    """TCP listener: one call per connection, the session owned by a ``SessionWorker``.

    Audio to Asterisk is paced by the shared 20 ms ``MediaClock``. A bad frame, a silent peer (no message
    for ``idle_timeout`` seconds) or a full send buffer ends that call, never the listener.
    """

    def __init__(self, host: str, port: int, factory, limiter, allow, clock, idle_timeout: float = 60.0,
                 uuid_timeout: float = 3.0, admission=None):
        self.host, self.port = host, port
        self.admission = admission  # SpeechAdmission: speech for a new call only while decoding keeps up
        self.factory = factory
        self.limiter = limiter
        self.allow = allow
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.uuid_timeout = uuid_timeout
        self.server: asyncio.base_events.Server | None = None
        self.calls: dict[str, object] = {}
        self.workers: dict[str, object] = {}
        self.stats = {"calls": 0, "bad": 0, "refused": 0}
        self.closing: set[asyncio.Future] = set()  # sessions of ended calls still being let go
        self._handlers: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop_listening(self) -> None:
        if self.server:
            self.server.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._handlers.add(task)
        try:
            await self._handle(reader, writer)
        finally:
            self._handlers.discard(task)

    async def close(self) -> None:
        """Stop listening and end every connection's handler (shutdown, after the calls were hung up)."""
        self.stop_listening()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2.0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import logging

        import numpy as np

        from ivr.phone.worker import SessionWorker

        log = logging.getLogger("ivr.phone.audiosocket")
        peer = writer.get_extra_info("peername") or ("?", 0)
        if not self.allow.allows(peer[0]):
            writer.close()
            return
        if self.limiter.try_pending(peer[0]) is not None:
            self.stats["refused"] += 1
            writer.write(encode(KIND_HANGUP))
            writer.close()
            return
        pending = True
        slot = False
        worker = None
        token = None
        call_key = f"{peer[0]}:{peer[1]}"
        try:
            try:
                first = await asyncio.wait_for(read_frame(reader), self.uuid_timeout)
            except TimeoutError:
                log.info("AudioSocket connection from %s sent no call UUID within %.0f s: closed",
                         call_key, self.uuid_timeout)
                return
            if first is None:
                return
            if first.kind != KIND_UUID:
                raise FrameError("the first message must be the call UUID (kind 0x01)")
            call_id = str(uuid.UUID(bytes=first.payload))
            self.limiter.release_pending(peer[0])
            pending = False
            if self.limiter.try_acquire() is not None:
                self.stats["refused"] += 1
                writer.write(encode(KIND_HANGUP))
                return
            slot = True
            self.stats["calls"] += 1
            # AudioSocket has no refusal before answer: a busy line answers keypad-first either way
            speech = self.admission is None or self.admission.decide() == "speech"
            def ivr_hung_up() -> None:  # the worker's signal: the IVR's last frame was sent
                if not writer.is_closing():
                    writer.write(encode(KIND_HANGUP))
                    writer.close()

            worker = SessionWorker(self.factory, call_id, "audiosocket",
                                   lambda pcm: pcm.astype("<i2").tobytes(),
                                   lambda data: np.frombuffer(data, dtype="<i2").astype(np.int16),
                                   on_drained=ivr_hung_up, speech=speech)
            self.workers[call_key] = (worker, writer)
            worker.start()

            def tick(now: float, skipped: int) -> None:
                if writer.is_closing():
                    return
                frame = worker.pull()
                payload = frame[0] if frame else bytes(320)
                if writer.transport.get_write_buffer_size() > 64000:
                    log.info("call %s: peer does not read its audio, ending the call", call_id)
                    writer.close()
                    return
                if frame is not None or not worker.ivr_ended:
                    writer.write(encode(KIND_AUDIO, payload))

            token = self.clock.subscribe(tick)
            while True:
                frame = await asyncio.wait_for(read_frame(reader), self.idle_timeout)
                if frame is None or frame.kind in (KIND_HANGUP, KIND_ERROR):
                    break
                if frame.kind == KIND_AUDIO:
                    worker.feed(frame.payload)
                elif frame.kind == KIND_DTMF:
                    worker.digit(chr(frame.payload[0]))
                elif frame.kind == KIND_UUID:
                    raise FrameError("a second call UUID in the same connection")
                # any other kind (0x02 silence, kinds added later) is skipped
        except FrameError as exc:
            self.stats["bad"] += 1
            log.info("AudioSocket call from %s ended: %s", call_key, exc)
            if not writer.is_closing():
                writer.write(encode(KIND_HANGUP))
        except TimeoutError:
            log.info("AudioSocket call from %s: nothing received for %.0f s", call_key, self.idle_timeout)
        except (ConnectionError, OSError) as exc:
            log.info("AudioSocket call from %s: connection lost (%s)", call_key, exc)
        finally:
            if token is not None:
                self.clock.unsubscribe(token)
            if worker is not None:
                worker.hangup()  # tells the session unless it hung up itself
                self.closing.add(worker.finished)
                worker.finished.add_done_callback(self.closing.discard)
            self.workers.pop(call_key, None)
            if pending:
                self.limiter.release_pending(peer[0])
            if slot:
                self.limiter.release()
            if not writer.is_closing():
                writer.close()

    def goodbye_all(self) -> None:
        for worker, _ in list(self.workers.values()):
            worker.goodbye()

    def hang_up_all(self) -> None:
        for _, writer in list(self.workers.values()):
            if not writer.is_closing():
                writer.write(encode(KIND_HANGUP))
                writer.close()

    def active(self) -> int:
        """Calls in progress and connections still waiting for their call UUID."""
        return len(self._handlers)
