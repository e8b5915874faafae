"""One call, pure: the dialogue, the playout queue, the timers and the error policy. Events in, audio out.

    call = Call(dialogue, voice, sample_rate=8000, call_id="...", channel="sip", on_record=log.write)
    call.start(t)                         # greeting queued
    call.send(Digit("5", t=t, via="tone"))  # any ``ivr.core.events`` event; returns the dialogue's actions
    call.audio(n, t)                      # the next n samples the IVR says (zeros when silent)
    call.tick(t)                          # timers (no-input, inter-digit) and the end of a run of keys
    call.ended, call.transfer_to, call.events

No socket, thread, file or clock: time ``t`` (seconds since the call started) arrives with every event and
call, so the same object runs in virtual time (``ivr call``, ``ivr chat``, ``ivr answer``, tests) and in real
time (kiosk, phone). ``voice.audio(text)`` gives the samples of a play (int16 at ``sample_rate``);
``wall_clock``, when given, measures processing time for the log.

Records: every fact of the call is a record ``{"t", "type", ...}`` in ``events``, made here and masked here
(``ivr.core.privacy``): no record holds 6 or more identity digits. ``settled`` is the number of records that
can be shown now (a run of keys being typed is held back until it ends, then shown masked when it was
long). ``on_record`` gets each record as it is made (the call log holds runs back itself).

Output: each ``Play`` is queued with its audio; a ``StopPlayback`` empties the queue at once; a ``Transfer``
or ``HangUp`` waits behind the plays before it. ``PlaybackFinished`` goes to the dialogue when the last
sample of a play has been read out, at the time of that sample.

Errors: ``fail(t, where, exc)`` records an error an engine had (the call goes on); after ``max_errors`` the
IVR apologises, says goodbye and hangs up (``EndCall("error")``). An exception inside the call flow is a bug:
the call ends at once with the error prompt, and the traceback goes to the record and the Python log.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ivr.core import events as ev
from ivr.core.playout import Playout
from ivr.core.privacy import RUN_GAP, KeyRun, mask

log = logging.getLogger(__name__)

MAX_ERRORS = 5  # errors in one call before the IVR apologises and hangs up


def _r(t: float) -> float:
    return round(float(t), 6)  # exact to the sample at 8 and 16 kHz


class Voice(Protocol):
    def audio(self, text: str) -> np.ndarray:
        """The samples of ``text`` spoken (int16 at the call's rate)."""


@dataclass
class _Turn:
    """The caller's last turn (key or speech final): for the response latency of the next play."""

    t: float
    wall: float | None
    cause: str
    done: bool = False
    extra: dict = field(default_factory=dict)


class Call:
    """One call. One thread at a time; every method takes the call time ``t``."""

    def __init__(self, dialogue, voice: Voice, *, sample_rate: int, call_id: str = "", channel: str = "",
                 speech: bool = False, on_record: Callable[[dict], None] | None = None,
                 wall_clock: Callable[[], float] | None = None, max_errors: int = MAX_ERRORS,
                 run_gap: float = RUN_GAP):
        self.dialogue = dialogue
        self.voice = voice
        self.sample_rate = int(sample_rate)
        self.call_id = call_id
        self.channel = channel
        self.speech = speech
        self.on_record = on_record
        self.wall_clock = wall_clock
        self.max_errors = max_errors
        self.events: list[dict] = []
        self.history: list[tuple[ev.Event, list[ev.Action]]] = []  # every event the dialogue took, and its answer
        self.transfer_to: str | None = None
        self.listen: ev.Listen | None = None
        self.errors = 0
        self.playout = Playout()
        self._keys = KeyRun(run_gap)
        self._ended = False
        self._started = False
        self._ending = False  # the IVR's own ending (EndCall) is under way
        self._turn: _Turn | None = None

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """The IVR has hung up (its last prompt played out), or the caller has."""
        return self._ended

    @property
    def playing(self) -> bool:
        """IVR audio is queued or sounding."""
        return self.playout.playing

    @property
    def settled(self) -> int:
        """How many of ``events`` may be shown now (not the records of a run of keys still being typed)."""
        return len(self.events) if self._keys.start is None else self._keys.start

    # -- records ---------------------------------------------------------------------------------------------

    def note(self, t: float, kind: str, /, **data: Any) -> dict:
        """Record a fact of the call (masked); returns the record."""
        rec = mask({"t": _r(t), "type": kind, **data})
        self._keys.note(rec)
        self.events.append(rec)
        if self.on_record is not None:
            self.on_record(rec)
        return rec

    def end_input(self) -> None:
        """No more input is coming (the channel stops here): a run of keys still open ends now."""
        self._keys.close()

    # -- events in -------------------------------------------------------------------------------------------

    def start(self, t: float = 0.0) -> list[ev.Action]:
        """The call is answered: the greeting is queued."""
        if self._started:
            return []
        self._started = True
        self.note(t, "start", call_id=self.call_id, channel=self.channel, sample_rate=self.sample_rate,
                  speech=self.speech)
        return self.send(ev.CallStarted(t=t))

    def send(self, event: ev.Event) -> list[ev.Action]:
        """Take one event; returns the actions the dialogue answered with (already carried out)."""
        if self._ended:
            return []
        t = float(event.t)
        if isinstance(event, ev.Digit):
            extra = {"tone_ms": event.tone_ms} if event.tone_ms is not None else {}
            self.note(t, "key", digit=event.digit, via=event.via, **extra)
            self._turn = _Turn(t, self._wall(), "key")
        elif isinstance(event, ev.SpeechFinal):
            extra = {k: v for k in ("decode_ms", "lag_ms", "voice_end", "search") if (v := getattr(event, k)) is not None}
            self.note(t, "heard", text=event.text, confidence=round(event.confidence, 3), **extra,
                      **({"end": event.end} if event.end else {}))
            self._turn = _Turn(t, self._wall(), "speech")
        elif isinstance(event, ev.TransferFailed):
            self.transfer_to = None
        elif isinstance(event, ev.EndCall):
            if self._ending:
                return []
            self._ending = True
        try:
            actions = self.dialogue.handle(event)
        except Exception as exc:  # a bug in the call flow: this call ends, loudly
            self.crash(t, "dialogue", exc)
            return []
        self.history.append((event, actions))
        if isinstance(event, ev.CallerHangup):
            self.playout.clear()
            self._carry_out(actions, t)
            self._ended = True
            self._keys.close()
            return actions
        self._carry_out(actions, t)
        return actions

    def tick(self, t: float) -> list[ev.Action]:
        """Send ``ev.Timeout`` when the dialogue's deadline has passed; end a paused run of keys."""
        if self._ended or not self._started:
            return []
        self._keys.expire(t)
        deadline = self.dialogue.deadline
        if deadline is not None and t + 1e-9 >= deadline:
            self.note(t, "timeout", kind=self.dialogue.waiting_for)
            return self.send(ev.Timeout(t=max(float(t), deadline)))
        return []

    # -- audio out -------------------------------------------------------------------------------------------

    def audio(self, n_samples: int, t: float, timers: bool = True) -> np.ndarray:
        """The next ``n_samples`` of IVR audio (int16) from time ``t``, silence where nothing plays.
        ``timers``: run the dialogue's timers first (False: the channel runs them itself, e.g. holding a
        no-input timer while the caller's words still wait to be decoded)."""
        out = np.zeros(int(n_samples), dtype=np.int16)
        if self._ended:
            return out
        if timers:
            self.tick(t)
        filled = 0
        guard = 0
        while filled < len(out) and self.playout.items and not self._ended:
            guard += 1
            if guard > 10000:  # a dialogue that keeps answering with empty plays
                self.crash(t, "playout", RuntimeError("playback queue does not advance"))
                break
            now = t + filled / self.sample_rate
            item = self.playout.head()
            if not item.is_play:
                self._control(self.playout.pop().action, now)
                continue
            if item.pos == 0:
                self._play_started(item, now)
            take = min(len(out) - filled, item.left)
            if take > 0:
                out[filled:filled + take] = item.audio[item.pos:item.pos + take]
                item.pos += take
                filled += take
            if item.left <= 0:
                self.playout.pop()
                t_done = t + filled / self.sample_rate
                self.note(t_done, "play_end", play_id=item.action.play_id)
                self.send(ev.PlaybackFinished(item.action.play_id, t=t_done))
        if not self.playout.items:
            self._drain_controls(t + len(out) / self.sample_rate)
        return out

    # -- errors ----------------------------------------------------------------------------------------------

    def fail(self, t: float, where: str, exc: BaseException, polite: bool = True) -> None:
        """An engine failed (the TTS, the recogniser...): recorded; the call goes on until too many."""
        self.errors += 1
        log.warning("call %s: error in %s: %r", self.call_id, where, exc)
        self.note(t, "error", where=where, error=f"{type(exc).__name__}: {exc}"[:300])
        if polite and self.errors >= self.max_errors and not self._ending and not self._ended:
            self.send(ev.EndCall("error", t=t))
        elif self.errors >= 2 * self.max_errors and not self._ended:
            self._hard_end(t, "error")  # even the apology fails: give up on the call, keep the process

    def crash(self, t: float, where: str, exc: BaseException) -> None:
        """A bug inside the call: the traceback is logged and recorded, the call ends with the error prompt."""
        self.errors += 1
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        log.error("call %s: bug in %s\n%s", self.call_id, where, tb)
        self.note(t, "error", where=where, error=f"{type(exc).__name__}: {exc}"[:300], traceback=tb[-4000:])
        if self._ended:
            return
        if self._ending:  # the ending itself failed
            self._hard_end(t, "error")
            return
        self._ending = True
        self.playout.stop()
        try:
            actions = self.dialogue.handle(ev.EndCall("error", t=t))
        except Exception as again:  # the dialogue cannot even say goodbye
            log.error("call %s: the error ending failed too: %r", self.call_id, again)
            self._hard_end(t, "error")
            return
        self._carry_out(actions, t)

    # -- internals -------------------------------------------------------------------------------------------

    def _wall(self) -> float | None:
        return self.wall_clock() if self.wall_clock is not None else None

    def _carry_out(self, actions: list[ev.Action], t: float) -> None:
        for a in actions:
            if isinstance(a, ev.Play):
                self._queue_play(a, t)
            elif isinstance(a, ev.StopPlayback):
                cut, dropped = self.playout.stop()
                self.note(t, "stop", reason=a.reason, cut=cut, dropped=dropped)
            elif isinstance(a, ev.Listen):
                self.listen = a
                self.note(t, "listen", **{k: v for k, v in a.record().items() if k != "type"})
            elif isinstance(a, ev.Transfer | ev.HangUp):
                self.playout.add_control(a)
            elif isinstance(a, ev.Log):
                rec = a.record()
                self.note(rec.pop("t", t), rec.pop("type"), **rec)
        if not self.playout.playing:
            self._drain_controls(t)

    def _queue_play(self, play: ev.Play, t: float) -> None:
        try:
            audio = self.voice.audio(play.text)
        except Exception as exc:  # the engine failed: the play is skipped, the flow goes on
            self.fail(t, "tts", exc)
            audio = np.zeros(0, dtype=np.int16)
        self.playout.add_play(play, audio)
        self.note(t, "queued", play_id=play.play_id, prompt_id=play.prompt_id, faq_id=play.faq_id,
                  seconds=round(len(audio) / self.sample_rate, 3))

    def _play_started(self, item, t: float) -> None:
        p = item.action
        data: dict[str, Any] = {"play_id": p.play_id, "prompt_id": p.prompt_id, "faq_id": p.faq_id,
                                "text": p.text, "seconds": round(len(item.audio) / self.sample_rate, 3)}
        turn = self._turn
        if turn is not None and not turn.done:
            turn.done = True
            data["after"] = turn.cause
            data["latency"] = round(t - turn.t, 3)  # caller's turn end -> first IVR audio (call time)
            if turn.wall is not None:
                data["processing_ms"] = round((self.wall_clock() - turn.wall) * 1000, 2)
        self.note(t, "play", **data)

    def _drain_controls(self, t: float) -> None:
        while not self._ended:
            action = self.playout.next_control()
            if action is None:
                return
            self._control(action, t)

    def _control(self, action: ev.Transfer | ev.HangUp, t: float) -> None:
        if isinstance(action, ev.Transfer):
            self.transfer_to = action.target
            self.note(t, "transfer", target=action.target)
        else:
            self._hard_end(t, action.reason)

    def _hard_end(self, t: float, reason: str) -> None:
        self._keys.close()
        self.note(t, "hangup", by="ivr", reason=reason)
        self._ended = True
        self.playout.clear()
