"""DTMF receiver throughput and accuracy on a 10-minute 8 kHz call-like recording, next to multimon-ng.

The recording is built here: Vietnamese speech from espeak-ng (three voices, several speeds), keypad
bursts (random keys, 40-150 ms tones and pauses, -8..-28 dBFS, some twist), silence, and white/pink noise
with keys inside it at 15-25 dB SNR. Our receiver runs on the whole file and streaming in 20 ms frames;
multimon-ng (`-a DTMF -t raw`, which wants 22.05 kHz signed 16-bit raw, made with sox) runs on the same
audio in the same run. Prints x real time and digit counts; asserts nothing.

    .venv/bin/python benchmarks/bench_dtmf.py [--seconds 600] [--keep DIR]
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.content.paths import faq_dir  # noqa: E402
from ivr.media import audio, dtmf  # noqa: E402

RATE = 8000
VOICES = [("vi", 120), ("vi", 175), ("vi-vn-x-central", 150), ("vi-vn-x-central", 220), ("vi-vn-x-south", 135),
          ("vi-vn-x-south", 200)]


def _speech_pool(tmp: Path) -> list[np.ndarray]:
    text = (faq_dir() / "source" / "smartca_faq_page.txt").read_text(encoding="utf-8")
    pool = []
    procs = []
    for i, (voice, speed) in enumerate(VOICES):
        p = tmp / f"speech{i}.wav"
        procs.append((subprocess.Popen(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(p), text]), p))
    for proc, p in procs:
        if proc.wait() != 0:
            raise SystemExit(f"espeak-ng failed for {p}")
        x, _ = audio.read_audio(p, RATE, max_seconds=3600)
        pool.append(x)
    return pool


def build(seconds: float, tmp: Path, seed: int = 2026):
    """Return (int16 signal, list of (digit, start, end) truth)."""
    rng = np.random.default_rng(seed)
    pool = _speech_pool(tmp)
    total = int(seconds * RATE)
    out = np.zeros(total, dtype=np.float64)
    truth = []
    pos = 0

    def keys_at(at: int, snr_noise: str | None):
        n_keys = int(rng.integers(3, 9))
        keys = "".join(rng.choice(list(dtmf.KEYS), n_keys))
        level = float(rng.uniform(-28, -8))
        t = at
        for k in keys:
            tone_ms = float(rng.uniform(40, 150))
            gap_ms = float(rng.uniform(40, 150))
            tone = dtmf.generate(k, RATE, tone_ms, 0, level, twist_db=float(rng.uniform(-4, 2)))
            if t + len(tone) >= total:
                break
            out[t : t + len(tone)] += tone
            truth.append((k, t / RATE, (t + len(tone)) / RATE))
            t += len(tone) + int(gap_ms * RATE / 1000)
        if snr_noise:
            seg = slice(at, min(t, total))
            n = seg.stop - seg.start
            sig_power = 10 ** (level / 10) / 2 * 32768**2 * 2
            snr = float(rng.uniform(15, 25))
            out[seg] += audio.noise(n, snr_noise, rng) * np.sqrt(sig_power / 10 ** (snr / 10))
        return t

    while pos < total - RATE:
        kind = rng.choice(["speech", "keys", "silence", "noise"], p=[0.45, 0.3, 0.1, 0.15])
        if kind == "speech":
            src = pool[int(rng.integers(len(pool)))]
            n = int(rng.uniform(6, 15) * RATE)
            i = int(rng.integers(0, len(src) - n))
            seg = src[i : i + n].astype(np.float64) * 10 ** (rng.uniform(-14, 0) / 20)
            n = min(n, total - pos)
            out[pos : pos + n] += seg[:n]
            pos += n
        elif kind == "keys":
            pos = keys_at(pos, None)
        elif kind == "silence":
            pos += int(rng.uniform(0.5, 2.0) * RATE)
        else:
            n = min(int(rng.uniform(2, 5) * RATE), total - pos)
            noise_kind = str(rng.choice(["white", "pink"]))
            if rng.random() < 0.5:
                pos = max(pos + n, keys_at(pos, noise_kind))
            else:
                out[pos : pos + n] += audio.noise(n, noise_kind, rng) * 32768 * 10 ** (rng.uniform(-40, -20) / 20)
                pos += n
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16), truth


def _score(events, truth, tol=0.03):
    """Matched by digit and time overlap; returns (matched, missed, false, max edge error ms)."""
    used = set()
    matched, edge = 0, 0.0
    for e in events:
        for j, (k, s, f) in enumerate(truth):
            if j not in used and k == e.digit and e.start < f + tol and e.end > s - tol:
                used.add(j)
                matched += 1
                edge = max(edge, abs(e.start - s) * 1000, abs(e.end - f) * 1000)
                break
    return matched, len(truth) - matched, len(events) - matched, edge


def _timed(fn, repeat=3):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--keep", help="keep the built WAV in this directory")
    args = ap.parse_args()
    for tool in ("espeak-ng", "sox", "multimon-ng"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (make setup installs it)")

    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        t0 = time.perf_counter()
        x, truth = build(args.seconds, tmp)
        dur = len(x) / RATE
        wav = tmp / "bench.wav"
        audio.write_wav(wav, x, RATE)
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(wav, Path(args.keep) / "bench_dtmf_8k.wav")
        print(f"built {dur:.0f} s at {RATE} Hz in {time.perf_counter() - t0:.1f} s: {len(truth)} key presses, "
              f"speech from espeak-ng ({len(VOICES)} voice/speed pairs), silence, white/pink noise")
        truth_digits = "".join(k for k, _, _ in truth)

        whole, t_whole = _timed(lambda: dtmf.detect(x, RATE))

        def streaming():
            rx = dtmf.DtmfReceiver(RATE)
            found = []
            for f in audio.frames(x, RATE, audio.FRAME_MS):
                found += rx.feed(f)
            return found + rx.flush()

        streamed, t_stream = _timed(streaming)

        raw = tmp / "bench.raw"
        t0 = time.perf_counter()
        subprocess.run(["sox", str(wav), "-t", "raw", "-r", "22050", "-e", "signed-integer", "-b", "16", "-c", "1",
                        str(raw)], check=True, capture_output=True)
        t_sox = time.perf_counter() - t0

        def multimon():
            p = subprocess.run(["multimon-ng", "-q", "-a", "DTMF", "-t", "raw", str(raw)],
                               capture_output=True, text=True, check=True)
            return "".join(line.split(":", 1)[1].strip() for line in p.stdout.splitlines()
                           if line.startswith("DTMF:"))

        mm_digits, t_mm = _timed(multimon)

    print(f"\n{'receiver':34} {'x real time':>12} {'digits':>7} {'matched':>8} {'missed':>7} {'false':>6} "
          f"{'edge err':>9}")
    for name, ev, t in (("ivr.media.dtmf whole file", whole, t_whole), ("ivr.media.dtmf streaming, 20 ms frames", streamed, t_stream)):
        m, miss, false, edge = _score(ev, truth)
        print(f"{name:34} {dur / t:12.0f} {len(ev):7d} {m:8d} {miss:7d} {false:6d} {edge:7.1f}ms")
    sm = difflib.SequenceMatcher(None, truth_digits, mm_digits, autojunk=False)
    mm_match = sum(b.size for b in sm.get_matching_blocks())
    print(f"{'multimon-ng -a DTMF (22.05 kHz raw)':34} {dur / t_mm:12.0f} {len(mm_digits):7d} {mm_match:8d} "
          f"{len(truth_digits) - mm_match:7d} {len(mm_digits) - mm_match:6d} {'n/a':>9}")
    print(f"\ntruth: {len(truth_digits)} key presses; multimon-ng matched by digit-sequence alignment (it prints no "
          f"times); sox 8 k -> 22.05 k resampling for it took {t_sox:.2f} s (not counted above)")
    print(f"times are the median of 3 runs; {dur:.0f} s of audio; ivr.media.dtmf whole file {t_whole:.3f} s, "
          f"streaming {t_stream:.3f} s, multimon-ng {t_mm:.3f} s")
    per_frame(x)
    return 0


def per_frame(mix: np.ndarray) -> None:
    """What the phone server pays per call and 20 ms frame, by what the caller's side carries: most of a
    call is silence or line noise, which the receiver's quiet-frame shortcut skips."""
    rng = np.random.default_rng(0)
    question = sorted((Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio").glob("question_*8k*.wav"))
    kinds = {"digital silence": np.zeros(RATE * 10, np.int16),
             "line noise at -60 dBFS": audio.to_int16(rng.standard_normal(RATE * 10) * 10 ** (-60 / 20)),
             "a recorded caller question": audio.read_audio(question[0], RATE)[0] if question else None,
             "the mix above (speech, noise, keys)": mix[: RATE * 60]}
    print("\nstreaming receiver, cost per 20 ms frame (median of 3 runs):")
    for name, x in kinds.items():
        if x is None:
            continue
        frames = list(audio.frames(x, RATE, audio.FRAME_MS))

        def run(frames=frames):
            rx = dtmf.DtmfReceiver(RATE)
            for f in frames:
                rx.feed(f)

        _, t = _timed(run)
        print(f"  {name:38} {t / len(frames) * 1e6:6.1f} us")


if __name__ == "__main__":
    raise SystemExit(main())
