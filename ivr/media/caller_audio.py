"""The caller's audio turned into events: keypad tones (key-down), speech partials and finals, end of turn.

    caller = CallerAudio(sample_rate=8000, model=vosk_model_or_None)
    for event in caller.feed(frame, t):       # one frame of caller audio, ``t`` its first sample's time
        ...                                   # Digit, SpeechPartial, SpeechFinal, EngineFailed, SpeechOff
    caller.set_expect("yes_no")               # what the dialogue listens for now: sets the end of turn
    caller.finish(t)                          # the caller hung up: the recogniser's last words, if any

Keys: the DTMF receiver validates a key after about 31 ms of tone (``DtmfReceiver.pressed``); the ``Digit``
is made at that moment (not at key release), so a key stops the prompt within the frame it was recognised
in. While a key sounds (and two frames after), the recogniser hears silence instead (keypad tones are not
speech).

Speech: a voice-activity gate (``ivr.media.turn.TurnGate``) decides which frames the Vosk recogniser hears:
nothing while nobody speaks (silence costs no decoding), and from each onset, with ``pre_roll_ms`` of audio
before it so no word onset is lost, every frame of the turn until the turn ends. The recogniser is reset at
each turn start, so a turn is decoded as if it were the start of a stream; a turn is decoded to its end by
the recogniser that was set when it started. A ``speech`` frame can be given
apart from the frame keys are detected on (the kiosk feeds its echo- and VAD-gated audio to the recogniser,
and the raw microphone to the DTMF receiver).

End of turn: the gate's rule, ``end_ms`` of quiet after the caller's last speech-like frame (default 650 ms,
above the 0.4-0.5 s pauses inside a sentence); ``set_expect`` shortens it for yes/no and menu words and
lengthens it for open questions (``ivr.media.turn.END_MS``). Kaldi's own endpointer may cut the turn's
decoding at an inner pause: its pieces are joined, so one turn gives one ``SpeechFinal`` (``end="turn"``).
The rule is deterministic (same audio, same events), unlike Kaldi's endpointer, whose dither noise comes
from the process-wide libc ``rand()``.

Keys before speech (``defer=True``, the phone worker): ``feed`` runs only the cheap part, the DTMF
receiver and the gate, and queues the gated frames; ``decode(max_frames)`` decodes the queue later, a few
frames at a time, so a key never waits behind recognition. ``backlog`` is how many frames wait, ``lag()``
how long (wall clock) the oldest has waited. Without ``defer`` every frame is decoded within ``feed``.
``SpeechFinal.lag_ms`` is the wall-clock time from the frame that ended the turn arriving to its final.

Engine failures are events too (``EngineFailed``): a failing recogniser is reset (rebuilt if that fails),
and after ``MAX_ASR_ERRORS`` failures speech is off for the call (``SpeechOff``): keys still work.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ivr.core.events import Digit, SpeechFinal, SpeechPartial
from ivr.media.dtmf import DtmfReceiver
from ivr.media.turn import END_MS, TurnGate, TurnSettings

MAX_ASR_ERRORS = 3  # recogniser failures before speech is turned off for the call


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


@dataclass
class _Gated:
    """One frame the gate let through (or a turn's end with ``frame`` None), waiting to be decoded."""

    frame: np.ndarray | None
    t_end: float  # call time at the end of the frame it came with
    wall: float  # wall clock when it arrived
    start: bool = False
    end: bool = False
    voice_end: float | None = None  # with ``end``: call time of the end of the caller's last word
    pause: bool = False  # the hang-over passed: finalise the words so far (the turn may still go on)


class CallerAudio:
    """Keys and speech from one caller's audio. One thread at a time."""

    def __init__(self, sample_rate: int, model=None, *, turn: TurnSettings | None = None, defer: bool = False,
                 clock: Callable[[], float] = time.perf_counter):
        self.sample_rate = int(sample_rate)
        self.model = model
        self.dtmf = DtmfReceiver(self.sample_rate)
        self.gate = TurnGate(self.sample_rate, turn)
        self.defer = bool(defer)
        self.clock = clock
        self.recognizer = None
        self.asr_errors = 0
        self.expect: str | None = None
        self.backlog: deque[_Gated] = deque()
        self.decoded = 0  # frames the recogniser heard (all turns)
        self._key_down: str | None = None  # key reported at press, its tone still sounding
        self._dtmf_quiet = 0  # frames to keep silencing the recogniser after a tone
        self._rec = None  # the recogniser of the turn being decoded (the one that was set at its start)
        self._pieces: list = []  # finals Kaldi's endpointer gave inside the current turn
        self._decode_s = 0.0  # recogniser time spent on the current turn
        if model is not None:
            self._new_recognizer()

    @property
    def speech(self) -> bool:
        return self.recognizer is not None

    @property
    def pending(self) -> bool:
        """A turn is under way or waits to be decoded (the caller is not silent for the dialogue's timers)."""
        return bool(self.backlog) or self.gate.in_turn

    def ready(self) -> bool:
        """Speech waits to be decoded and can be now (a recogniser is held, or the pool has one for this turn,
        which keeps its place in line)."""
        if not self.backlog:
            return False
        head = self.backlog[0]
        rec = self.recognizer if head.start else self._rec
        if head.frame is None or rec is None or not hasattr(rec, "ready"):
            return True
        if self._queue_later(rec):
            return False
        return rec.ready()

    def _queue_later(self, rec=None) -> bool:
        """On a busy line (turns already wait for a recogniser) a turn the caller is still speaking does not
        take one yet: it queues once it has ended, and is then decoded at several times real time, instead of
        holding a recogniser for as long as the caller speaks while complete turns wait. With nobody waiting,
        a turn is decoded as it is spoken."""
        rec = rec if rec is not None else self._rec
        if rec is None or rec.holding or not hasattr(rec, "others_waiting"):
            return False
        return not any(g.end for g in self.backlog) and rec.others_waiting()

    def lag(self, now: float | None = None) -> float:
        """Wall-clock seconds the oldest frame waiting to be decoded has waited (0 when none waits)."""
        try:
            oldest = self.backlog[0]
        except IndexError:
            return 0.0
        return max(0.0, (self.clock() if now is None else now) - oldest.wall)

    def set_expect(self, expect: str | None) -> None:
        """What the dialogue listens for now ("yes_no", "menu", "question", "open"): the end-of-turn quiet."""
        if expect == self.expect:
            return
        self.expect = expect
        self.gate.set_end_ms(END_MS.get(expect or "", self.gate.s.end_ms))

    def feed(self, frame: np.ndarray, t: float, speech: np.ndarray | None = None) -> list[CallerEvent]:
        """One frame (mono int16); ``t`` is its first sample's time. ``speech``: what the recogniser hears
        instead of ``frame`` (same length). Events are timed at the frame's end."""
        t_end = float(t) + len(frame) / self.sample_rate
        out: list[CallerEvent] = self._feed_dtmf(frame, t_end)
        quiet = self._key_down is not None or self._dtmf_quiet > 0 or self.dtmf.pressed is not None
        if self._dtmf_quiet > 0:
            self._dtmf_quiet -= 1
        heard = frame if speech is None else speech
        # the gate hears every frame (its noise floor follows the line even while speech is off)
        self._gate(np.zeros_like(heard) if quiet else heard, t_end)
        if not self.defer and self.backlog:
            out += self.decode()
        return out

    def decode(self, max_frames: int | None = None, wait: bool = True) -> list[CallerEvent]:
        """Decode frames waiting in ``backlog`` (all, or at most ``max_frames``): partials, finals. A turn
        that cannot have a recogniser yet (``ivr.media.asr.WarmPool``: as many turns as the line decodes at
        once are being decoded) stays in the backlog, unless ``wait`` is False (the caller hung up)."""
        out: list[CallerEvent] = []
        n = 0
        while self.backlog and (max_frames is None or n < max_frames):
            g = self.backlog[0]
            if g.start:
                g.start = False  # the turn starts once, even if its first frame waits for a recogniser
                self._rec = self.recognizer
                out += self._turn_start(g.t_end)
            if (wait and g.frame is not None and self._rec is not None and hasattr(self._rec, "acquire")
                    and (self._queue_later() or not self._rec.acquire())):
                break  # as many turns as the line decodes at once are being decoded: this one waits its turn
            self.backlog.popleft()
            if self._rec is None:
                continue
            if g.frame is not None:
                # the frames of the turn that follow go to the recogniser in one call: one hand-over of the
                # interpreter lock per batch, not per 20 ms frame (with many calls that hand-over, not the
                # decoding, was what limited the decoder threads)
                batch = [g.frame]
                while (not g.end and self.backlog and (max_frames is None or n + len(batch) < max_frames)
                       and self.backlog[0].frame is not None and not self.backlog[0].start):
                    g = self.backlog.popleft()
                    batch.append(g.frame)
                n += len(batch)
                out += self._feed_asr(batch[0] if len(batch) == 1 else np.concatenate(batch), g.t_end, len(batch))
            if g.pause and self._rec is not None:
                out += self._pause(g)
            if g.end and self._rec is not None:
                out += self._turn_end(g)
        return out

    def _pause(self, g: _Gated) -> list[CallerEvent]:
        """The caller has been quiet for the gate's hang-over: the recogniser's final of the words so far is
        taken now, while the end of turn is still awaited, so the answer is ready when the turn ends. If the
        caller speaks again, the rest of the turn is a second piece (as when Kaldi's endpointer cuts)."""
        ev = self._final(g.t_end, keep=True)
        if isinstance(ev, list):  # the recogniser failed
            return ev
        if ev.text:
            self._pieces.append(ev)
        return []

    def _final(self, t_end: float, keep: bool = False):
        """The recogniser's final of what it was fed (``keep``: it stays with this turn), or, when it failed,
        the events of the failure."""
        wall = time.perf_counter()
        try:
            ev = self._rec.finish(keep=True) if keep and hasattr(self._rec, "holding") else self._rec.finish()
        except Exception as exc:
            return self._asr_failed(t_end, exc)
        self._decode_s += time.perf_counter() - wall
        return ev

    def close(self) -> None:
        """The call is over: the recogniser leaves the pool's line and gives back what it holds."""
        self.backlog.clear()
        for rec in {id(r): r for r in (self.recognizer, self._rec) if r is not None}.values():
            if hasattr(rec, "close"):
                rec.close()

    def drop_waiting(self) -> float:
        """The caller hung up on a busy line: the speech frames still waiting are not decoded (nobody is
        there to hear a reply); returns their length in seconds. Turn ends are kept (``finish`` closes the
        turn in progress with what was decoded of it)."""
        waiting = [g for g in self.backlog if g.frame is not None]
        if not waiting:
            return 0.0
        self.backlog = deque(g for g in self.backlog if g.frame is None)
        return sum(len(g.frame) for g in waiting) / self.sample_rate

    def finish(self, t: float) -> SpeechFinal | EngineFailed | None:
        """The caller is gone: the words of the turn in progress, if any (decode the backlog first)."""
        if self.recognizer is None and self._rec is None:
            return None
        step = self.gate.flush()
        if step.turn_end:
            self.backlog.append(_Gated(None, float(t), self.clock(), end=True, voice_end=float(t)))
        last = None
        for ev in self.decode(wait=False):
            if isinstance(ev, SpeechFinal | EngineFailed):
                last = ev
        if isinstance(last, SpeechFinal):
            return SpeechFinal(last.text, last.confidence, last.alternatives, t=float(t), end="hangup",
                               decode_ms=last.decode_ms, lag_ms=last.lag_ms)
        return last

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

    def _gate(self, x: np.ndarray, t_end: float) -> None:
        step = self.gate.feed(x)
        if (not step.frames and not step.turn_end and not step.pause) or (self.recognizer is None and self._rec is None):
            return
        wall = self.clock()
        n = len(step.frames)
        for i, f in enumerate(step.frames):
            self.backlog.append(_Gated(f, t_end, wall, start=step.turn_start and i == 0))
        if step.pause:
            self.backlog.append(_Gated(None, t_end, wall, pause=True))
        if step.turn_end:
            # the gate counts time in frames fed; this frame ends at gate time frames * frame_s = t_end
            voice_end = t_end - (self.gate.frames * self.gate.frame_s - step.voice_end)
            if n:
                g = self.backlog[-1]
                g.end, g.voice_end = True, round(voice_end, 6)
            else:
                self.backlog.append(_Gated(None, t_end, wall, end=True, voice_end=round(voice_end, 6)))

    def _new_recognizer(self) -> None:
        from ivr.media.asr import Recognizer

        self.recognizer = Recognizer(self.model, self.sample_rate)

    def _turn_start(self, t_end: float) -> list[CallerEvent]:
        self._pieces = []
        self._decode_s = 0.0
        try:
            self._rec.reset()  # each turn is decoded from a fresh stream
        except Exception as exc:
            return self._asr_failed(t_end, exc)
        return []

    def _feed_asr(self, x: np.ndarray, t_end: float, frames: int = 1) -> list[CallerEvent]:
        wall = time.perf_counter()
        try:
            ev = self._rec.feed(x)
        except Exception as exc:  # the recogniser is reset; repeated failures turn speech off
            return self._asr_failed(t_end, exc)
        finally:
            self._decode_s += time.perf_counter() - wall
            self.decoded += frames
        if ev is None:
            return []
        if ev.kind == "partial":
            shown = " ".join([p.text for p in self._pieces] + [ev.text])
            return [SpeechPartial(shown, t=t_end)]
        self._pieces.append(ev)  # Kaldi's endpointer cut the turn at an inner pause: the turn goes on
        return []

    def _turn_end(self, g: _Gated) -> list[CallerEvent]:
        """The gate ended the turn: the recogniser's final now, joined with the pieces before it."""
        ev = self._final(g.t_end)
        if isinstance(ev, list):  # the recogniser failed
            return ev
        pieces = [p for p in [*self._pieces, ev] if p.text]
        self._pieces = []
        if not pieces:
            return []
        text = " ".join(p.text for p in pieces)
        confidence = min(p.confidence for p in pieces)
        # the n-best of the last piece, after the words of the pieces before it
        head = " ".join(p.text for p in pieces[:-1])
        nbest = tuple(((head + " " + a.text).strip(), a.weight)
                      for a in getattr(pieces[-1], "alternatives", None) or ())
        return [SpeechFinal(text, confidence, nbest, t=g.t_end, end="turn", decode_ms=round(self._decode_s * 1000, 2),
                            lag_ms=round((self.clock() - g.wall) * 1000, 1), voice_end=g.voice_end,
                            search="busy" if getattr(self._rec, "busy", False) is True else None)]

    def _asr_failed(self, t_end: float, exc: Exception) -> list[CallerEvent]:
        self.asr_errors += 1
        self._pieces = []
        out: list[CallerEvent] = [EngineFailed("recognizer", exc, t=t_end)]
        if self.asr_errors >= MAX_ASR_ERRORS:
            self.recognizer = self._rec = None
            self.backlog.clear()
            out.append(SpeechOff(f"the recogniser failed {self.asr_errors} times", t=t_end))
            return out
        try:
            self._rec.reset()
        except Exception:  # noqa: BLE001 - a recogniser that cannot reset is replaced
            if self._rec is self.recognizer:
                self._new_recognizer()
                self._rec = self.recognizer
        return out
