#!/usr/bin/env python3
"""Regenerate the recorded WAV fixtures in tests/fixtures/audio/ and their manifest.

Caller questions are spoken by espeak-ng in its three Vietnamese voices at several speeds, kept as 16 kHz
PCM and as 8 kHz mu-law telephone audio, some with background noise; keypad sequences come from the DTMF
generator; plus silence and speech with keys pressed over it. Tests read the committed files; run this
only to change them (`make fixtures`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.media.dtmf import generate  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "audio"
VOICES = {"north": "vi", "central": "vi-vn-x-central", "south": "vi-vn-x-south"}

# (faq_id, what the caller says) — caller phrasings, not copies of the FAQ paraphrases.
QUESTIONS = [
    (9, "cho em hỏi em quên mật khẩu thì lấy lại thế nào"),
    (6, "tôi muốn đổi mật khẩu trên ứng dụng"),
    (3, "tôi bị mất điện thoại thì phải làm sao"),
    (10, "làm sao kiểm tra thời hạn chữ ký số"),
    (8, "một tài khoản dùng trên hai thiết bị được không"),
    (11, "mail kích hoạt quá bốn mươi tám giờ rồi thì làm thế nào"),
    (2, "gỡ ứng dụng cài lại có phải kích hoạt lại không"),
    (7, "máy tôi không có vân tay thì có dùng được không"),
]
# (voice, words per minute, rate, noise SNR in dB or None) per question, cycling.
RENDERINGS = [
    ("north", 150, 16000, None),
    ("central", 130, 8000, None),
    ("south", 175, 16000, 15.0),
    ("north", 190, 8000, 20.0),
]


def espeak(text: str, voice: str, wpm: int) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(wav), text], check=True)
        data, rate = sf.read(wav, dtype="float32")
    return data, rate


def at_rate(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    return x if src == dst else soxr.resample(x, src, dst, quality="HQ").astype(np.float32)


def pad(x: np.ndarray, rate: int, before: float = 0.5, after: float = 0.7) -> np.ndarray:
    return np.concatenate([np.zeros(int(before * rate), np.float32), x, np.zeros(int(after * rate), np.float32)])


def add_noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    speech = x[np.abs(x) > 1e-3]
    p_speech = float(np.mean(speech**2)) if speech.size else 1e-6
    noise = rng.standard_normal(x.size).astype(np.float32)
    noise *= np.sqrt(p_speech / 10 ** (snr_db / 10) / np.mean(noise**2))
    return np.clip(x + noise, -1, 1)


def write(name: str, x: np.ndarray, rate: int, ulaw: bool) -> None:
    sf.write(OUT / name, x, rate, subtype="ULAW" if ulaw else "PCM_16")


def keys(digits: str, rate: int, **kw) -> np.ndarray:
    return generate(digits, rate=rate, **kw).astype(np.float32) / 32768.0


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.wav"):
        old.unlink()
    manifest: list[dict] = []

    for i, (faq_id, text) in enumerate(QUESTIONS):
        text = unicodedata.normalize("NFC", text)
        voice, wpm, rate, snr = RENDERINGS[i % len(RENDERINGS)]
        x, src = espeak(text, VOICES[voice], wpm)
        x = pad(at_rate(x, src, rate), rate)
        if snr is not None:
            x = add_noise(x, snr, seed=i)
        ulaw = rate == 8000
        name = f"question_{faq_id:02d}_{voice}_{wpm}wpm_{rate // 1000}k{'_ulaw' if ulaw else ''}{f'_noise{snr:g}db' if snr else ''}.wav"
        write(name, x, rate, ulaw)
        manifest.append({"file": name, "kind": "question", "rate": rate, "encoding": "ulaw" if ulaw else "pcm16",
                         "voice": voice, "wpm": wpm, "noise_snr_db": snr, "transcript": text, "faq_id": faq_id})

    for digits, rate, kw in [("1", 8000, {}), ("12", 8000, {}), ("0123456789*#", 8000, {}),
                             ("ABCD", 16000, {}), ("2291", 8000, {"tone_ms": 60, "gap_ms": 60}),
                             ("35", 16000, {"level_dbfs": -25.0})]:
        x = pad(keys(digits, rate, **kw), rate, 0.3, 0.5)
        ulaw = rate == 8000
        name = f"keys_{digits.replace('*', 'star').replace('#', 'hash')}_{rate // 1000}k{'_ulaw' if ulaw else ''}.wav"
        write(name, x, rate, ulaw)
        manifest.append({"file": name, "kind": "keys", "rate": rate, "encoding": "ulaw" if ulaw else "pcm16",
                         "digits": digits})

    for rate in (8000, 16000):
        name = f"silence_3s_{rate // 1000}k.wav"
        write(name, np.zeros(3 * rate, np.float32), rate, False)
        manifest.append({"file": name, "kind": "silence", "rate": rate, "encoding": "pcm16", "digits": ""})

    # Speech with keys pressed over it: the caller starts asking, gives up and presses 1 then 2.
    text = unicodedata.normalize("NFC", "alo cho tôi hỏi về tài khoản của tôi")
    x, src = espeak(text, "vi", 150)
    rate = 8000
    speech = pad(at_rate(x, src, rate), rate, 0.3, 0.8) * 0.5
    tones = keys("12", rate, tone_ms=120, gap_ms=150, level_dbfs=-12.0)
    start = int(0.9 * rate)
    mixed = speech.copy()
    end = min(mixed.size, start + tones.size)
    mixed[start:end] += tones[: end - start]
    name = "speech_with_keys_12_8k_ulaw.wav"
    write(name, np.clip(mixed, -1, 1), rate, True)
    manifest.append({"file": name, "kind": "speech+keys", "rate": rate, "encoding": "ulaw", "digits": "12",
                     "transcript": text, "keys_start_s": 0.9})

    header = ("# Recorded WAV fixtures, regenerated by scripts/make_fixtures.py (`make fixtures`).\n"
              "# kind: question (transcript, faq_id), keys (digits), silence, speech+keys (digits, transcript).\n")
    with open(OUT / "manifest.yaml", "w", encoding="utf-8") as fh:
        fh.write(header)
        yaml.safe_dump({"fixtures": manifest}, fh, allow_unicode=True, sort_keys=False, width=120)
    total = sum((OUT / m["file"]).stat().st_size for m in manifest)
    print(f"wrote {len(manifest)} fixtures, {total / 1e6:.2f} MB, to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
