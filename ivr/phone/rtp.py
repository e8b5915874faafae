"""RTP for the phone channel (RFC 3550): packets, the outgoing stream state, RFC 4733 keys, and a clock.

- ``RtpPacket.parse`` / ``build_packet``: the 12-byte header (CSRCs, extension and padding are skipped).
- ``RtpSender``: sequence numbers, timestamps and SSRC of one outgoing stream; the marker bit is set on the
  first packet of each talkspurt.
- ``TelephoneEvents``: RFC 4733 events -> keys, one key per event however many packets (updates and the
  three end-packet repeats) carry it: packets are grouped by RTP timestamp.
- ``encode`` / ``decode``: G.711 PCMU/PCMA <-> int16 PCM.

Media source policy (ivr/phone/sip/server.py applies it): RTP is sent at once to the SDP address and port
only when that address is the signalling source's or inside ``media_networks``; otherwise (another host, or
0.0.0.0 / port 0) the stream latches onto the source of the first packet that arrives from the signalling
source's address or the SDP address (symmetric RTP) and sends there. Only packets from the stream's remote
address and port are accepted.
"""

from __future__ import annotations

import random
import struct
from collections import OrderedDict
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
