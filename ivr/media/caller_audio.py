"""The caller's audio turned into events: keypad tones (key-down), speech partials and finals, end of turn.

    caller = CallerAudio(sample_rate=8000, model=vosk_model_or_None)
    for event in caller.feed(frame, t):       # one frame of caller audio, ``t`` its first sample's time
        ...                                   # Digit, SpeechPartial, SpeechFinal, EngineFailed, SpeechOff
    caller.finish(t)                          # the caller hung up: the recogniser's last words, if any

Keys: the DTMF receiver validates a key after about 31 ms of tone (``DtmfReceiver.pressed``); the ``Digit``
is made at that moment (not at key release), so a key stops the prompt within the frame it was recognised
in. While a key sounds (and two frames after), the recogniser hears silence instead (keypad tones are not
speech).

Speech: every frame goes to the Vosk recogniser (when a model is given). A ``speech`` frame can be given
apart from the frame keys are detected on (the kiosk feeds its echo- and VAD-gated audio to the recogniser,
and the raw microphone to the DTMF receiver).

The end of an utterance is decided twice, whichever comes first: by the recogniser's own endpointer (Kaldi's
trailing-silence rules), and here: once words were heard, ``speech_end_s`` of quiet caller audio (frames under
``quiet_dbfs``) finish the recogniser and take its final. This rule is needed because the endpointer is not
reproducible: Kaldi dithers every feature frame with noise seeded from the process-wide libc ``rand()``,
whose state depends on all the audio any recogniser in the process decoded before. On quiet audio the dither
is nearly all the features see, so the same call may end its utterance 1.4 s after the caller stopped, or
2.5 s, or never. ``SpeechFinal.end`` says which rule ended it ("recogniser" or "quiet").

Engine failures are events too (``EngineFailed``): a failing recogniser is reset (rebuilt if that fails),
and after ``MAX_ASR_ERRORS`` failures speech is off for the call (``SpeechOff``): keys still work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ivr.core.events import Digit, SpeechFinal, SpeechPartial
from ivr.media.dtmf import DtmfReceiver

MAX_ASR_ERRORS = 3  # recogniser failures before speech is turned off for the call
SPEECH_END_S = 1.5  # quiet caller audio after words that ends the utterance, if the recogniser has not
QUIET_DBFS = -45.0  # caller frames below this RMS level count as quiet (line noise is about -60 dBFS)


@dataclass(frozen=True)
class EngineFailed:
    """An engine of the caller's side failed (``where``: "dtmf", "recognizer"); it has been reset."""

    where: str
    error: Exception
    t: float = field(kw_only=True)


@dataclass(frozen=True)
class SpeechOff:
    reason: str
    t: float = field(kw_only=True)


CallerEvent = Digit | SpeechPartial | SpeechFinal | EngineFailed | SpeechOff


class CallerAudio:
    """Keys and speech from one caller's audio. One thread at a time."""

    def __init__(self, sample_rate: int, model=None, *, speech_end_s: float = SPEECH_END_S,
                 quiet_dbfs: float = QUIET_DBFS):
        self.sample_rate = int(sample_rate)
        self.model = model
        self.dtmf = DtmfReceiver(self.sample_rate)
        self.recognizer = None
        self.asr_errors = 0
        self.speech_end_s = float(speech_end_s)
        self._quiet_rms = 32768.0 * 10.0 ** (float(quiet_dbfs) / 20.0)
        self._key_down: str | None = None  # key reported at press, its tone still sounding
        self._dtmf_quiet = 0  # frames to keep silencing the recogniser after a tone
        self._utterance = False  # the recogniser has words of an utterance not yet final
        self._voice_end = 0.0  # end time of the caller's last frame above the quiet level
        if model is not None:
            self._new_recognizer()

    @property
    def speech(self) -> bool:
        return self.recognizer is not None

    def feed(self, frame: np.ndarray, t: float, speech: np.ndarray | None = None) -> list[CallerEvent]:
        """One frame (mono int16); ``t`` is its first sample's time. ``speech``: what the recogniser hears
        instead of ``frame`` (same length). Events are timed at the frame's end."""
        t_end = float(t) + len(frame) / self.sample_rate
        out: list[CallerEvent] = self._feed_dtmf(frame, t_end)
        if self.recognizer is not None:
            quiet = self._key_down is not None or self._dtmf_quiet > 0 or self.dtmf.pressed is not None
            if self._dtmf_quiet > 0:
                self._dtmf_quiet -= 1
            heard = frame if speech is None else speech
            out += self._feed_asr(np.zeros_like(heard) if quiet else heard, t_end)
        return out

    def finish(self, t: float) -> SpeechFinal | EngineFailed | None:
        """The caller is gone: the words the recogniser still holds, if any."""
        if self.recognizer is None:
            return None
        try:
            last = self.recognizer.finish()
        except Exception as exc:  # an engine failure: reported, the hang-up goes on
            return EngineFailed("recognizer", exc, t=t)
        return SpeechFinal(last.text, last.confidence, t=t, end="hangup") if last.text else None

    # -- keys ------------------------------------------------------------------------------------------------

    def _feed_dtmf(self, x: np.ndarray, t_end: float) -> list[CallerEvent]:
        try:
            ended = self.dtmf.feed(x)
        except Exception as exc:  # the receiver is rebuilt; the call goes on
            self.dtmf = DtmfReceiver(self.sample_rate)
            self._key_down = None
            return [EngineFailed("dtmf", exc, t=t_end)]
        out: list[CallerEvent] = []
        for ev in ended:  # key presses whose tone ended in this frame
            if self._key_down == ev.digit:
                self._key_down = None  # already sent at press time
            else:  # a short tone that began and ended within this frame
                out.append(Digit(ev.digit, t=t_end, via="tone", tone_ms=round(ev.duration * 1000)))
            self._dtmf_quiet = 2
        pressed = self.dtmf.pressed
        if pressed is not None and self._key_down is None:
            self._key_down = pressed
            out.append(Digit(pressed, t=t_end, via="tone"))
        return out

    # -- speech ----------------------------------------------------------------------------------------------

    def _new_recognizer(self) -> None:
        from ivr.media.asr import Recognizer

        self.recognizer = Recognizer(self.model, self.sample_rate)

    def _feed_asr(self, x: np.ndarray, t_end: float) -> list[CallerEvent]:
        wall = time.perf_counter()
        try:
            ev = self.recognizer.feed(x)
        except Exception as exc:  # the recogniser is reset; repeated failures turn speech off
            return self._asr_failed(t_end, exc)
        if len(x) and np.sqrt(np.mean(np.square(x, dtype=np.float64))) >= self._quiet_rms:
            self._voice_end = t_end
        if ev is None:
            if self._utterance and t_end - self._voice_end >= self.speech_end_s - 1e-9:
                return self._end_utterance(t_end, wall)
            return []
        if ev.kind == "partial":
            self._utterance = True
            return [SpeechPartial(ev.text, t=t_end)]
        self._utterance = False
        return [self._final(ev, t_end, wall, "recogniser")]

    def _final(self, ev, t_end: float, wall: float, end: str) -> SpeechFinal:
        nbest = tuple((a.text, a.weight) for a in getattr(ev, "alternatives", None) or ())
        return SpeechFinal(ev.text, ev.confidence, nbest, t=t_end, end=end,
                           decode_ms=round((time.perf_counter() - wall) * 1000, 2))

    def _asr_failed(self, t_end: float, exc: Exception) -> list[CallerEvent]:
        self.asr_errors += 1
        self._utterance = False
        out: list[CallerEvent] = [EngineFailed("recognizer", exc, t=t_end)]
        if self.asr_errors >= MAX_ASR_ERRORS:
            self.recognizer = None
            out.append(SpeechOff(f"the recogniser failed {self.asr_errors} times", t=t_end))
            return out
        try:
            self.recognizer.reset()
        except Exception:  # noqa: BLE001 - a recogniser that cannot reset is replaced
            self._new_recognizer()
        return out

    def _end_utterance(self, t_end: float, wall: float) -> list[CallerEvent]:
        """The caller has been quiet for ``speech_end_s`` after words: take the recogniser's final now."""
        self._utterance = False
        try:
            ev = self.recognizer.finish()
        except Exception as exc:
            return self._asr_failed(t_end, exc)
        return [self._final(ev, t_end, wall, "quiet")] if ev.text else []
