"""RTP packets, the outgoing stream state, RFC 4733 keys and the media clock."""

import asyncio
import random
import time

import numpy as np
import pytest

from ivr.phone import rtp
from ivr.phone.clock import MediaClock


def test_packet_round_trip_and_header_fields():
    data = rtp.build_packet(0, 65535, 2**32 - 1, 0x11223344, b"\xff" * 160, marker=True)
    pkt = rtp.RtpPacket.parse(data)
    assert (pkt.payload_type, pkt.sequence, pkt.timestamp, pkt.ssrc, pkt.marker) == (0, 65535, 2**32 - 1,
                                                                                     0x11223344, True)
    assert pkt.payload == b"\xff" * 160


def test_parse_skips_csrc_extension_and_padding():
    head = bytes([0x80 | 0x20 | 0x10 | 0x01, 8]) + (5).to_bytes(2, "big") + (7).to_bytes(4, "big") + b"SSRC"
    csrc = b"CSRC"
    ext = b"\xbe\xde\x00\x01" + b"EXT!"
    payload = b"abc"
    padding = b"\x00\x00\x03"
    pkt = rtp.RtpPacket.parse(head + csrc + ext + payload + padding)
    assert pkt.payload == b"abc" and pkt.payload_type == 8


@pytest.mark.parametrize("data", [b"", b"\x80\x00", b"\x40" + bytes(20), bytes([0x8F]) + bytes(20),
                                  bytes([0x90]) + bytes(13)])
def test_bad_packets_raise_rtp_error(data):
    with pytest.raises(rtp.RtpError):
        rtp.RtpPacket.parse(data)


def test_sender_sequence_timestamp_and_marker_on_talkspurts():
    sender = rtp.RtpSender(0, random.Random(1))
    speech = [False, True, True, False, False, True]
    packets = [rtp.RtpPacket.parse(sender.packet(b"x" * 160, 160, s)) for s in speech]
    seqs = [p.sequence for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    stamps = [p.timestamp for p in packets]
    assert all((b - a) % 2**32 == 160 for a, b in zip(stamps, stamps[1:], strict=False))
    assert len({p.ssrc for p in packets}) == 1
    # first packet of the stream and first packet of each talkspurt
    assert [p.marker for p in packets] == [True, True, False, False, False, True]
    sender.skip(320)
    after = rtp.RtpPacket.parse(sender.packet(b"x" * 160, 160, True))
    assert after.timestamp == (stamps[-1] + 160 + 320) % 2**32 and after.sequence == (seqs[-1] + 1) % 65536


def test_sequence_wraps():
    sender = rtp.RtpSender(8, random.Random(2))
    sender.sequence = 65535
    a = rtp.RtpPacket.parse(sender.packet(b"", 160, False))
    b = rtp.RtpPacket.parse(sender.packet(b"", 160, False))
    assert (a.sequence, b.sequence) == (65535, 0)


def _event_stream(key: str, ts: int, ssrc: int = 5, packets: int = 6, end_repeats: int = 3):
    seq = 100
    out = []
    for i in range(packets):
        out.append(rtp.RtpPacket(101, seq, ts, ssrc, i == 0, rtp.event_payload(key, False, 160 * (i + 1))))
        seq += 1
    for _ in range(end_repeats):
        out.append(rtp.RtpPacket(101, seq, ts, ssrc, False, rtp.event_payload(key, True, 160 * packets)))
        seq += 1
    return out


def test_telephone_events_one_key_per_event():
    dec = rtp.TelephoneEvents()
    keys = []
    for key, ts in (("1", 1000), ("#", 3000), ("1", 5000), ("*", 7000), ("D", 9000)):
        for pkt in _event_stream(key, ts):
            k = dec.feed(pkt)
            if k:
                keys.append(k)
    assert keys == ["1", "#", "1", "*", "D"]


def test_telephone_events_lost_start_reordered_and_non_keys():
    dec = rtp.TelephoneEvents()
    stream = _event_stream("5", 4000)
    assert dec.feed(stream[-1]) == "5"  # only an end packet arrived first
    assert all(dec.feed(p) is None for p in stream)
    flash = rtp.RtpPacket(101, 1, 8000, 5, True, bytes([16, 0, 0, 160]))
    assert dec.feed(flash) is None
    assert dec.feed(rtp.RtpPacket(101, 1, 9000, 5, True, b"\x01")) is None  # short payload


def test_g711_codec_adapters():
    tone = (8000 * np.sin(np.arange(160) / 5)).astype(np.int16)
    for codec in ("PCMU", "PCMA"):
        payload = rtp.encode(tone, codec)
        assert len(payload) == 160
        back = rtp.decode(payload, codec)
        assert back.dtype == np.int16 and np.max(np.abs(back.astype(int) - tone)) < 300


def grid_offsets(period: float, seen: list[tuple[float, int]]) -> list[float]:
    """Each delivered tick's time minus its slot on the clock's grid, n * period (the grid's start is the
    same unknown constant in all of them).

    The slot index n of the k-th tick (from 1) is k plus every tick skipped so far, this one included.
    """
    out, skipped_so_far = [], 0
    for k, (now, skipped) in enumerate(seen, 1):
        skipped_so_far += skipped
        out.append(now - (k + skipped_so_far) * period)
    return out


@pytest.mark.parametrize("period,n", [(0.02, 50), (0.005, 200)])
def test_media_clock_has_no_drift(period, n):
    """1 s of ticks at the telephone frame period, and at 5 ms, where a clock that schedules each tick
    from the previous one (about 0.4 ms late each time here) drifts well past the window below."""
    async def run():
        clock = MediaClock(period=period)
        seen = []

        def tick(now, skipped):
            seen.append((now, skipped))
            if len(seen) >= n:
                clock.unsubscribe(token)

        token = clock.subscribe(tick)
        while len(seen) < n:
            await asyncio.sleep(0.05)
        await clock.close()
        return clock, seen

    begin = time.monotonic()
    clock, seen = asyncio.run(run())
    assert time.monotonic() - begin < 30  # liveness only: 1 s of ticks, however loaded the machine
    # every tick ran on the start + k*period grid, never early and never more than max_late periods late,
    # whatever the load (a late tick is skipped, not shifted): the offsets from the grid stay within that
    # window from the first tick to the last instead of growing tick after tick
    offsets = grid_offsets(clock.period, seen)
    assert max(offsets) - min(offsets) < (clock.max_late + 1) * clock.period + 1e-6, offsets


def test_media_clock_skips_after_a_stall_instead_of_bursting():
    async def run():
        clock = MediaClock()
        seen = []

        def tick(now, skipped):
            seen.append((now, skipped))
            if len(seen) == 3:
                time.sleep(0.2)  # a stalled loop: 10 ticks missed

        token = clock.subscribe(tick)
        while len(seen) < 16:
            await asyncio.sleep(0.02)
        clock.unsubscribe(token)
        await clock.close()
        return clock, seen

    clock, seen = asyncio.run(run())
    # the first tick after the stall reports the missed slots as skipped (>= 9 of the 10)...
    assert seen[3][1] >= 8, seen
    # ...and the 13 ticks from it on are not delivered back to back to catch up: over any stretch of them there
    # are no more ticks than grid slots in it (plus the max_late + 1 a late tick may lag behind its slot)
    after = [now for now, _ in seen[3:]]
    for i in range(len(after)):
        for j in range(i + 1, len(after)):
            slots = (after[j] - after[i]) / clock.period
            assert j - i <= slots + clock.max_late + 1, (i, j, after)
