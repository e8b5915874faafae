"""Write the RTP captures sipp plays in the phone tests (tests/sipp/*.pcap) and their manifest.

Pure Python pcap writing: Ethernet + IPv4 + UDP + RTP, one 20 ms packet every 20 ms (the capture
timestamps pace sipp's play_pcap_audio). sipp rewrites addresses and ports, not the RTP header, so every
capture gets its own SSRC and timestamp base (RFC 4733 events are told apart by SSRC and timestamp).

Captures:
- keys_faq<N>_rfc4733.pcap: the keys leading to FAQ entry N in the keypad menu, as RFC 4733 telephone-event
  packets (payload type 101, five updates and three end packets per key) between PCMU silence;
- keys_faq<N>_inband.pcap: the same keys as in-band DTMF tones in PCMU audio;
- speech_with_keys.pcap: a recorded caller sentence with keys over it (a fixture WAV), PCMU.
Run: .venv/bin/python scripts/make_pcaps.py   (rewrites tests/sipp/pcaps.yaml too)
"""

from __future__ import annotations

import hashlib
import struct
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.media import g711  # noqa: E402
from ivr.phone import rtp  # noqa: E402

OUT = ROOT / "tests" / "sipp"
EVENT_PT = 101
FRAME = 160
LEAD_S = 0.4
TONE_MS = 100
GAP_MS = 200
ANSWERS = (9, 13)  # FAQ entries whose key paths get captures (two and two keys deep)


def pcap_header() -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(payload: bytes, ident: int, sport: int = 6000, dport: int = 6000) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    src, dst = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + udp


def write_pcap(path: Path, packets: list[tuple[float, bytes]]) -> None:
    out = [pcap_header()]
    for i, (t, data) in enumerate(packets):
        frame = udp_frame(data, i)
        sec = int(t)
        usec = int(round((t - sec) * 1e6))
        out.append(struct.pack("<IIII", 1_700_000_000 + sec, usec, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


class Stream:
    """An RTP stream being laid out in time: audio frames and RFC 4733 events."""

    def __init__(self, name: str):
        seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
        self.ssrc = (seed & 0xFFFFFFFF) or 1
        self.seq = (seed >> 32) & 0xFFFF
        self.ts = (seed >> 16) & 0x7FFFFFFF
        self.t = 0.0
        self.packets: list[tuple[float, bytes]] = []
        self.talking = False

    def _add(self, pt: int, payload: bytes, marker: bool, ts: int | None = None) -> None:
        data = rtp.build_packet(pt, self.seq, self.ts if ts is None else ts, self.ssrc, payload, marker)
        self.packets.append((self.t, data))
        self.seq = (self.seq + 1) & 0xFFFF

    def audio(self, pcm: np.ndarray) -> None:
        pcm = np.asarray(pcm, dtype=np.int16)
        pad = (-pcm.size) % FRAME
        pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])
        for i in range(0, pcm.size, FRAME):
            frame = pcm[i : i + FRAME]
            speech = bool(np.abs(frame).max() > 200)
            self._add(0, g711.ulaw_encode(frame), speech and not self.talking)
            self.talking = speech
            self.ts += FRAME
            self.t += 0.02

    def silence(self, seconds: float) -> None:
        self.audio(np.zeros(int(seconds * 8000), dtype=np.int16))

    def event(self, key: str, ms: int = TONE_MS) -> None:
        """One key: update packets every 20 ms, then the end packet three times (RFC 4733 2.5.1.4)."""
        start_ts = self.ts
        steps = ms // 20
        for i in range(steps):
            self._add(EVENT_PT, rtp.event_payload(key, False, FRAME * (i + 1)), i == 0, start_ts)
            self.t += 0.02
        for _ in range(3):
            self._add(EVENT_PT, rtp.event_payload(key, True, FRAME * steps), False, start_ts)
        self.ts += FRAME * steps


def key_path(faq_id: int) -> str:
    from ivr.content.faq import load_faq
    from ivr.content.prompts import load_prompts
    from ivr.core.menu import build_menu

    path = build_menu(load_faq(), load_prompts()).path_to(faq_id)
    if not path:
        raise SystemExit(f"FAQ {faq_id} is not reachable from the keypad menu")
    return "".join(path)


def main() -> int:
    from ivr.media import dtmf
    from ivr.media.audio import read_audio

    manifest = []
    for faq_id in ANSWERS:
        keys = key_path(faq_id)
        name = f"keys_faq{faq_id:02d}_rfc4733.pcap"
        s = Stream(name)
        s.silence(LEAD_S)
        for key in keys:
            s.event(key)
            s.silence(GAP_MS / 1000)
        write_pcap(OUT / name, s.packets)
        manifest.append({"file": name, "mode": "rfc4733", "keys": keys, "faq_id": faq_id,
                         "seconds": round(s.t, 2)})
        name = f"keys_faq{faq_id:02d}_inband.pcap"
        s = Stream(name)
        s.silence(LEAD_S)
        s.audio(dtmf.generate(keys, rate=8000, tone_ms=TONE_MS, gap_ms=GAP_MS))
        s.silence(0.2)
        write_pcap(OUT / name, s.packets)
        manifest.append({"file": name, "mode": "inband", "keys": keys, "faq_id": faq_id, "seconds": round(s.t, 2)})
    source = ROOT / "tests" / "fixtures" / "audio" / "speech_with_keys_12_8k_ulaw.wav"
    pcm, _ = read_audio(source, 8000)
    name = "speech_with_keys.pcap"
    s = Stream(name)
    s.audio(pcm)
    write_pcap(OUT / name, s.packets)
    manifest.append({"file": name, "mode": "inband", "keys": "12", "source": source.name,
                     "seconds": round(s.t, 2)})
    header = "# Written by scripts/make_pcaps.py: the RTP captures sipp plays in tests/test_sip_sipp.py.\n"
    (OUT / "pcaps.yaml").write_text(header + yaml.safe_dump({"captures": manifest}, sort_keys=False,
                                                             allow_unicode=True), encoding="utf-8")
    for item in manifest:
        print(f"{item['file']}: {item['mode']} keys {item['keys']} ({item['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
