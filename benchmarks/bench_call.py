#!/usr/bin/env python3
"""Call session speed, with the TTS cache warm (every prompt and answer rendered beforehand).

- keypad turn: wall-clock time from feeding the 20 ms frame in which a key is recognised to the first
  non-silent IVR frame being available (feed_audio + read_audio), p50/p99 in ms;
- text turn: the same from a SpeechFinal (the recogniser's final, matcher, dialogue, TTS lookup) to the
  first non-silent frame; the recogniser itself is measured in benchmarks/bench_asr.py;
- simulated calls per second over the keypad call fixtures (`ivr call` without the speech model).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.channels.resources import Resources  # noqa: E402
from ivr.channels.session import CallSession  # noqa: E402
from ivr.cli.call import simulate_call  # noqa: E402
from ivr.core.events import SpeechFinal  # noqa: E402
from ivr.media.audio import read_audio  # noqa: E402
from ivr.media.dtmf import generate  # noqa: E402

RATE = 8000
FRAME = RATE // 50
CALLS = ROOT / "tests" / "fixtures" / "calls"


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p))


def first_sound(s: CallSession, pcm: np.ndarray, k: int, w0: float) -> float:
    """Read on (the prompt's leading silence) until a frame with sound; ms since ``w0``."""
    while not np.any(pcm):
        k += 1
        pcm = s.ivr_audio(FRAME, k * FRAME / RATE)
    return (time.perf_counter() - w0) * 1000


def keypad_turns(res: Resources, n: int) -> list[float]:
    out = []
    paths = ["1", "2", "3", "4"]
    for i in range(n):
        s = CallSession(res, call_id=f"b{i}", sample_rate=RATE)
        s.start(0.0)
        s.ivr_audio(FRAME, 0.0)
        tone = np.concatenate([np.zeros(FRAME * 10, np.int16), generate(paths[i % 4], RATE, 100, 100)])
        k = 0
        for j in range(0, len(tone), FRAME):
            before = len([e for e in s.events if e["type"] == "key"])
            w0 = time.perf_counter()
            s.feed_audio(tone[j:j + FRAME], k * FRAME / RATE)
            k += 1
            pcm = s.ivr_audio(FRAME, k * FRAME / RATE)
            if len([e for e in s.events if e["type"] == "key"]) > before:
                out.append(first_sound(s, pcm, k, w0))
                break
    return out


def text_turns(res: Resources, n: int) -> list[float]:
    import yaml as _yaml

    data = _yaml.safe_load((ROOT / "tests" / "data" / "eval_questions.yaml").read_text(encoding="utf-8"))
    items = data.get("questions", data) if isinstance(data, dict) else data
    texts = [q["text"] if isinstance(q, dict) else str(q) for q in items][:n]
    out = []
    for i, text in enumerate(texts):
        s = CallSession(res, call_id=f"t{i}", sample_rate=RATE)
        s.start(0.0)
        s.ivr_audio(FRAME, 0.0)
        w0 = time.perf_counter()
        s.call.send(SpeechFinal(text, 0.9, t=0.5))  # what feed_audio does with a recogniser's final
        out.append(first_sound(s, s.ivr_audio(FRAME, 0.52), 26, w0))
    return out


def main() -> int:
    res = Resources.load(model_path="none", tts_rate=RATE)
    t0 = time.perf_counter()
    warm = res.warm()
    print(f"TTS cache warm-up: {warm} in {time.perf_counter() - t0:.1f} s")
    keys = keypad_turns(res, 200)
    print(f"keypad turn -> first IVR audio: p50 {pct(keys, 50):.2f} ms, p99 {pct(keys, 99):.2f} ms (n={len(keys)})")
    texts = text_turns(res, 200)
    print(f"text turn (SpeechFinal) -> first IVR audio: p50 {pct(texts, 50):.2f} ms, "
          f"p99 {pct(texts, 99):.2f} ms (n={len(texts)})")
    manifest = yaml.safe_load((CALLS / "manifest.yaml").read_text(encoding="utf-8"))["calls"]
    files = [CALLS / c["file"] for c in manifest if c["model"] is None]
    audio = [read_audio(f, RATE)[0] for f in files]
    rounds = 3
    t0 = time.perf_counter()
    seconds = 0.0
    for _ in range(rounds):
        for a in audio:
            _, _, length = simulate_call(a, res)
            seconds += length / RATE
    wall = time.perf_counter() - t0
    calls = rounds * len(audio)
    print(f"simulated keypad calls: {calls / wall:.1f} calls/s, {seconds / wall:.0f}x real time "
          f"({calls} calls, {seconds:.0f} s of calls in {wall:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
