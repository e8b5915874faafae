#!/usr/bin/env python3
"""Kiosk echo cancellation (ivr/media/aec.py, libspeexdsp): how much of the IVR's own voice is removed from
the microphone, how fast, and at what CPU cost.

The IVR's greeting (espeak-ng, north voice) plays twice into simulated rooms (tests/room_echo.py: delay,
exponentially decaying random reverberation, fixed seed) at 16 kHz (kiosk) and 8 kHz. Printed per room:
- ERLE (echo return loss enhancement, dB) after convergence (from 4 s on), of the adaptive filter alone
  and with residual echo suppression; ERLE per second for the first 4 s (convergence);
- CPU real-time factor of the canceller (process time / audio time, one core);
- barge-in (ivr/media/duplex.py) on the echo alone (must be none; counted over four renders of the
  greeting, whose timing espeak-ng varies a little from render to render) and when a visitor (south voice)
  speaks over the second greeting: delay from the visitor's onset.

Usage: .venv/bin/python benchmarks/bench_aec.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from room_echo import echo_of, erle_db, impulse_response, mic_noise, to_pcm  # noqa: E402

from ivr.content import paths  # noqa: E402
from ivr.media.aec import EchoCanceller  # noqa: E402
from ivr.media.audio import resample  # noqa: E402
from ivr.media.duplex import DuplexMic  # noqa: E402
from ivr.media.tts import Synthesizer  # noqa: E402

ROOMS = [  # (name, delay ms, RT60 ms, echo level dB)
    ("small, quiet", 20, 100, -10),
    ("kiosk", 30, 150, -6),
    ("hall, loud", 60, 300, 0),
]


def run(rate: int, greetings: list[np.ndarray], visitor: np.ndarray, room) -> None:
    name, delay, rt60, gain = room
    greeting = greetings[0]
    frame = rate // 50
    g = resample(greeting, 16000, rate)
    v = resample(visitor, 16000, rate)
    speaker = np.concatenate([np.zeros(rate // 2, np.int16), g, g, np.zeros(rate, np.int16)])
    echo = echo_of(speaker, impulse_response(rate, delay_ms=delay, rt60_ms=rt60, gain_db=gain))
    noise = mic_noise(len(speaker))
    mic = to_pcm(echo + noise)
    tail = max(200, delay + rt60)
    with EchoCanceller(rate, frame, tail, suppress=False) as lin:
        out_lin = lin.process_signal(mic, speaker)
    with EchoCanceller(rate, frame, tail) as full:
        t0 = time.process_time()
        out = full.process_signal(mic, speaker)
        cpu = time.process_time() - t0
    late = slice(4 * rate, len(mic))
    curve = " ".join(f"{erle_db(echo[i:i + rate], out[i:i + rate]):.0f}" for i in range(0, 4 * rate, rate))

    def barge(signal, spk=speaker):
        d = DuplexMic(rate, tail_ms=tail)
        for i in range(0, len(signal) - frame + 1, frame):
            d.feed(signal[i:i + frame], spk[i:i + frame])
        d.close()
        return d.barge_ins

    at = len(g) + rate // 2 + 3 * rate
    near = np.zeros(len(speaker))
    near[at:at + len(v)] = v[: len(speaker) - at].astype(np.float64) * 10 ** (-3 / 20)
    echo_only = []
    for other in greetings:
        o = resample(other, 16000, rate)
        spk = np.concatenate([np.zeros(rate // 2, np.int16), o, o, np.zeros(rate, np.int16)])
        e = echo_of(spk, impulse_response(rate, delay_ms=delay, rt60_ms=rt60, gain_db=gain))
        echo_only += barge(to_pcm(e + mic_noise(len(spk))), spk)
    with_visitor = barge(to_pcm(echo + noise + near))
    delay_ms = [round((t - at / rate) * 1000) for t in with_visitor]
    print(f"{rate:>5} {name:<13} {tail:>4} {erle_db(echo[late], out_lin[late]):>9.1f} "
          f"{erle_db(echo[late], out[late]):>10.1f}   {curve:<14} {cpu / (len(mic) / rate):>7.4f} "
          f"{len(echo_only):>10} {str(delay_ms):>14}")


def main() -> int:
    prompts = yaml.safe_load((paths.prompts_dir() / "vi.yaml").read_text(encoding="utf-8"))
    greetings = [Synthesizer("north").render(prompts["greet_long"], 16000) for _ in range(4)]
    greeting = greetings[0]
    visitor = Synthesizer("south", rate_wpm=150).render("Tôi quên mã PIN thì phải làm sao", 16000)
    print(f"greeting {len(greeting) / 16000:.1f} s played twice; visitor {len(visitor) / 16000:.1f} s over the "
          f"second one")
    print(f"{'rate':>5} {'room':<13} {'tail':>4} {'ERLE lin':>9} {'ERLE +sup':>10}   {'ERLE 0-4 s':<14} "
          f"{'RTF':>7} {'echo b-in/4':>10} {'visitor b-in ms':>14}")
    for rate in (16000, 8000):
        for room in ROOMS:
            run(rate, greetings, visitor, room)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
