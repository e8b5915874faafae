"""RTP for the phone channel (RFC 3550): packets, the outgoing stream state, RFC 4733 keys, and a clock.

- ``RtpPacket.parse`` / ``build_packet``: the 12-byte header (CSRCs, extension and padding are skipped).
- ``RtpSender``: sequence numbers, timestamps and SSRC of one outgoing stream; the marker bit is set on the
  first packet of each talkspurt.
- ``TelephoneEvents``: RFC 4733 events -> keys, one key per event however many packets (updates and the
  three end-packet repeats) carry it: packets are grouped by RTP timestamp.
- ``MediaClock``: one 20 ms tick for every call of the process, scheduled against absolute monotonic times
  (start + n * 20 ms), so there is no drift; after a stall it skips the missed ticks instead of bursting.
- ``encode`` / ``decode``: G.711 PCMU/PCMA <-> int16 PCM.

Media source policy (documented choice): RTP is sent to the address and port of the caller's SDP, and only
packets from that address and port are accepted. When the SDP address is unusable (0.0.0.0 / port 0) the
stream latches onto the source of the first packet that arrives (symmetric RTP) and sends there.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FRAME_MS = 20
RATE = 8000
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 160
EVENT_KEYS = "0123456789*#ABCD"


class RtpError(ValueError):
    pass


@dataclass
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < 12:
            raise RtpError("shorter than an RTP header")
        b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
        if b0 >> 6 != 2:
            raise RtpError("not RTP version 2")
        offset = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:  # header extension
            if len(data) < offset + 4:
                raise RtpError("truncated header extension")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if b0 & 0x20:  # padding
            end -= data[-1]
        if offset > end:
            raise RtpError("header longer than the packet")
        return cls(b1 & 0x7F, seq, ts, ssrc, bool(b1 & 0x80), bytes(data[offset:end]))


def build_packet(payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes,
                 marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | payload_type, sequence & 0xFFFF,
                       timestamp & 0xFFFFFFFF, ssrc) + payload


class RtpSender:
    """State of one outgoing stream: random initial sequence/timestamp/SSRC (RFC 3550 5.1)."""

    def __init__(self, payload_type: int, rng: random.Random | None = None):
        rng = rng or random.SystemRandom()
        self.payload_type = payload_type
        self.sequence = rng.randrange(0, 0x10000)
        self.timestamp = rng.randrange(0, 0x100000000)
        self.ssrc = rng.randrange(1, 0x100000000)
        self.talking = False
        self.sent = 0

    def packet(self, payload: bytes, samples: int, speech: bool) -> bytes:
        """The next packet carrying ``payload`` (``samples`` long). ``speech``: the frame is not silence."""
        marker = speech and not self.talking or self.sent == 0
        self.talking = speech
        data = build_packet(self.payload_type, self.sequence, self.timestamp, self.ssrc, payload, marker)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self.sent += 1
        return data

    def skip(self, samples: int) -> None:
        """Time passed without a packet (a scheduler stall): advance the timestamp, not the sequence."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF


class TelephoneEvents:
    """RFC 4733 decoder: one key per event, deduplicated by RTP timestamp (and SSRC)."""

    def __init__(self, memory: int = 32):
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._memory = memory

    def feed(self, packet: RtpPacket) -> str | None:
        """The key this packet starts, or None (a repeat, an end packet of a known event, or not a key)."""
        if len(packet.payload) < 4:
            return None
        event = packet.payload[0]
        if event >= len(EVENT_KEYS):
            return None  # flash and tones other than keys
        ident = (packet.ssrc, packet.timestamp)
        if ident in self._seen:
            return None
        self._seen[ident] = None
        while len(self._seen) > self._memory:
            self._seen.popitem(last=False)
        return EVENT_KEYS[event]


def event_payload(key: str, end: bool, duration: int, volume: int = 10) -> bytes:
    return struct.pack("!BBH", EVENT_KEYS.index(key), (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


# ---------------------------------------------------------------- G.711


def _g711():
    from ivr.media import g711

    return g711


def encode(pcm: np.ndarray, codec: str) -> bytes:
    g711 = _g711()
    fn = g711.ulaw_encode if codec == "PCMU" else g711.alaw_encode
    out = fn(np.asarray(pcm, dtype=np.int16))
    return out if isinstance(out, bytes) else np.asarray(out, dtype=np.uint8).tobytes()


def decode(payload: bytes, codec: str) -> np.ndarray:
    g711 = _g711()
    fn = g711.ulaw_decode if codec == "PCMU" else g711.alaw_decode
    return np.asarray(fn(bytes(payload)), dtype=np.int16)


# ---------------------------------------------------------------- clock


class MediaClock:
    """Calls every subscriber once per 20 ms tick, at absolute times start + n * period (monotonic clock).

    A tick that comes more than ``max_late`` periods late is dropped: subscribers get ``skipped`` > 0 and
    advance their timestamps instead of sending a burst.
    """

    def __init__(self, period: float = FRAME_MS / 1000, max_late: int = 2):
        self.period = period
        self.max_late = max_late
        self._subs: dict[int, Callable[[float, int], None]] = {}
        self._task: asyncio.Task | None = None
        self._next_id = 0
        self.ticks = 0
        self.skipped = 0
        self.lateness: deque[float] = deque(maxlen=3000)  # seconds each recent tick ran after its due time

    def subscribe(self, fn: Callable[[float, int], None]) -> int:
        self._next_id += 1
        self._subs[self._next_id] = fn
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._next_id

    def unsubscribe(self, token: int) -> None:
        self._subs.pop(token, None)

    async def _run(self) -> None:
        start = time.monotonic()
        n = 0
        while self._subs:
            n += 1
            due = start + n * self.period
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            self.lateness.append(now - due)
            late = int((now - due) / self.period)
            skipped = 0
            if late > self.max_late:
                skipped = late
                n += late
                self.skipped += late
            self.ticks += 1
            for fn in list(self._subs.values()):
                try:
                    fn(now, skipped)
                except Exception:  # one broken call never stops the others' audio
                    import logging

                    logging.getLogger("ivr.phone.rtp").exception("media tick failed")
        self._task = None

    def lateness_ms(self) -> tuple[float, float, float]:
        """p50, p99 and max of how late recent ticks ran, in milliseconds."""
        if not self.lateness:
            return 0.0, 0.0, 0.0
        x = np.array(self.lateness) * 1000
        return float(np.percentile(x, 50)), float(np.percentile(x, 99)), float(x.max())

    async def close(self) -> None:
        self._subs.clear()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
