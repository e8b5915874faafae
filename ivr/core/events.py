"""What goes into a call and what comes out of it: typed events and actions, each with ``t`` (call time).

Events, made by a channel or by the caller-audio piece and fed to ``ivr.core.call.Call`` (the dialogue sees
them too): ``CallStarted``, ``Digit(digit, via)``, ``SpeechPartial(text)``, ``SpeechFinal(text, confidence)``,
``Timeout``, ``PlaybackFinished(play_id)``, ``TransferFailed(reason)``, ``CallerHangup`` (the caller hung up)
and ``EndCall(reason)`` (the IVR ends the call: shutdown, or an error).

Actions, given by the dialogue and carried out by the call: ``Play``, ``StopPlayback``, ``Listen``,
``Transfer``, ``HangUp`` (the IVR hangs up once the plays before it are played out) and ``Log``. Every action
has ``record()``, a JSON-ready dict for the call log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ivr.core.menu import OPERATOR

# --- events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    t: float = field(kw_only=True)  # call time: seconds since the call started


@dataclass(frozen=True)
class CallStarted(_Event):
    pass


@dataclass(frozen=True)
class SpeechPartial(_Event):
    text: str


@dataclass(frozen=True)
class SpeechFinal(_Event):
    """The caller's utterance. ``end``: what ended it ("turn": the end-of-turn rule, "hangup");
    ``decode_ms``: recogniser time spent on the turn; ``lag_ms``: wall-clock time from the turn's last frame
    arriving to this final (decoding behind under load shows here); ``voice_end``: call time of the end of
    the caller's last word (voice-to-voice latency counts from it); ``search``: "busy" when a busy line
    decoded it with its narrower search. All only for the call log."""

    text: str
    confidence: float = 1.0
    # the recogniser's n-best list, (text, weight) best first; when given, the matcher weighs them together
    alternatives: tuple[tuple[str, float], ...] = ()
    end: str = field(default="", kw_only=True)
    decode_ms: float | None = field(default=None, kw_only=True)
    lag_ms: float | None = field(default=None, kw_only=True)
    voice_end: float | None = field(default=None, kw_only=True)
    search: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Digit(_Event):
    """A key: ``via`` "tone" (in-band DTMF), "signal" (RFC 4733, AudioSocket), "typed" (a keyboard)."""

    digit: str
    via: str = field(default="signal", kw_only=True)
    tone_ms: int | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Timeout(_Event):
    pass


@dataclass(frozen=True)
class PlaybackFinished(_Event):
    play_id: int


@dataclass(frozen=True)
class TransferFailed(_Event):
    reason: str = ""


@dataclass(frozen=True)
class CallerHangup(_Event):
    """The caller hung up."""


@dataclass(frozen=True)
class EndCall(_Event):
    """The IVR ends the call: ``reason`` "shutdown" (goodbye, hang up) or "error" (apology, goodbye, hang up)."""

    reason: str


Event = (CallStarted | SpeechPartial | SpeechFinal | Digit | Timeout | PlaybackFinished | TransferFailed
         | CallerHangup | EndCall)

# --- actions ------------------------------------------------------------------------------------------------


class _Record:
    KIND = ""

    def record(self) -> dict[str, Any]:
        """The action as a log record: {"type": ..., fields...}."""
        return {"type": self.KIND, **asdict(self)}


@dataclass(frozen=True)
class Play(_Record):
    """Say ``text``: a prompt (``prompt_id``) or a FAQ answer (``faq_id``). The TTS layer speaks it."""

    play_id: int
    prompt_id: str | None
    faq_id: int | None
    text: str
    barge_in: bool = True
    KIND = "play"


@dataclass(frozen=True)
class StopPlayback(_Record):
    """Stop what is playing now and drop every queued play (the caller barged in)."""

    reason: str = "barge_in"
    KIND = "stop"


@dataclass(frozen=True)
class Listen(_Record):
    """What the caller may do now: speak (``speech``), press keys (``digits``). ``timeout`` is the no-input
    time counted from the end of the plays; ``max_digits`` the longest key entry at this point. ``expect``:
    what kind of answer is asked ("yes_no", "menu", "question", "open"); the caller-audio piece ends a spoken
    turn sooner after a short answer (``ivr.media.turn.END_MS``)."""

    speech: bool
    digits: bool
    timeout: float
    inter_digit_timeout: float
    max_digits: int
    expect: str = "question"
    KIND = "listen"


@dataclass(frozen=True)
class Transfer(_Record):
    """Hand the call to ``target`` once the plays before it are played out."""

    target: str = OPERATOR
    KIND = "transfer"


@dataclass(frozen=True)
class HangUp(_Record):
    """The IVR ends the call once the plays before it are played out."""

    reason: str
    KIND = "hangup"


@dataclass(frozen=True)
class Log(_Record):
    """Something worth a line in the call log; ``data`` always carries ``t``."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    KIND = "log"

    def record(self) -> dict[str, Any]:
        return {"type": self.kind, **self.data}


Action = Play | StopPlayback | Listen | Transfer | HangUp | Log
