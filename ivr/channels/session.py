"""One call, glued together: the channel's audio in, the IVR's audio out, the dialogue in between.

Every channel (``ivr call`` on a WAV file, the kiosk, SIP/RTP, AudioSocket) drives a ``CallSession``::

    resources = Resources.load(model_path=None, tts_rate=8000)   # once per process
    s = CallSession(resources, call_id="...", sample_rate=8000, log_dir=Path | None, channel="sip")
    s.start(t)                      # greeting queued
    s.feed_audio(pcm_int16, t)      # caller audio, 20 ms frames (in-band keys + speech)
    s.feed_digit("5", t)            # out-of-band key (RFC 4733, AudioSocket)
    s.read_audio(n, t)              # the next n samples the IVR says (zeros when silent)
    s.tick(t)                       # timers; also done inside feed_audio / read_audio
    s.hangup(t)                     # the caller hung up
    s.ended, s.transfer_to, s.transfer_failed(t), s.events

Time ``t`` is seconds since the call started, given by the channel (real time on a phone line, virtual
time in a file simulation): the session has no clock of its own. ``feed_audio(pcm, t)``: ``t`` is the time
of the frame's first sample (what is heard in it counts at the frame's end); ``read_audio(n, t)``: the time of
the first sample returned. A channel that feeds the frame [t, t+20 ms) and then reads the frame starting at
t+20 ms answers a key within that frame.

Keys: the in-band DTMF receiver validates a key after about 31 ms of tone (``DtmfReceiver.pressed``); the
``Digit`` goes to the dialogue at that moment (not at key release), so a key stops the prompt within the
frame it was recognised in. The key is logged as a ``key`` event (``via``: ``tone`` or ``signal``).
While a key sounds, the recogniser hears silence instead (keypad tones are not speech).

Speech: every frame goes to the Vosk recogniser (when a model is loaded), also while the IVR speaks: on a
phone line the IVR's own voice is not in the caller's stream, so a caller can talk over a prompt. A partial
result with real words barges in; a final result becomes ``SpeechFinal(text, confidence)``.

The end of an utterance is decided twice, whichever comes first: by the recogniser's own endpointer (Kaldi's
trailing-silence rules), and by the session: once words were heard, ``speech_end_s`` of quiet caller audio
(frames under ``quiet_dbfs``) finish the recogniser and take its final. The session's rule is needed because
the endpointer is not reproducible: Kaldi dithers every feature frame (the models' ``--dither`` default is
1.0) with noise seeded from the process-wide libc ``rand()``, whose state depends on all the audio any
recogniser in the process decoded before. On quiet audio the dither is nearly all the features see, so the
same call may end its utterance 1.4 s after the caller stopped, or 2.5 s, or never. The ``heard`` event says
which rule ended it (``end``: ``recogniser`` or ``quiet``).

Output: each ``Play`` is looked up in the TTS cache (rendered once, at the channel's rate) and queued; a
``StopPlayback`` empties the queue at once; a ``Transfer`` or ``HangUp`` waits in the queue behind the plays
before it. ``PlaybackFinished`` goes to the dialogue when the last sample of a play has been read out, at
the time of that sample.

Errors: anything that goes wrong inside the call is logged as an ``error`` event and the call goes on
(a failing recogniser is rebuilt, and after repeated failures speech is turned off for the call: keys still
work). After ``MAX_ERRORS`` errors the IVR apologises, says goodbye and hangs up. Nothing is raised to the
channel from the per-frame methods.
"""

from __future__ import annotations

import logging
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivr.core.dialogue import (
    CallStarted,
    Digit,
    HangUp,
    Hangup,
    Listen,
    Log,
    Play,
    PlaybackFinished,
    SpeechFinal,
    SpeechPartial,
    StopPlayback,
    Timeout,
    Transfer,
    TransferFailed,
)

log = logging.getLogger(__name__)

MAX_ERRORS = 5  # errors in one call before the IVR apologises and hangs up
MAX_ASR_ERRORS = 3  # recogniser failures before speech is turned off for the call
VALID_KEYS = set("0123456789*#ABCD")
SPEECH_END_S = 1.5  # quiet caller audio after words that ends the utterance, if the recogniser has not
QUIET_DBFS = -45.0  # caller frames below this RMS level count as quiet (line noise is about -60 dBFS)


def _r(t: float) -> float:
    return round(float(t), 6)  # exact to the sample at 8 and 16 kHz


@dataclass
class Resources:
    """What every call shares, loaded once per process.

    ``model`` is the shared Vosk model, or None (speech off: keys still work); ``speech_note`` says why
    there is no model. ``tts`` is the speech cache, used at ``tts_rate`` (the channel's rate).
    """

    faq: Any
    matcher: Any
    prompts: Any
    settings: Any
    menu: Any
    tts: Any
    tts_rate: int
    model: Any = None
    model_path: Path | None = None
    speech_note: str = ""

    @classmethod
    def load(cls, model_path: str | Path | None = None, tts_rate: int = 8000, *, tts=None,
             faq=None, prompts=None, settings=None) -> Resources:
        """Load the FAQ, matcher, prompts, call-flow settings, keypad menu, the TTS cache and the speech model.

        ``model_path``: None finds the model as ``ivr.media.asr.resolve_model_path`` does (and goes on without
        speech when there is none); a path must be a model (else ``IvrError``); ``"none"`` turns speech off.
        ``tts``: a ``TtsCache`` to use (default: the configured voice, the per-user cache directory).
        """
        from ivr.content.faq import load_faq
        from ivr.content.prompts import load_prompts
        from ivr.core.dialogue import load_settings
        from ivr.core.menu import build_menu
        from ivr.language.match import Matcher
        from ivr.media import asr
        from ivr.media.tts import Synthesizer, TtsCache, check_rate

        tts_rate = check_rate(tts_rate)
        faq = faq if faq is not None else load_faq()
        prompts = prompts if prompts is not None else load_prompts()
        settings = settings if settings is not None else load_settings()
        menu = build_menu(faq, prompts, operator=settings.operator_enabled, operator_key=settings.operator_key)
        if tts is None:
            tts = TtsCache(Synthesizer.from_config())
        model = None
        path = None
        note = ""
        if isinstance(model_path, str) and model_path.strip().lower() == "none":
            note = "speech recognition is off (--model none): keys only"
        else:
            from ivr.errors import IvrError

            try:
                path = asr.resolve_model_path(model_path)
            except IvrError as exc:
                if model_path:  # a path was given and is wrong: say so
                    raise
                note = f"speech recognition is off: {exc.problem}. Keys still work. ({exc.fix})"
            if path is not None:
                model = asr.load_model(path)
        return cls(faq=faq, matcher=Matcher(faq), prompts=prompts, settings=settings, menu=menu, tts=tts,
                   tts_rate=tts_rate, model=model, model_path=path, speech_note=note)

    def texts(self) -> list[str]:
        """Every text a call can say: prompts, menus and FAQ answers (for warming the TTS cache)."""
        from ivr.core.dialogue import Dialogue, answer_text

        d = Dialogue(self.faq, self.matcher, self.prompts, self.settings, menu=self.menu)
        return list(d.prompt_texts().values()) + [answer_text(e) for e in self.faq.entries]

    def warm(self, progress: bool = False) -> dict[str, int]:
        """Render every prompt and answer into the TTS cache now, so that no call waits for the engine."""
        return self.tts.render_all(self.texts(), self.tts_rate, progress=progress)


@dataclass
class _Item:
    kind: str  # "play" | "transfer" | "hangup"
    play: Play | None = None
    audio: np.ndarray | None = None
    pos: int = 0
    target: str = ""
    reason: str = ""


@dataclass
class _Turn:
    """The caller's last turn (key or speech final): for the response latency of the next play."""

    t: float
    wall: float
    cause: str
    done: bool = False
    extra: dict = field(default_factory=dict)


class CallSession:
    """One call: dialogue + DTMF receiver + recogniser + TTS queue + call log. One thread at a time."""

    def __init__(self, resources: Resources, call_id: str | None = None, sample_rate: int = 8000,
                 log_dir: Path | str | None = None, channel: str = "file", *,
                 speech_end_s: float = SPEECH_END_S, quiet_dbfs: float = QUIET_DBFS):
        from ivr.core.dialogue import Dialogue
        from ivr.media.dtmf import DtmfReceiver

        self.resources = resources
        self.call_id = str(call_id) if call_id else uuid.uuid4().hex[:12]
        self.sample_rate = int(sample_rate)
        self.channel = channel
        self.frame_samples = self.sample_rate // 50
        self.dialogue = Dialogue(resources.faq, resources.matcher, resources.prompts, resources.settings,
                                 menu=resources.menu)
        self.dtmf = DtmfReceiver(self.sample_rate)
        self.events: list[dict] = []
        self.transfer_to: str | None = None
        self.errors = 0
        self.asr_errors = 0
        self.listen: Listen | None = None
        self._queue: list[_Item] = []
        self._ended = False
        self._started = False
        self._caller_gone = False
        self._key_down: str | None = None  # key reported at press, its tone still sounding
        self._dtmf_quiet = 0  # frames to keep silencing the recogniser after a tone
        self._now = 0.0
        self._turn: _Turn | None = None
        self._ending = False  # the polite error ending is under way
        self.speech_end_s = float(speech_end_s)
        self._quiet_rms = 32768.0 * 10.0 ** (float(quiet_dbfs) / 20.0)
        self._utterance = False  # the recogniser has words of an utterance not yet final
        self._voice_end = 0.0  # end time of the caller's last frame above the quiet level
        self.calllog = None
        if log_dir is not None:
            from ivr.channels.calllog import CallLog

            self.calllog = CallLog(log_dir, self.call_id, channel)
        self.recognizer = None
        self.speech = resources.model is not None
        if self.speech:
            self._new_recognizer()
        if resources.speech_note:
            self._event(0.0, "speech_off", reason=resources.speech_note)

    # -- public state ----------------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """The IVR has hung up (its last prompt played out), or the caller has."""
        return self._ended

    @property
    def playing(self) -> bool:
        """IVR audio is queued or sounding."""
        return any(i.kind == "play" for i in self._queue)

    @property
    def log_path(self) -> Path | None:
        return self.calllog.path if self.calllog else None

    # -- the channel's calls ---------------------------------------------------------------------------------

    def start(self, t: float = 0.0) -> None:
        """The call is answered: the greeting is queued."""
        if self._started:
            return
        self._started = True
        self._now = float(t)
        self._event(t, "start", call_id=self.call_id, channel=self.channel, sample_rate=self.sample_rate,
                    speech=self.speech)
        self._send(CallStarted(t=t), t)

    def feed_audio(self, pcm, t: float) -> None:
        """One frame of the caller's audio (mono int16 at ``sample_rate``); ``t`` is its first sample's time."""
        if self._ended:
            return
        try:
            x = np.asarray(pcm)
            if x.ndim != 1:
                if x.ndim == 2 and 1 in x.shape:
                    x = x.reshape(-1)
                else:
                    raise ValueError(f"caller audio frame has shape {x.shape}; mono samples expected")
            if x.dtype != np.int16:
                from ivr.media.audio import to_int16

                x = to_int16(x)
            t_end = float(t) + len(x) / self.sample_rate
            self._now = max(self._now, t_end)
            self._feed_dtmf(x, t_end)
            if not self._ended and self.recognizer is not None:
                quiet = self._key_down is not None or self._dtmf_quiet > 0 or self.dtmf.pressed is not None
                if self._dtmf_quiet > 0:
                    self._dtmf_quiet -= 1
                self._feed_asr(np.zeros_like(x) if quiet else x, t_end)
            self.tick(t_end)
        except Exception as exc:  # never let a frame end the call
            self._error(t, "feed_audio", exc)

    def feed_digit(self, digit: str, t: float) -> None:
        """A key signalled out of band (RFC 4733 telephone-event, AudioSocket DTMF)."""
        if self._ended:
            return
        try:
            d = str(digit).strip().upper()
            if d not in VALID_KEYS:
                self._event(t, "bad_key", digit=str(digit)[:8])
                return
            self._now = max(self._now, float(t))
            self._key(d, t, "signal")
            self.tick(t)
        except Exception as exc:
            self._error(t, "feed_digit", exc)

    def read_audio(self, n_samples: int, t: float) -> np.ndarray:
        """The next ``n_samples`` of IVR audio (int16), silence where nothing plays."""
        out = np.zeros(int(n_samples), dtype=np.int16)
        if self._ended:
            return out
        try:
            self.tick(t)
            filled = 0
            guard = 0
            while filled < len(out) and self._queue and not self._ended:
                guard += 1
                if guard > 10000:  # a dialogue that keeps answering with empty plays
                    raise RuntimeError("playback queue does not advance")
                item = self._queue[0]
                if item.kind != "play":
                    self._queue.pop(0)
                    self._control(item, t + filled / self.sample_rate)
                    continue
                audio = item.audio
                if item.pos == 0:
                    self._play_started(item, t + filled / self.sample_rate)
                take = min(len(out) - filled, len(audio) - item.pos)
                if take > 0:
                    out[filled:filled + take] = audio[item.pos:item.pos + take]
                    item.pos += take
                    filled += take
                if item.pos >= len(audio):
                    self._queue.pop(0)
                    t_done = t + filled / self.sample_rate
                    self._event(t_done, "play_end", play_id=item.play.play_id)
                    self._send(PlaybackFinished(item.play.play_id, t=t_done), t_done)
            if not self._queue:
                self._drain_controls(t + len(out) / self.sample_rate)
        except Exception as exc:
            self._error(t, "read_audio", exc)
        return out

    def tick(self, t: float) -> None:
        """Send ``Timeout`` when the dialogue's deadline has passed."""
        if self._ended or not self._started:
            return
        self._now = max(self._now, float(t))
        if self.calllog is not None:
            self.calllog.tick(t)
        deadline = self.dialogue.deadline
        if deadline is not None and t + 1e-9 >= deadline:
            kind = self.dialogue.waiting_for
            self._event(t, "timeout", kind=kind)
            self._send(Timeout(t=max(float(t), deadline)), t)

    def hangup(self, t: float) -> None:
        """The caller hung up: the dialogue is told, the recogniser's last words are logged, the log closed."""
        if self._caller_gone:
            return
        self._caller_gone = True
        if not self._ended:
            try:
                if self.recognizer is not None:
                    last = self.recognizer.finish()
                    if last.text:
                        self._event(t, "heard", text=last.text, confidence=round(last.confidence, 3),
                                    final=True, after_hangup=True)
            except Exception as exc:
                self._error(t, "hangup", exc, polite=False)
            self._queue.clear()
            try:
                self._actions(self.dialogue.handle(Hangup(t=t)), t)
            except Exception as exc:
                self._error(t, "hangup", exc, polite=False)
            self._ended = True
        self._close()

    def transfer_failed(self, t: float, reason: str = "") -> None:
        """The transfer could not be made (refused, no operator configured): apology, back to the menu."""
        self.transfer_to = None
        self._send(TransferFailed(reason, t=t), t)

    def goodbye(self, t: float, reason: str = "shutdown") -> None:
        """End the call from the IVR side (the server is shutting down): stop, say goodbye, hang up."""
        if self._ended:
            return
        self._queue = [i for i in self._queue if i.kind != "play"]
        self._event(t, "stop", reason=reason)
        try:
            self.dialogue.handle(Hangup(t=t))  # the dialogue is over; its own record is not needed
        except Exception as exc:
            self._error(t, "goodbye", exc, polite=False)
        self._queue_prompt("goodbye", t)
        self._queue.append(_Item("hangup", reason=reason))

    # -- keys ------------------------------------------------------------------------------------------------

    def _feed_dtmf(self, x: np.ndarray, t_end: float) -> None:
        try:
            ended = self.dtmf.feed(x)
        except Exception as exc:
            self._error(t_end, "dtmf", exc, polite=False)
            from ivr.media.dtmf import DtmfReceiver

            self.dtmf = DtmfReceiver(self.sample_rate)
            self._key_down = None
            return
        for ev in ended:  # key presses whose tone ended in this frame
            if self._key_down == ev.digit:
                self._key_down = None  # already sent at press time
            else:  # a short tone that began and ended within this frame
                self._key(ev.digit, t_end, "tone", tone_ms=round(ev.duration * 1000))
            self._dtmf_quiet = 2
        pressed = self.dtmf.pressed
        if pressed is not None and self._key_down is None:
            self._key_down = pressed
            self._key(pressed, t_end, "tone")

    def _key(self, digit: str, t: float, via: str, **extra: Any) -> None:
        self._event(t, "key", digit=digit, via=via, **extra)
        self._turn = _Turn(float(t), time.perf_counter(), "key")
        self._send(Digit(digit, t=t), t)

    # -- speech ----------------------------------------------------------------------------------------------

    def _new_recognizer(self) -> None:
        from ivr.media.asr import Recognizer

        self.recognizer = Recognizer(self.resources.model, self.sample_rate)

    def _feed_asr(self, x: np.ndarray, t_end: float) -> None:
        wall = time.perf_counter()
        try:
            ev = self.recognizer.feed(x)
        except Exception as exc:
            self._asr_failed(t_end, exc)
            return
        if len(x) and np.sqrt(np.mean(np.square(x, dtype=np.float64))) >= self._quiet_rms:
            self._voice_end = t_end
        if ev is None:
            if self._utterance and t_end - self._voice_end >= self.speech_end_s - 1e-9:
                self._end_utterance(t_end, wall)
            return
        if ev.kind == "partial":
            self._utterance = True
            self._send(SpeechPartial(ev.text, t=t_end), t_end)
            return
        self._utterance = False
        self._speech_final(ev, t_end, wall, "recogniser")

    def _asr_failed(self, t_end: float, exc: BaseException) -> None:
        self.asr_errors += 1
        self._utterance = False
        self._error(t_end, "recognizer", exc, polite=False)
        if self.asr_errors >= MAX_ASR_ERRORS:
            self.recognizer = None
            self.speech = False
            self._event(t_end, "speech_off", reason=f"the recogniser failed {self.asr_errors} times")
        else:
            try:
                self.recognizer.reset()
            except Exception:
                self._new_recognizer()

    def _end_utterance(self, t_end: float, wall: float) -> None:
        """The caller has been quiet for ``speech_end_s`` after words: take the recogniser's final now."""
        self._utterance = False
        try:
            ev = self.recognizer.finish()
        except Exception as exc:
            self._asr_failed(t_end, exc)
            return
        if ev.text:
            self._speech_final(ev, t_end, wall, "quiet")

    def _speech_final(self, ev, t_end: float, wall: float, end: str) -> None:
        self._event(t_end, "heard", text=ev.text, confidence=round(ev.confidence, 3),
                    decode_ms=round((time.perf_counter() - wall) * 1000, 2), end=end)
        self._turn = _Turn(t_end, wall, "speech")
        nbest = tuple((a.text, a.weight) for a in getattr(ev, "alternatives", None) or ())
        self._send(SpeechFinal(ev.text, ev.confidence, nbest, t=t_end), t_end)

    # -- dialogue and actions --------------------------------------------------------------------------------

    def _send(self, event, t: float) -> None:
        if self._ended:
            return
        try:
            actions = self.dialogue.handle(event)
        except Exception as exc:  # an IvrError from the data (a bad prompt): never end the process
            self._error(t, "dialogue", exc)
            return
        self._actions(actions, t)

    def _actions(self, actions, t: float) -> None:
        for a in actions:
            if isinstance(a, Play):
                self._queue_play(a, t)
            elif isinstance(a, StopPlayback):
                self._stop(a.reason, t)
            elif isinstance(a, Listen):
                self.listen = a
            elif isinstance(a, Transfer):
                self._queue.append(_Item("transfer", target=a.target))
            elif isinstance(a, HangUp):
                self._queue.append(_Item("hangup", reason=a.reason))
            elif isinstance(a, Log):
                rec = a.record()
                self._event(rec.pop("t", t), rec.pop("type"), **rec)
        if not any(i.kind == "play" for i in self._queue):
            self._drain_controls(t)

    def _queue_play(self, play: Play, t: float) -> None:
        try:
            audio = self.resources.tts.get(unicodedata.normalize("NFC", play.text), self.resources.tts_rate)
            if self.resources.tts_rate != self.sample_rate:
                from ivr.media.audio import resample

                audio = resample(audio, self.resources.tts_rate, self.sample_rate)
        except Exception as exc:  # the engine failed: the play is skipped, the flow goes on
            self._error(t, "tts", exc)
            audio = np.zeros(0, dtype=np.int16)
        self._queue.append(_Item("play", play=play, audio=audio))
        self._event(t, "queued", play_id=play.play_id, prompt_id=play.prompt_id, faq_id=play.faq_id,
                    seconds=round(len(audio) / self.sample_rate, 3))

    def _queue_prompt(self, prompt_id: str, t: float) -> None:
        """A play the session makes itself (goodbye on shutdown, the apology after errors)."""
        try:
            text = self.resources.prompts.text(prompt_id)
        except Exception:
            return
        self._queue_play(Play(-1 - len(self.events), prompt_id, None, text, False), t)

    def _play_started(self, item: _Item, t: float) -> None:
        p = item.play
        data: dict[str, Any] = {"play_id": p.play_id, "prompt_id": p.prompt_id, "faq_id": p.faq_id,
                                "text": p.text, "seconds": round(len(item.audio) / self.sample_rate, 3)}
        turn = self._turn
        if turn is not None and not turn.done:
            turn.done = True
            data["after"] = turn.cause
            data["latency"] = round(t - turn.t, 3)  # caller's turn end -> first IVR audio (call time)
            data["processing_ms"] = round((time.perf_counter() - turn.wall) * 1000, 2)
        self._event(t, "play", **data)

    def _stop(self, reason: str, t: float) -> None:
        dropped = [i for i in self._queue if i.kind == "play"]
        cut = next((i.play.play_id for i in dropped if i.pos > 0), None)
        self._queue = [i for i in self._queue if i.kind != "play"]
        self._event(t, "stop", reason=reason, cut=cut, dropped=[i.play.play_id for i in dropped])

    def _drain_controls(self, t: float) -> None:
        while self._queue and self._queue[0].kind != "play" and not self._ended:
            self._control(self._queue.pop(0), t)

    def _control(self, item: _Item, t: float) -> None:
        if item.kind == "transfer":
            self.transfer_to = item.target
            self._event(t, "transfer", target=item.target)
        elif item.kind == "hangup":
            self._event(t, "hangup", by="ivr", reason=item.reason)
            self._ended = True
            self._queue.clear()
            self._close()

    # -- errors and log --------------------------------------------------------------------------------------

    def _error(self, t: float, where: str, exc: BaseException, polite: bool = True) -> None:
        self.errors += 1
        log.warning("call %s: error in %s: %r", self.call_id, where, exc)
        self._event(t, "error", where=where, error=f"{type(exc).__name__}: {exc}"[:300])
        if polite and self.errors >= MAX_ERRORS and not self._ending and not self._ended:
            self._end_politely(t)
        elif self.errors >= 2 * MAX_ERRORS and not self._ended:
            self._ended = True  # even the apology fails: give up on the call, keep the process
            self._close()

    def _end_politely(self, t: float) -> None:
        self._ending = True
        self._queue = [i for i in self._queue if i.kind != "play"]
        try:
            self.dialogue.handle(Hangup(t=t))
        except Exception:
            pass
        self._queue_prompt("error", t)
        self._queue_prompt("goodbye", t)
        self._queue.append(_Item("hangup", reason="error"))

    def _event(self, t: float, kind: str, /, **data: Any) -> None:
        rec = {"t": _r(t), "type": kind, **data}
        self.events.append(rec)
        if self.calllog is not None:
            self.calllog.write(rec)

    def _close(self) -> None:
        if self.calllog is not None:
            self.calllog.close()
