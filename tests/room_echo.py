"""A simulated kiosk room: the loudspeaker's sound reaching the microphone (the echo), for echo-cancellation
tests and benchmarks/bench_aec.py.

The echo path is a delay (sound travel plus the sound card's buffers) followed by an exponentially decaying
random impulse response (the room's reverberation), band-limited like a small loudspeaker (200-5000 Hz),
at a set level relative to the loudspeaker signal. Fixed seed: the same room every run.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, lfilter


def impulse_response(rate: int, *, delay_ms: float = 30.0, rt60_ms: float = 150.0, length_ms: float = 250.0,
                     gain_db: float = -6.0, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(rate * length_ms / 1000)
    t = np.arange(n) / rate
    h = rng.standard_normal(n) * np.exp(-6.91 * t / (rt60_ms / 1000))  # -60 dB at rt60
    b, a = butter(2, [200 / (rate / 2), min(5000, 0.45 * rate) / (rate / 2)], "band")
    h = lfilter(b, a, h)
    h = np.concatenate([np.zeros(int(rate * delay_ms / 1000)), h])
    return h / np.sqrt(np.sum(h * h)) * 10 ** (gain_db / 20)


def echo_of(speaker: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The echo (float, int16 scale) of a loudspeaker signal through impulse response ``h``."""
    return np.convolve(np.asarray(speaker, dtype=np.float64), h)[:len(speaker)]


def mic_noise(n: int, level_dbfs: float = -65.0, seed: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n) * 32768 * 10 ** (level_dbfs / 20)


def to_pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def erle_db(echo: np.ndarray, cleaned: np.ndarray) -> float:
    """Echo return loss enhancement: echo power at the mic over power left after cancelling, in dB."""
    e = float(np.sum(np.asarray(echo, dtype=np.float64) ** 2))
    o = float(np.sum(np.asarray(cleaned, dtype=np.float64) ** 2))
    return 10 * np.log10(e / max(o, 1.0))
