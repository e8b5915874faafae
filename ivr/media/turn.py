"""Which caller frames go to the recogniser, and when the caller's turn is over.

A voice-activity gate with pre-roll and an end-of-turn rule, pure and deterministic (numpy only, no clock:
time is the count of 20 ms frames fed):

    gate = TurnGate(8000)                        # or 16000; TurnSettings to change the times
    for frame in frames:                         # 20 ms each
        step = gate.feed(frame)
        for f in step.frames:                    # feed these to the recogniser, in order
            recogniser.feed(f)
        if step.turn_end:                        # the caller is done: take the final now
            text = recogniser.finish().text
    gate.set_end_ms(500)                         # per dialogue state (see below), any time

- Gate: while nobody speaks, frames are held back (the recogniser costs nothing in silence); the last
  ``pre_roll_ms`` of them are kept. When speech starts (ivr/media/vad.py: ``start_ms`` of speech-like frames
  in a row) the pre-roll is released first, so no word onset is lost, then every frame of the turn, pauses
  included, until the turn ends; quiet beyond ``hang_ms`` after the last speech-like frame is held back and
  goes to the recogniser only if the caller speaks again in the same turn (then the whole pause, in order),
  so the quiet that ends a turn costs ``hang_ms`` of decoding, not ``end_ms``. ``step.pause`` marks the
  frame where the hang-over has passed: the recogniser can finalise the words so far while the end of turn
  is still awaited (if the caller speaks again, the turn goes on as a second piece). Inside a turn a frame counts as voiced from ``keep_db`` above the noise floor
  (hysteresis: the soft end of a word, under the VAD's onset threshold, does not count as quiet). That floor
  is the VAD's, or the quietest frame of the last ``floor_window_ms`` when louder: noise that starts with the
  caller's voice (a noisy line, a recording) is not taken for more words.
- End of turn: ``end_ms`` after the last speech-like frame. The default, 650 ms, is above the 0.4-0.5 s
  pauses people leave inside a sentence (a 0.45 s pause never splits one: tests/test_turn.py), and well
  below the 1.5 s the call session waits today. ``set_end_ms`` changes it per dialogue state: ``END_MS``
  gives shorter ones for yes/no and menu words (one short word, no inner pause) and a longer one for an open
  question. It is never below ``MIN_END_MS``.
- ``step.voice_end`` (seconds) is the end of the last speech-like frame of the turn that just ended: the
  caller's last word, from which voice-to-voice latency counts. ``max_turn_s`` ends a turn that never stops.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ivr.errors import IvrError
from ivr.media.vad import Vad, VadSettings

MIN_END_MS = 400.0
END_MS = {"yes_no": 500.0, "menu": 500.0, "question": 650.0, "open": 800.0}


@dataclass(frozen=True)
class TurnSettings:
    pre_roll_ms: float = 300.0  # audio before the onset that goes to the recogniser with it
    hang_ms: float = 250.0  # quiet after speech that goes to the recogniser at once; more only if speech resumes
    end_ms: float = 650.0  # quiet after the last speech-like frame that ends the turn
    keep_db: float = 4.0  # inside a turn, a frame this far above the noise floor still counts as voiced
    floor_window_ms: float = 1000.0  # inside a turn the floor is also the quietest frame of this window
    max_turn_s: float = 20.0
    vad: VadSettings = field(default_factory=VadSettings)


@dataclass
class TurnStep:
    frames: list[np.ndarray]  # for the recogniser, oldest first (empty while nobody speaks)
    turn_start: bool = False  # speech started in this frame (the pre-roll is in ``frames``)
    turn_end: bool = False  # the turn ended with this frame: take the recogniser's final
    voice_end: float | None = None  # with turn_end: end of the caller's last speech-like frame (s)
    pause: bool = False  # the hang-over after the last word has passed: the words so far can be finalised


class TurnGate:
    """See the module notes. ``rate``: 8000 or 16000 (any rate the VAD takes); 20 ms frames."""

    def __init__(self, rate: int = 8000, settings: TurnSettings | None = None):
        self.s = settings or TurnSettings()
        self.vad = Vad(rate, self.s.vad)
        self.rate = rate
        self.frame_len = self.vad.frame_len
        self.frame_s = self.frame_len / rate
        # the pre-roll counts back from the onset, which the VAD confirms ``start_ms`` later
        pre = max(0, int(round(self.s.pre_roll_ms / 1000 / self.frame_s))) + self.vad._start_frames - 1
        self._pre: deque[np.ndarray] = deque(maxlen=pre)
        self._end_frames = 0
        self.set_end_ms(self.s.end_ms)
        self._hang_frames = max(0, int(round(self.s.hang_ms / 1000 / self.frame_s)))
        self._held: list[np.ndarray] = []  # quiet frames past the hang-over, inside a turn
        self._max_frames = int(round(self.s.max_turn_s / self.frame_s))
        self._recent: deque[float] = deque(maxlen=max(1, int(round(self.s.floor_window_ms / 1000 / self.frame_s))))
        self.in_turn = False
        self.frames = 0  # frames fed
        self._last_speech = -1  # index of the last speech-like frame
        self._turn_frames = 0
        self.sent = 0  # frames released to the recogniser (all turns)

    @property
    def end_ms(self) -> float:
        return self._end_frames * self.frame_s * 1000

    def set_end_ms(self, ms: float) -> None:
        """Quiet that ends a turn from now on (e.g. ``END_MS["yes_no"]`` while a confirmation is asked)."""
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not MIN_END_MS <= ms <= 5000:
            raise IvrError(f"end of turn after {ms!r} ms of quiet is out of range",
                           f"give {MIN_END_MS:.0f}-5000 ms (a shorter one splits sentences at their pauses)")
        self._end_frames = int(round(ms / 1000 / self.frame_s))

    def feed(self, frame) -> TurnStep:
        x = np.asarray(frame)
        if x.ndim != 1 or x.size != self.frame_len:
            raise IvrError(f"turn gate: frame of shape {x.shape}, expected ({self.frame_len},)",
                           f"cut the audio into 20 ms frames ({self.frame_len} samples at {self.rate} Hz)")
        idx = self.frames
        self.frames += 1
        was_speaking = self.vad.speaking
        self.vad.feed(x)
        v = self.vad
        self._recent.append(v.last_energy)
        if self.in_turn:
            # the floor inside a turn: the VAD's (frozen while someone speaks), or the quietest recent frame
            # when that is louder (noise that came with the caller's voice, which the VAD never learned)
            floor = max(v.noise_floor_db, min(self._recent))
            speech = v.last_energy >= v.s.min_level_dbfs and v.last_energy - floor >= self.s.keep_db
        else:
            speech = v.last_is_speech
        if not self.in_turn:
            if self.vad.speaking and not was_speaking:  # onset confirmed in this frame
                self.in_turn = True
                self._turn_frames = 1
                self._last_speech = idx
                out = [*self._pre, x]
                self._pre.clear()
                self.sent += len(out)
                return TurnStep(out, turn_start=True)
            self._pre.append(x)
            return TurnStep([])
        self._turn_frames += 1
        if speech:
            self._last_speech = idx
        ends = idx - self._last_speech >= self._end_frames or self._turn_frames >= self._max_frames
        pause = False
        if speech:  # a pause longer than the hang-over goes to the recogniser whole, before the words after it
            out = [*self._held, x]
            self._held.clear()
        elif idx - self._last_speech <= self._hang_frames:
            out = [x]
        else:  # quiet past the hang-over: held back, decoded only if the caller speaks again in this turn
            pause = not self._held
            self._held.append(x)
            out = []
        self.sent += len(out)
        if ends:
            self.in_turn = False
            self.vad.reset()
            self._held.clear()  # the quiet that ended the turn costs no decoding
            # the quiet that ended the turn is the background now (the VAD does not learn while one speaks)
            v.noise_floor_db = max(v.noise_floor_db, min(self._recent))
            return TurnStep(out, turn_end=True, voice_end=round((self._last_speech + 1) * self.frame_s, 6))
        return TurnStep(out, pause=pause and not out)

    def flush(self) -> TurnStep:
        """The audio ended (hang-up, end of file): end a turn in progress."""
        if not self.in_turn:
            return TurnStep([])
        self.in_turn = False
        self.vad.reset()
        self._held.clear()
        return TurnStep([], turn_end=True, voice_end=round((self._last_speech + 1) * self.frame_s, 6))
