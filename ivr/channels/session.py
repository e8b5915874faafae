"""One call at a channel's edge: the caller's audio in, the IVR's audio out, the call log.

Every audio channel (``ivr call`` on a WAV file, the kiosk, SIP/RTP, AudioSocket) drives a ``CallSession``::

    resources = Resources.load(model_path=None, tts_rate=8000)   # once per process (ivr.channels.resources)
    s = CallSession(resources, call_id="...", sample_rate=8000, log_dir=Path | None, channel="sip")
    s.start(t)                      # greeting queued
    s.feed_audio(pcm_int16, t)      # caller audio, 20 ms frames (in-band keys + speech)
    s.feed_digit("5", t)            # out-of-band key (RFC 4733, AudioSocket)
    s.ivr_audio(n, t)               # the next n samples the IVR says (zeros when silent)
    s.tick(t)                       # timers; also done inside feed_audio / ivr_audio
    s.hangup(t)                     # the caller hung up
    s.goodbye(t)                    # the IVR ends the call (shutdown): goodbye, then hang-up
    s.ended, s.transfer_to, s.transfer_failed(t), s.events

The session is thin: ``ivr.media.caller_audio.CallerAudio`` turns the caller's frames into events (keys,
speech), ``ivr.core.call.Call`` is the call (dialogue, playout, timers, error policy, masked records), and
the session writes the records to the call log. Time ``t`` is seconds since the call started, given by the
channel: ``feed_audio(pcm, t)``: ``t`` is the time of the frame's first sample (what is heard in it counts
at the frame's end); ``ivr_audio(n, t)``: the time of the first sample returned. A channel that feeds the
frame [t, t+20 ms) and then reads the frame starting at t+20 ms answers a key within that frame.

Errors: bad input from a channel (a malformed frame, an unknown key) is recorded and the call goes on;
engine failures are recorded and counted by the call's error policy; a bug ends the call with the error
prompt and a logged traceback. Nothing is raised to the channel from the per-frame methods.
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ivr.channels.resources import Resources
from ivr.core.call import MAX_ERRORS
from ivr.core.events import CallerHangup, Digit, EndCall, SpeechFinal, SpeechPartial, TransferFailed
from ivr.media.caller_audio import MAX_ASR_ERRORS, CallerAudio, EngineFailed, SpeechOff
from ivr.media.turn import TurnSettings

__all__ = ["MAX_ASR_ERRORS", "MAX_ERRORS", "CallSession", "Resources"]

VALID_KEYS = set("0123456789*#ABCD")


class CallSession:
    """One call: caller audio -> events -> ``Call`` -> IVR audio, and the call log. One thread at a time."""

    def __init__(self, resources: Resources, call_id: str | None = None, sample_rate: int = 8000,
                 log_dir: Path | str | None = None, channel: str = "file", *,
                 turn: TurnSettings | None = None, defer_decode: bool = False, speech: bool = True):
        self.resources = resources
        self.call_id = str(call_id) if call_id else uuid.uuid4().hex[:12]
        self.sample_rate = int(sample_rate)
        self.channel = channel
        self.calllog = None
        if log_dir is not None:
            from ivr.channels.calllog import CallLog

            self.calllog = CallLog(log_dir, self.call_id, channel)
        self.caller = CallerAudio(self.sample_rate, resources.model if speech else None, turn=turn,
                                  defer=defer_decode)
        self.call = resources.new_call(sample_rate=self.sample_rate, call_id=self.call_id, channel=channel,
                                       speech=self.caller.speech, wall_clock=time.perf_counter,
                                       on_record=self.calllog.write if self.calllog else None)
        self._t = 0.0
        self._listen = None  # the dialogue's Listen the end-of-turn rule was set for
        self._key_t = float("-inf")  # call time of the caller's latest key
        if not speech and resources.model is not None:
            self.call.dialogue.keys_only = True  # keypad greeting
            self.call.note(0.0, "speech_off", reason="the line is busy: keys only for this call")
        elif resources.speech_note:
            self.call.note(0.0, "speech_off", reason=resources.speech_note)

    # -- public state ----------------------------------------------------------------------------------------

    @property
    def events(self) -> list[dict]:
        return self.call.events

    @property
    def ended(self) -> bool:
        """The IVR has hung up (its last prompt played out), or the caller has."""
        return self.call.ended

    @property
    def transfer_to(self) -> str | None:
        return self.call.transfer_to

    @property
    def playing(self) -> bool:
        """IVR audio is queued or sounding."""
        return self.call.playing

    @property
    def speech(self) -> bool:
        return self.caller.speech

    @property
    def recognizer(self):
        return self.caller.recognizer

    @property
    def dialogue(self):
        return self.call.dialogue

    @property
    def log_path(self) -> Path | None:
        return self.calllog.path if self.calllog else None

    # -- the channel's calls ---------------------------------------------------------------------------------

    def start(self, t: float = 0.0) -> None:
        """The call is answered: the greeting is queued."""
        with self._guard(t, "start"):
            self.call.start(t)
            self._sync_turn()

    def feed_audio(self, pcm, t: float, speech=None) -> None:
        """One frame of the caller's audio (mono int16 at ``sample_rate``); ``t`` is its first sample's time.
        ``speech``: what the recogniser hears instead (the kiosk's gated microphone), same length."""
        if self.call.ended:
            return
        with self._guard(t, "feed_audio"):
            try:
                x = _mono16(pcm)
                heard = _mono16(speech) if speech is not None else None
            except ValueError as exc:  # a malformed frame from a channel: recorded, the call goes on
                self.call.fail(t, "feed_audio", exc)
                return
            t_end = float(t) + len(x) / self.sample_rate
            self._events(self.caller.feed(x, t, heard))
            self._tick(t_end)

    def decode(self, max_frames: int | None = None, t: float | None = None) -> int:
        """With ``defer_decode``: decode up to ``max_frames`` of the caller's speech waiting (all when None);
        the partials and finals go to the call. Returns the frames still waiting. ``t``: the call time now
        (for the timers, which wait while speech is still being decoded)."""
        if self.call.ended:
            self.caller.backlog.clear()
            return 0
        when = t if t is not None else self._t
        with self._guard(when, "decode"):
            self._events(self.caller.decode(max_frames))
            if t is not None:
                self._tick(t)
        return len(self.caller.backlog)

    @property
    def decode_backlog(self) -> int:
        """Frames of the caller's speech waiting to be decoded."""
        return len(self.caller.backlog)

    @property
    def decode_ready(self) -> bool:
        """Speech waits to be decoded and a recogniser is there for it now."""
        return self.caller.ready()

    def feed_digit(self, digit: str, t: float) -> None:
        """A key signalled out of band (RFC 4733 telephone-event, AudioSocket DTMF)."""
        if self.call.ended:
            return
        with self._guard(t, "feed_digit"):
            d = str(digit).strip().upper()
            if d not in VALID_KEYS:
                self.call.note(t, "bad_key", digit=str(digit)[:8])
                return
            self._key_t = max(self._key_t, float(t))
            self.call.send(Digit(d, t=t, via="signal"))
            self._tick(t)

    def ivr_audio(self, n_samples: int, t: float) -> np.ndarray:
        """The next ``n_samples`` of IVR audio (int16), silence where nothing plays."""
        out = None
        with self._guard(t, "ivr_audio"):
            # the session's timers, which hold a no-input deadline while the caller's words wait to be decoded
            # (the call's own audio() would fire it: under load a caller who had spoken was told "no input")
            self._tick(t)
            out = self.call.audio(n_samples, t, timers=False)
            self._after()
        return out if out is not None else np.zeros(int(n_samples), dtype=np.int16)

    def tick(self, t: float) -> None:
        """Timers (no-input, inter-digit), and held log lines of a run of keys."""
        with self._guard(t, "tick"):
            self._tick(t)

    def hangup(self, t: float) -> None:
        """The caller hung up: the recogniser's last words are recorded, the call told, the log closed."""
        if not self.call.ended:
            with self._guard(t, "hangup"):
                if self.caller.defer:
                    # the phone: speech still waiting for a recogniser is not decoded once the caller is gone
                    # (it would take decoding time from the callers still on the line); the log says how much
                    dropped = self.caller.drop_waiting()
                    if dropped:
                        self.call.note(t, "speech_not_decoded", seconds=round(dropped, 2), reason="caller hung up")
                else:
                    self._events(self.caller.decode())  # words of turns already ended reach the dialogue
                last = self.caller.finish(t) if not self.call.ended else None
                if isinstance(last, SpeechFinal):
                    extra = {"lag_ms": last.lag_ms} if last.lag_ms is not None else {}
                    self.call.note(t, "heard", text=last.text, confidence=round(last.confidence, 3), final=True,
                                   after_hangup=True, **extra)
                elif isinstance(last, EngineFailed):
                    self.call.fail(t, "hangup", last.error, polite=False)
                self.call.send(CallerHangup(t=t))
        self._close()

    def transfer_failed(self, t: float, reason: str = "") -> None:
        """The transfer could not be made (refused, no operator configured): apology, back to the menu."""
        with self._guard(t, "transfer_failed"):
            self.call.send(TransferFailed(reason, t=t))

    def goodbye(self, t: float, reason: str = "shutdown") -> None:
        """End the call from the IVR side (the server is shutting down): stop, say goodbye, hang up."""
        with self._guard(t, "goodbye"):
            self.call.send(EndCall(reason, t=t))
            self._after()

    # -- internals -------------------------------------------------------------------------------------------

    def _events(self, events) -> None:
        for ev in events:
            if self.call.ended:
                break
            if isinstance(ev, EngineFailed):
                self.call.fail(ev.t, ev.where, ev.error, polite=False)
            elif isinstance(ev, SpeechOff):
                self.call.speech = False
                self.call.note(ev.t, "speech_off", reason=ev.reason)
            elif isinstance(ev, SpeechPartial | SpeechFinal) and ev.t < self._key_t:
                # decoded late, from before a key the caller pressed since: the key was acted on, keys win
                if isinstance(ev, SpeechFinal):
                    self.call.note(ev.t, "heard", text=ev.text, confidence=round(ev.confidence, 3),
                                   superseded_by_key=True, **({"lag_ms": ev.lag_ms} if ev.lag_ms is not None else {}))
            else:
                if isinstance(ev, Digit):
                    self._key_t = max(self._key_t, ev.t)
                self.call.send(ev)
        self._sync_turn()

    def _sync_turn(self) -> None:
        """The end-of-turn quiet follows what the dialogue listens for now (a yes/no, a menu word...)."""
        listen = self.call.listen
        if listen is not self._listen:
            self._listen = listen
            if listen is not None:
                self.caller.set_expect(listen.expect)

    def _tick(self, t: float) -> None:
        self._t = max(self._t, float(t))
        if self.calllog is not None:
            self.calllog.tick(t)
        # no no-input timer fires while the caller's words wait to be decoded (a key entry's timer does)
        if not self.caller.backlog or self.call.dialogue.waiting_for not in ("no_input", "speaking"):
            self.call.tick(t)
        self._sync_turn()
        self._after()

    def _after(self) -> None:
        if self.call.ended:
            self._close()

    @contextmanager
    def _guard(self, t: float, where: str):
        """A bug below a channel's call ends this call (error prompt, traceback logged), never the channel."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - not hidden: the call ends with the traceback on record
            self.call.crash(t, where, exc)
            self._after()

    def _close(self) -> None:
        self.caller.close()  # its recogniser goes back to the pool now, not when the call is garbage-collected
        if self.calllog is not None:
            self.calllog.close()


def _mono16(pcm) -> np.ndarray:
    x = np.asarray(pcm)
    if x.ndim != 1:
        if x.ndim == 2 and 1 in x.shape:
            x = x.reshape(-1)
        else:
            raise ValueError(f"caller audio frame has shape {x.shape}; mono samples expected")
    if x.dtype != np.int16:
        from ivr.media.audio import to_int16

        x = to_int16(x)
    return x
