"""Voice activity detection: when does the visitor start and stop speaking.

Frame-based (20 ms), numpy only. Each frame gives two features: its energy (dBFS) and its zero-crossing
rate. The background level is tracked as an adaptive noise floor (falls quickly to a quieter background,
rises slowly to a louder one, frozen while someone speaks). A frame sounds like speech when its energy is
``on_db`` above the floor, or ``weak_db`` above it with a zero-crossing rate unlike the background's (voiced
speech crosses zero far less often than hiss; fricatives more often than hum). An utterance starts after
``start_ms`` of speech-like frames in a row and ends after ``hangover_ms`` without one (the hangover
bridges the pauses between words); ``max_utterance_s`` ends one that never stops (a fan switched on).

    vad = Vad(16000)
    for frame in frames:            # any length; 20 ms frames give one decision each
        event = vad.feed(frame)     # "start" | "end" | None
    vad.speech_start, vad.speech_end  # seconds from the first sample fed (edges of the last utterance)

``start`` fires ``start_ms`` after the real onset and ``end`` fires ``hangover_ms`` after the real end;
``speech_start``/``speech_end`` give the edges themselves (the kiosk keeps a pre-roll of audio so the
recogniser hears the onset too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ivr.errors import IvrError

VadEvent = Literal["start", "end"]


@dataclass(frozen=True)
class VadSettings:
    frame_ms: float = 20.0
    on_db: float = 9.0  # energy above the noise floor for a clear speech frame
    weak_db: float = 4.0  # ... for a speech frame whose zero-crossing rate differs from the background's
    zcr_delta: float = 0.12  # |zcr - background zcr| counted as "unlike the background"
    min_level_dbfs: float = -55.0  # quieter frames are never speech
    start_ms: float = 60.0  # speech-like frames in a row before an utterance starts
    hangover_ms: float = 400.0  # frames without speech before it ends
    floor_fall: float = 0.3  # share of the gap closed per frame when the background gets quieter
    floor_rise: float = 0.02  # ... when it gets louder (slow: speech must not lift the floor)
    max_utterance_s: float = 15.0
    initial_floor_dbfs: float = -70.0  # the first frame sets the floor, never lower than this


def frame_features(x: np.ndarray) -> tuple[float, float]:
    """(energy in dBFS, zero-crossing rate in crossings per sample) of one frame of int16 or float audio."""
    f = np.asarray(x)
    f = f.astype(np.float64) / 32768.0 if f.dtype.kind in "iu" else f.astype(np.float64)
    n = f.size
    if n == 0:
        return -100.0, 0.0
    # sums over n, as np.mean computes them (the same values), without its per-call overhead: the phone
    # server runs this on every 20 ms frame of every call
    power = float((f * f).sum()) / n
    energy = 10.0 * np.log10(power * 2.0 + 1e-10)  # a full-scale sine is 0 dBFS
    signs = np.signbit(f - float(f.sum()) / n)
    zcr = float(np.count_nonzero(signs[1:] != signs[:-1])) / max(1, n - 1)
    return energy, zcr


class Vad:
    """Streaming voice-activity detector for mono audio at ``rate`` Hz. See the module notes."""

    def __init__(self, rate: int = 16000, settings: VadSettings | None = None):
        if not isinstance(rate, int) or rate < 4000:
            raise IvrError(f"VAD: sample rate {rate!r} is not usable", "give the audio's real rate, e.g. 16000")
        self.rate = rate
        self.s = settings or VadSettings()
        self.frame_len = int(round(rate * self.s.frame_ms / 1000))
        self._start_frames = max(1, int(round(self.s.start_ms / self.s.frame_ms)))
        self._hang_frames = max(1, int(round(self.s.hangover_ms / self.s.frame_ms)))
        self._max_frames = int(round(self.s.max_utterance_s * 1000 / self.s.frame_ms))
        self._buf = np.zeros(0, dtype=np.float64)
        self.noise_floor_db: float | None = None
        self.noise_zcr: float | None = None
        self.speaking = False
        self.speech_start: float | None = None  # seconds: first speech frame of the current/last utterance
        self.speech_end: float | None = None  # seconds: end of the last speech frame of the last utterance
        self.frames_seen = 0
        self._run = 0  # speech-like frames in a row
        self._quiet = 0  # frames without speech in a row (inside an utterance)
        self._utt_frames = 0
        self._last_speech_frame = -1
        self.last_energy = -100.0
        self.last_zcr = 0.0
        self.last_is_speech = False

    @property
    def t(self) -> float:
        """Seconds of audio decided so far."""
        return self.frames_seen * self.frame_len / self.rate

    def reset(self) -> None:
        """Forget any utterance in progress (the background estimate is kept)."""
        self.speaking = False
        self._run = 0
        self._quiet = 0
        self._utt_frames = 0

    def skip(self, n_samples: int) -> None:
        """Let time pass without listening (the kiosk's mic is gated while it speaks)."""
        self._buf = np.zeros(0, dtype=np.float64)
        self.frames_seen += int(n_samples) // self.frame_len
        self.reset()

    def feed(self, samples) -> VadEvent | None:
        """Add samples (any length). Returns "start" or "end" when an utterance started or ended within
        them (the latest event if several), else None."""
        event = None
        for ev in self.feed_events(samples):
            event = ev[0]
        return event

    def feed_events(self, samples) -> list[tuple[VadEvent, float]]:
        """Add samples; every (event, edge time in seconds) decided within them."""
        x = np.asarray(samples)
        if x.ndim != 1:
            if x.ndim == 2 and 1 in x.shape:
                x = x.reshape(-1)
            else:
                raise IvrError(f"VAD takes mono audio, got shape {x.shape}", "mix down to one channel first")
        x = x.astype(np.float64) / 32768.0 if x.dtype.kind in "iu" else x.astype(np.float64)
        buf = np.concatenate([self._buf, x]) if self._buf.size else x
        out = []
        n = self.frame_len
        full = (buf.size // n) * n
        for i in range(0, full, n):
            ev = self._frame(buf[i:i + n])
            if ev is not None:
                out.append(ev)
        self._buf = buf[full:].copy()
        return out

    # -- one frame ------------------------------------------------------------------------------------------
    def _is_speech(self, energy: float, zcr: float) -> bool:
        s = self.s
        if energy < s.min_level_dbfs:
            return False
        above = energy - self.noise_floor_db
        if above >= s.on_db:
            return True
        return above >= s.weak_db and abs(zcr - self.noise_zcr) >= s.zcr_delta

    def _adapt(self, energy: float, zcr: float) -> None:
        s = self.s
        gap = energy - self.noise_floor_db
        rate = s.floor_fall if gap < 0 else s.floor_rise
        self.noise_floor_db += rate * gap
        self.noise_zcr += 0.05 * (zcr - self.noise_zcr)

    def _frame(self, f: np.ndarray) -> tuple[VadEvent, float] | None:
        energy, zcr = frame_features(f)
        idx = self.frames_seen
        self.frames_seen += 1
        if self.noise_floor_db is None:
            self.noise_floor_db = max(energy, self.s.initial_floor_dbfs)
            self.noise_zcr = zcr
        speech = self._is_speech(energy, zcr)
        self.last_energy, self.last_zcr, self.last_is_speech = energy, zcr, speech
        secs = self.frame_len / self.rate
        if not self.speaking:
            if speech:
                self._run += 1
                if self._run >= self._start_frames:
                    self.speaking = True
                    self._quiet = 0
                    self._utt_frames = self._run
                    self._last_speech_frame = idx
                    self.speech_start = (idx - self._run + 1) * secs
                    self.speech_end = None
                    return "start", self.speech_start
            else:
                self._run = 0
            self._adapt(energy, zcr)
            return None
        self._utt_frames += 1
        if speech:
            self._quiet = 0
            self._last_speech_frame = idx
        else:
            self._quiet += 1
        if self._quiet >= self._hang_frames or self._utt_frames >= self._max_frames:
            self.speaking = False
            self._run = 0
            self.speech_end = (self._last_speech_frame + 1) * secs
            if self._utt_frames >= self._max_frames:
                self.noise_floor_db = max(self.noise_floor_db, energy - self.s.weak_db)  # a new, louder background
            return "end", self.speech_end
        return None


def segments(samples, rate: int, settings: VadSettings | None = None) -> list[tuple[float, float]]:
    """The utterances in a whole signal as (start, end) seconds (an utterance still open ends at the end)."""
    vad = Vad(rate, settings)
    out: list[tuple[float, float]] = []
    start = None
    for event, t in vad.feed_events(samples):
        if event == "start":
            start = t
        else:
            out.append((start, t))
            start = None
    if vad.speaking and start is not None:
        end = (vad._last_speech_frame + 1) * vad.frame_len / rate
        out.append((start, end))
    return out
