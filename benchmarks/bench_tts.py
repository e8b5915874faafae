"""Speech synthesis speed: render time per second of speech, cold and cached.

Prints, for short prompts and long FAQ answers at 8 kHz and 16 kHz:
- cold: the engine renders (pyttsx3 + espeak-ng + resampling), as "x real time" (seconds of speech
  per second of rendering) and ms per render (p50/p99);
- disk: a fresh cache reads the WAV files;
- memory: the in-memory LRU answers (p50/p99 in microseconds).
Also the first engine start in this process.

Run: .venv/bin/python benchmarks/bench_tts.py [--voice north] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.cli.say import prompt_texts  # noqa: E402
from ivr.content.faq import load_faq  # noqa: E402
from ivr.language.spoken import spoken_answer  # noqa: E402
from ivr.media.tts import Synthesizer, TtsCache  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voice", default="north")
    ap.add_argument("--repeat", type=int, default=3, help="cold renders of each text (default 3)")
    args = ap.parse_args()

    synth = Synthesizer(args.voice)
    start = time.perf_counter()
    synth.render("Xin chào", 8000)
    print(f"engine start + first render: {(time.perf_counter() - start) * 1000:.0f} ms")

    prompts, _ = prompt_texts()
    answers = [spoken_answer(e) for e in load_faq().entries]
    groups = {"short prompts": prompts, "long answers": answers}
    for name, texts in groups.items():
        words = [len(t.split()) for t in texts]
        print(f"{name}: {len(texts)} texts, {statistics.mean(words):.0f} words on average (max {max(words)})")

    print()
    print(f"{'texts':14} {'rate':>6} {'x real time':>12} {'cold p50 ms':>12} {'cold p99 ms':>12} "
          f"{'disk p50 ms':>12} {'disk p99 ms':>12} {'mem p50 us':>11} {'mem p99 us':>11}")
    for rate in (8000, 16000):
        for name, texts in groups.items():
            cold_ms: list[float] = []
            speech_s = render_s = 0.0
            for _ in range(args.repeat):
                for text in texts:
                    t0 = time.perf_counter()
                    x = synth.render(text, rate)
                    dt = time.perf_counter() - t0
                    cold_ms.append(dt * 1000)
                    render_s += dt
                    speech_s += len(x) / rate
            with tempfile.TemporaryDirectory() as tmp:
                TtsCache(synth, tmp).render_all(texts, rate, progress=False)
                disk_ms: list[float] = []
                for text in texts:
                    fresh = TtsCache(synth, tmp)
                    t0 = time.perf_counter()
                    fresh.get(text, rate)
                    disk_ms.append((time.perf_counter() - t0) * 1000)
                cache = TtsCache(synth, tmp)
                for text in texts:
                    cache.get(text, rate)
                mem_us: list[float] = []
                for _ in range(20):
                    for text in texts:
                        t0 = time.perf_counter()
                        cache.get(text, rate)
                        mem_us.append((time.perf_counter() - t0) * 1e6)
            print(f"{name:14} {rate:>6} {speech_s / render_s:>11.0f}x {pct(cold_ms, 50):>12.1f} "
                  f"{pct(cold_ms, 99):>12.1f} {pct(disk_ms, 50):>12.2f} {pct(disk_ms, 99):>12.2f} "
                  f"{pct(mem_us, 50):>11.0f} {pct(mem_us, 99):>11.0f}")
    print()
    print("x real time: seconds of speech produced per second of rendering (cold, engine + resampling).")
    print("disk: a new cache (spoken form, hash, WAV read); mem: the in-memory LRU (a repeated text skips both).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
