"""The speaking-caller load generator of benchmarks/bench_sip.py measures what callers hear: its shortcuts
(an in-kernel capture filter, loudness from the PCMU bytes, the reply search) must measure exactly what the
plain code did."""

import random
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ivr.media import g711

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_sip  # noqa: E402
import voice_caller  # noqa: E402


def test_loudness_from_the_pcmu_bytes_is_decode_and_max():
    rng = np.random.default_rng(0)
    payloads = [bytes([b]) for b in range(256)]
    payloads += [g711.ulaw_encode(rng.normal(0, s, 160).astype(np.int16)) for s in (3, 60, 150, 190, 250, 3000)
                 for _ in range(200)]
    loud = 0
    for p in payloads:
        want = bool(np.max(np.abs(g711.ulaw_decode(p).astype(np.int32))) > voice_caller.LOUD)
        assert bool(p.translate(None, voice_caller._QUIET_BYTES)) is want, p
        loud += want
    assert 0 < loud < len(payloads)


def _scan(rx, t, gap):
    """The reply search as first written: every packet in order."""
    prev = None
    for a, is_loud in rx:
        if not is_loud:
            continue
        if a >= t and (prev is None or a - prev >= gap):
            return a
        prev = a
    return None


def test_reply_search_matches_a_scan_of_every_packet():
    r = random.Random(1)
    for _ in range(500):
        caller = voice_caller.VoiceCaller(("127.0.0.1", 5060), voice_caller.Speech([], 0.0), "")
        t, p = 0.0, r.choice([0.1, 0.5, 0.9])
        for _ in range(r.randint(0, 300)):
            t += 0.02
            caller._on_rtp(b"\x80\x00" + bytes(10) + (b"\x00" * 160 if r.random() < p else b"\xff" * 160), None, t)
        for _ in range(5):
            at, gap = r.uniform(-1, 7), r.choice([0.0, 0.02, 0.1, 0.6])
            assert caller.sound_after(at, gap) == _scan(caller.result.rx, at, gap)


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def rtp(seq: int, ssrc: int) -> bytes:
    return b"\x80\x00" + struct.pack("!HII", seq, 0, ssrc) + bytes(160)


def test_capture_filter_passes_only_what_the_port_range_sends():
    """The BPF program alone, on a raw socket of its own: the kernel hands over only the outgoing copies of
    the packets sent from the port range (not their received copies, not other ports' packets)."""
    server, caller, other = udp(), udp(), udp()
    port = server.getsockname()[1]
    try:
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    except PermissionError:
        pytest.skip("AF_PACKET capture needs root or CAP_NET_RAW")
    bench_sip.attach_filter(raw, bench_sip.udp_source_filter(port, port))
    raw.bind(("lo", 0))
    raw.settimeout(0.5)
    try:
        for i in range(30):
            server.sendto(rtp(i, 1111), caller.getsockname())
            other.sendto(rtp(i, 2222), server.getsockname())
            caller.sendto(rtp(i, 3333), other.getsockname())
        got = []
        while True:
            try:
                data, addr = raw.recvfrom(2048)
            except TimeoutError:
                break
            got.append((addr[2], struct.unpack_from("!H", data, 14 + 20)[0]))
    finally:
        for s in (server, caller, other, raw):
            s.close()
    assert got == [(bench_sip.PACKET_OUTGOING, port)] * 30


def test_capture_times_each_packet_the_range_sends_once():
    server, caller, other = udp(), udp(), udp()
    port = server.getsockname()[1]
    try:
        cap = bench_sip.Capture(port, port)
    except PermissionError:
        pytest.skip("AF_PACKET capture needs root or CAP_NET_RAW")
    cap.recording = True
    cap.start()
    time.sleep(0.2)
    try:
        for i in range(30):
            server.sendto(rtp(i, 1111), caller.getsockname())
            other.sendto(rtp(i, 2222), server.getsockname())
        end = time.monotonic() + 5
        while len(cap.packets.get(1111, [])) < 30 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        cap.stop_flag = True
        cap.join(2)
        for s in (server, caller, other):
            s.close()
    assert {k: len(v) for k, v in cap.packets.items()} == {1111: 30}
