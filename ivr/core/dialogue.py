"""The call flow: a pure state machine, one ``Dialogue`` per call. Events in, actions out.

No I/O, no clock, no randomness: time arrives with the events (``t``, seconds since the call started) and
the engine says when it wants a ``Timeout`` through ``deadline``. The same engine runs behind the terminal
chat, WAV-file calls, the kiosk and the phone line.

Events in (``ivr.core.events``): ``CallStarted``, ``SpeechPartial``, ``SpeechFinal``, ``Digit``, ``Timeout``,
``PlaybackFinished``, ``TransferFailed``, ``CallerHangup``, ``EndCall`` — each with ``t=``. Actions out:
``Play``, ``StopPlayback``, ``Listen``, ``Transfer``, ``HangUp``, ``Log``. Plays queue up in order; a
``Transfer`` or ``HangUp`` is carried out once the plays before it have been played out. The channel's
``ivr.core.call.Call`` reports each finished play with ``PlaybackFinished(play_id)``; the no-input timer starts
when the last play of a turn has finished. A ``StopPlayback`` (barge-in) stops and drops every queued play.
Each turn that waits for the caller ends with a ``Listen`` (sent with the plays, so that a channel keeps
recognising speech and keys during them for barge-in). The dialogue reads no file: its settings are given.

The flow:
- greeting (greet_long + main menu); the caller may speak a question or use the keypad at any time;
- speech -> matcher: ``answer`` -> the answer, then "1 nghe lại / 2 hỏi câu khác / 3 menu chính / 9 kết
  thúc"; ``confirm`` -> "Có phải quý khách muốn hỏi về ...?" answered by voice or keys 1/2; ``reject`` ->
  the no-match ladder (rephrase -> keypad menu -> operator after ``max_failures``);
- silence -> the no-input ladder (reprompt -> main menu -> goodbye after ``max_timeouts``);
- keypad: topics -> questions -> answer (``ivr.core.menu``), ``0`` operator, ``*`` repeat, ``#`` main menu;
- barge-in: a key or real speech during a barge-in-able prompt stops playback at once; keys pressed during a
  prompt that cannot be interrupted are kept and acted on when it ends (type-ahead).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ivr.core import events as ev
from ivr.core.events import Action, HangUp, Listen, Log, Play, StopPlayback, Transfer
from ivr.core.menu import OPERATOR, MenuNode, build_menu
from ivr.core.settings import DialogueSettings

# --- helpers ------------------------------------------------------------------------------------------------

DIGITS = set("0123456789*#")
_WORD_RE = re.compile(r"\w+")


def answer_text(entry) -> str:
    """The text an answer is spoken from: the entry's ``spoken`` form when it has one, else its answer."""
    return unicodedata.normalize("NFC", (entry.spoken or entry.answer)).strip()


def _fold_words(text: str) -> list[str]:
    from ivr.language.normalize import fold

    return _WORD_RE.findall(fold(text))


@dataclass(frozen=True)
class _Spec:
    """A play to make: a prompt or an answer."""

    prompt_id: str | None
    text: str
    faq_id: int | None = None
    barge_in: bool = True


# states
IDLE, MENU, AFTER_ANSWER, CONFIRM, TRANSFERRING, ENDED = (
    "idle", "menu", "after_answer", "confirm", "transferring", "ended"
)
LISTENING = (MENU, AFTER_ANSWER, CONFIRM)

# a voice command counts when the caller's words hold it and at most this many words besides
_COMMAND_SLACK = 3
_TOPIC_LEADS = frozenset({"về", "phần", "mục", "chủ", "đề", "hỏi", "vấn"})
# the words of the request a caller says before a topic name ("tôi muốn hỏi về", "cho tôi hỏi về", "em cần hỗ
# trợ về", "mình muốn biết thêm về", "tôi có câu hỏi về"): who asks, asking, wanting, and what the help is
# called. Never a negation or a content word: "không có sinh trắc học" is a question, not a topic.
_REQUEST_WORDS = frozenset(
    """
    tôi em mình anh chị bạn tớ cháu con chúng ta bác cô chú ông bà
    cho muốn cần xin được nhờ giúp hộ giùm hỏi biết thêm có câu hỗ trợ tư vấn hướng dẫn đỡ
    một chút tí xíu chi tiết ít vui lòng làm ơn với là thì cái các những
    """.split()
)
# ... and the words a caller ends on after the name ("về mật khẩu thôi", "về sinh trắc học một chút")
_TOPIC_TAILS = frozenset({"thôi", "với", "một", "chút", "tí", "xíu", "đó", "này", "ấy", "nhé"})


def _topic_names(menu: MenuNode) -> dict[str, str]:
    """Normalised names of each keypad topic -> topic id: the label and its parts ("Mật khẩu và mã PIN" ->
    "mật khẩu", "mã pin"). A name two topics share belongs to neither."""
    from ivr.language.normalize import normalize

    names: dict[str, str | None] = {}
    for node in (menu.options or {}).values():
        if not node.is_menu or not node.topic_id:
            continue
        label = node.label or ""
        for part in {label, *re.split(r",| và | hoặc |/", label)}:
            name = normalize(part)
            if name:
                names[name] = node.topic_id if names.get(name, node.topic_id) == node.topic_id else None
    return {k: v for k, v in names.items() if v}


class Dialogue:
    """One call's dialogue. ``handle(event)`` returns the actions to carry out, in order."""

    def __init__(self, faq, matcher, prompts, settings: DialogueSettings, menu: MenuNode | None = None):
        self.faq = faq
        self.matcher = matcher
        self.prompts = prompts
        self.settings = settings
        self.menu = menu if menu is not None else build_menu(
            faq, prompts, operator=self.settings.operator_enabled, operator_key=self.settings.operator_key
        )
        self.state = IDLE
        self.keys_only = False  # speech is off for this call from the start (a busy line): keypad greeting
        self.node: MenuNode = self.menu  # the current keypad menu
        self.last_faq_id: int | None = None  # the answer just given (after_answer)
        self.confirm_id: int | None = None  # the entry being confirmed
        self._confirm_rest: list[int] = []  # runners-up that may be offered after "no"
        self._likely_topic: str | None = None  # topic of the entry first offered: its menu after "no"
        self._topic_names = _topic_names(self.menu)
        self._reprompt: list[_Spec] = []  # what "*" repeats
        self._outstanding: dict[int, bool] = {}  # play_id -> barge_in, plays not yet finished
        self._typeahead: list[tuple[str, float]] = []  # keys pressed during a prompt that cannot be cut
        self._digits = ""  # a multi-key entry being collected
        self._timer: tuple[str, float] | None = None  # ("no_input" | "speaking" | "inter_digit", due)
        self._next_play = 1
        self.counters: dict[str, int] = {
            "failures": 0,  # in a row (no match, invalid key, "no" to a confirmation)
            "timeouts": 0,  # in a row
            "no_match": 0,
            "no_input": 0,
            "invalid": 0,
            "answers": 0,
            "confirms": 0,
            "barge_ins": 0,
            "transfers": 0,
        }
        self._commands = {
            name: [_fold_words(p) for p in phrases] for name, phrases in prompts.voice_commands.items()
        }

    # -- public state ----------------------------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """When the engine wants a ``Timeout`` event (seconds since call start), None when not waiting."""
        return self._timer[1] if self._timer else None

    @property
    def waiting_for(self) -> str | None:
        """What the deadline is for: "no_input" (silence after a prompt), "speaking" (the caller's words have
        begun, their turn has not ended), "inter_digit" (a key entry), None."""
        return self._timer[0] if self._timer else None

    @property
    def ended(self) -> bool:
        return self.state == ENDED

    @property
    def playing(self) -> bool:
        """True while plays sent by the engine are not finished (nor stopped)."""
        return bool(self._outstanding)

    # -- events ----------------------------------------------------------------------------------------------

    def handle(self, event: ev.Event) -> list[Action]:
        """Take one event, return the actions to carry out in order."""
        t = float(event.t)
        if isinstance(event, ev.CallerHangup):
            return self._on_hangup(t)
        if self.state == ENDED:
            return []
        if isinstance(event, ev.EndCall):
            return self._on_end(event.reason, t)
        if isinstance(event, ev.CallStarted):
            if self.state != IDLE:
                return [Log("ignored", {"t": t, "event": "call_started", "state": self.state})]
            return self._greet(t)
        if self.state == IDLE:
            return [Log("ignored", {"t": t, "event": type(event).__name__, "reason": "call not started"})]
        if isinstance(event, ev.PlaybackFinished):
            return self._on_playback_finished(event.play_id, t)
        if isinstance(event, ev.Digit):
            return self._on_digit(event.digit, t)
        if isinstance(event, ev.SpeechPartial):
            return self._on_partial(event.text, t)
        if isinstance(event, ev.SpeechFinal):
            return self._on_final(event.text, event.confidence, t, event.alternatives)
        if isinstance(event, ev.Timeout):
            return self._on_timeout(t)
        if isinstance(event, ev.TransferFailed):
            return self._on_transfer_failed(event.reason, t)
        raise TypeError(f"not a dialogue event: {event!r}")

    def _stop_listening(self) -> str:
        before = self.state
        self.state = ENDED
        self._timer = None
        self._outstanding.clear()
        self._typeahead.clear()
        self._digits = ""
        return before

    def _on_hangup(self, t: float) -> list[Action]:
        before = self._stop_listening()
        return [Log("hangup", {"t": t, "by": "caller", "state": before, **self._counts()})]

    def _on_end(self, reason: str, t: float) -> list[Action]:
        """The IVR ends the call (shutdown, error): stop, (apologise,) say goodbye, hang up."""
        before = self._stop_listening()
        lead = [self._prompt("error", barge_in=False)] if reason == "error" else []
        out: list[Action] = [StopPlayback(reason),
                             Log("end", {"t": t, "reason": reason, "state": before, **self._counts()})]
        out += self._plays([*lead, self._prompt("goodbye", barge_in=False)])
        self._outstanding.clear()
        out.append(HangUp(reason))
        return out

    def _on_playback_finished(self, play_id: int, t: float) -> list[Action]:
        if play_id not in self._outstanding:
            return []
        del self._outstanding[play_id]
        if self.state not in LISTENING:
            return []
        if not self._outstanding and not self._digits:
            self._timer = ("no_input", t + self.settings.timeout)
        out: list[Action] = []
        if self._typeahead and self._can_barge():  # the uninterruptible part is over: act on the keys
            keys, self._typeahead = self._typeahead, []
            for digit, _when in keys:
                if self.state not in LISTENING:
                    break
                out += self._on_digit(digit, t)
        return out

    def _can_barge(self) -> bool:
        return all(self._outstanding.values())

    def _barge(self, t: float, cause: str) -> list[Action]:
        """Stop the plays when the caller interrupts them (call only when ``_can_barge``)."""
        if not self._outstanding:
            return []
        self._outstanding.clear()
        self.counters["barge_ins"] += 1
        return [StopPlayback("barge_in"), Log("barge_in", {"t": t, "by": cause})]

    # -- keys ------------------------------------------------------------------------------------------------

    def _on_digit(self, digit: str, t: float) -> list[Action]:
        digit = str(digit).strip().upper()
        if self.state not in LISTENING:
            return [Log("ignored", {"t": t, "digit": digit, "state": self.state})]
        if self._outstanding and not self._can_barge():
            self._typeahead.append((digit, t))
            return [Log("typeahead", {"t": t, "digit": digit})]
        out = self._barge(t, "digit")
        out.append(Log("digit", {"t": t, "digit": digit}))
        self.counters["timeouts"] = 0
        if digit not in DIGITS:
            self._digits = ""
            return out + self._invalid(t, digit)
        if digit in "*#":
            self._digits = ""
            if digit == "*":
                return out + self._repeat(t)
            return out + self._to_main(t, [], greet=True)
        keys = self._digits + digit
        max_len = min(self.settings.digit_max, self.node.max_key_length()) if self.state == MENU else 1
        if self.state == MENU and len(keys) < max_len and not self.node.completes(keys):
            self._digits = keys
            self._timer = ("inter_digit", t + self.settings.inter_digit_timeout)
            return out
        self._digits = ""
        return out + self._on_keys(keys, t)

    def _on_keys(self, keys: str, t: float) -> list[Action]:
        """A complete key entry in the current state."""
        s = self.settings
        if self.state == MENU:
            child = (self.node.options or {}).get(keys)
            if child is None:
                return self._invalid(t, keys)
            if child.is_menu:
                self.counters["failures"] = 0
                return self._enter_menu(t, child)
            if child.faq_id is not None:
                return self._answer(t, child.faq_id, via="keys")
            if child.action == OPERATOR:
                return self._operator(t, [])
            return self._invalid(t, keys)
        if self.state == AFTER_ANSWER:
            if keys == s.repeat_key:
                return self._replay(t)
            if keys == s.another_key:
                return self._ask(t)
            if keys == s.menu_key:
                return self._to_main(t, [], greet=True)
            if keys == s.goodbye_key:
                return self._goodbye(t, [], "caller")
        if self.state == CONFIRM:
            if keys == s.yes_key:
                return self._confirmed(t, "keys")
            if keys == s.no_key:
                return self._denied(t, "keys")
        if s.operator_enabled and keys == s.operator_key:
            return self._operator(t, [])
        return self._invalid(t, keys)

    def _invalid(self, t: float, keys: str) -> list[Action]:
        self.counters["invalid"] += 1
        out: list[Action] = [Log("invalid", {"t": t, "keys": keys, "state": self.state})]
        return out + self._fail(t, self._prompt("invalid"), kind="invalid")

    # -- speech ----------------------------------------------------------------------------------------------

    def _on_partial(self, text: str, t: float) -> list[Action]:
        if self.state not in LISTENING or not _has_words(text):
            return []
        # the caller is talking: silence has not begun, and the dialogue waits for the end of the turn (the
        # final); the deadline stays a no-input one should no final ever come
        if self._timer and self._timer[0] in ("no_input", "speaking"):
            self._timer = ("speaking", t + self.settings.timeout)
        if self._outstanding and self._can_barge():
            out = self._barge(t, "speech")
            self._timer = ("speaking", t + self.settings.timeout)
            return out
        return []

    def _on_final(self, text: str, confidence: float, t: float, alternatives=()) -> list[Action]:
        text = unicodedata.normalize("NFC", text or "").strip()
        if self.state not in LISTENING:
            return [Log("ignored", {"t": t, "speech": text, "state": self.state})] if text else []
        if not _has_words(text):
            return []
        if self._outstanding and not self._can_barge():
            return [Log("ignored", {"t": t, "speech": text, "reason": "prompt cannot be interrupted"})]
        out = self._barge(t, "speech")
        out.append(Log("speech", {"t": t, "text": text, "confidence": confidence}))
        self._digits = ""
        self.counters["timeouts"] = 0
        if confidence < self.settings.min_confidence:
            out.append(Log("no_match", {"t": t, "text": text, "reason": "low confidence"}))
            self.counters["no_match"] += 1
            return out + self._fail(t, None, kind="no_match")
        command = self._command(text)
        if command:
            out.append(Log("command", {"t": t, "command": command}))
            return out + self._on_command(command, t)
        if self.state == CONFIRM:
            from ivr.language.match import yes_no

            reply = yes_no(text)
            if reply == "yes":
                return out + self._confirmed(t, "voice")
            if reply == "no":
                return out + self._denied(t, "voice")
        return out + self._on_question(text, t, alternatives)

    def _command(self, text: str) -> str | None:
        words = _fold_words(text)
        if not words:
            return None
        allowed = {"operator", "menu", "goodbye", "repeat"}
        if self.state == AFTER_ANSWER:
            allowed.add("another")
        for name, phrases in self._commands.items():
            if name not in allowed:
                continue
            for phrase in phrases:
                if phrase and len(words) <= len(phrase) + _COMMAND_SLACK and _contains(words, phrase):
                    return name
        return None

    def _on_command(self, command: str, t: float) -> list[Action]:
        if command == "operator":
            if self.settings.operator_enabled:
                return self._operator(t, [])
            return self._to_main(t, [self._prompt("operator_unavailable")])
        if command == "menu":
            return self._to_main(t, [], greet=True)
        if command == "goodbye":
            return self._goodbye(t, [], "caller")
        if command == "another":
            return self._ask(t)
        if self.state == AFTER_ANSWER:  # "nghe lại" after an answer replays the answer
            return self._replay(t)
        return self._repeat(t)

    def _on_question(self, text: str, t: float, alternatives=()) -> list[Action]:
        topic = self._spoken_topic(text)
        if topic is not None:  # the caller named a topic ("mật khẩu", "sinh trắc học"): its keypad menu
            return [Log("topic_named", {"t": t, "text": text, "topic": topic.topic_id})] + self._enter_menu(t, topic)
        if len(alternatives) > 1 and hasattr(self.matcher, "match_nbest"):
            result = self.matcher.match_nbest(list(alternatives))
        else:
            result = self.matcher.match(text)
        out: list[Action] = [
            Log("match", {
                "t": t, "text": text, "decision": result.decision, "faq_id": result.faq_id,
                "score": result.score,
                "candidates": [(c.faq_id, c.score) for c in result.candidates[:3]],
            })
        ]
        if result.decision == "answer" and result.faq_id is not None:
            return out + self._answer(t, result.faq_id, via="voice", score=result.score)
        if result.decision == "confirm" and result.faq_id is not None:
            rest = []
            if self.settings.second_candidate:
                rest = [c.faq_id for c in result.candidates[1:2]
                        if c.score >= self.settings.confirm_min_score and c.faq_id != result.faq_id]
            self._likely_topic = self.faq.by_id(result.faq_id).topic if self.settings.second_candidate else None
            return out + self._confirm(t, result.faq_id, rest)
        self.counters["no_match"] += 1
        out.append(Log("no_match", {"t": t, "text": text, "score": result.score}))
        return out + self._fail(t, None, kind="no_match")

    # -- confirmation ----------------------------------------------------------------------------------------

    def _confirm(self, t: float, faq_id: int, rest: list[int], other: bool = False) -> list[Action]:
        self.counters["confirms"] += 1
        self.state = CONFIRM
        self.confirm_id = faq_id
        self._confirm_rest = rest
        summary = self.prompts.summary(self.faq.by_id(faq_id))
        pid = "confirm_other" if other else "confirm"
        specs = [
            _Spec(pid, self.prompts.text(pid, summary=summary), faq_id=None, barge_in=self._bi()),
            self._prompt("confirm_hint", yes=self.settings.yes_key, no=self.settings.no_key),
        ]
        out: list[Action] = [Log("confirm", {"t": t, "faq_id": faq_id})]
        return out + self._turn(t, specs, reprompt=specs)

    def _confirmed(self, t: float, via: str) -> list[Action]:
        faq_id = self.confirm_id
        self.confirm_id = None
        self._confirm_rest = []
        return self._answer(t, faq_id, via=f"confirm_{via}")

    def _denied(self, t: float, via: str) -> list[Action]:
        out: list[Action] = [Log("denied", {"t": t, "faq_id": self.confirm_id, "via": via})]
        if self._confirm_rest:  # "Hay quý khách muốn hỏi về ...?"
            nxt = self._confirm_rest.pop(0)
            return out + self._confirm(t, nxt, self._confirm_rest, other=True)
        self.confirm_id = None
        topic, self._likely_topic = self._likely_topic, None
        node = self._topic_node(topic) if topic else None
        if node is not None:  # the keypad menu of the likeliest topic, before the no-match ladder
            out.append(Log("disambiguate", {"t": t, "topic": topic}))
            return out + self._enter_menu(t, node)
        self.state = MENU
        self._reprompt = [self._node_spec(self.node)]
        return out + self._fail(t, None, kind="no_match")

    # -- ladders ---------------------------------------------------------------------------------------------

    def _fail(self, t: float, lead: _Spec | None, kind: str) -> list[Action]:
        """One more failure in a row: no match (``lead`` None: the no_match ladder) or an invalid key."""
        s = self.settings
        self.counters["failures"] += 1
        n = self.counters["failures"]
        if lead is None:
            step = min(n, self.prompts.ladder_length("no_match"))
            lead = _Spec(f"no_match_{step}", self.prompts.ladder("no_match", n), barge_in=self._bi())
        if n >= s.max_failures:
            self.counters["failures"] = 0
            if s.on_max_failures == "operator" and s.operator_enabled:
                return self._operator(t, [lead], reason="max_failures")
            return self._goodbye(t, [lead], "max_failures")
        if kind == "invalid":
            if self.state == CONFIRM or self.state == AFTER_ANSWER:
                return self._turn(t, [lead, *self._reprompt], reprompt=self._reprompt)
            return self._turn(t, [lead, self._node_spec(self.node)], reprompt=[self._node_spec(self.node)])
        if n == 1:  # ask to rephrase; keep the state (the caller may still use the keys of this prompt)
            if self.state == CONFIRM:
                self.state = MENU
            return self._turn(t, [lead], reprompt=self._reprompt or [self._node_spec(self.node)])
        return self._to_main(t, [lead])  # offer the keypad menu

    def _on_timeout(self, t: float) -> list[Action]:
        if self._timer is None or t + 1e-6 < self._timer[1]:
            return [Log("ignored", {"t": t, "event": "timeout", "deadline": self.deadline})]
        kind = self._timer[0]
        self._timer = None
        if kind == "inter_digit":
            keys, self._digits = self._digits, ""
            if not keys:
                return []
            return [Log("digits", {"t": t, "keys": keys})] + self._on_keys(keys, t)
        s = self.settings
        self.counters["timeouts"] += 1
        self.counters["no_input"] += 1
        n = self.counters["timeouts"]
        step = min(n, self.prompts.ladder_length("no_input"))
        lead = _Spec(f"no_input_{step}", self.prompts.ladder("no_input", n), barge_in=self._bi())
        out: list[Action] = [Log("no_input", {"t": t, "count": n, "state": self.state})]
        if n >= s.max_timeouts:
            self.counters["timeouts"] = 0
            if s.on_max_timeouts == "operator" and s.operator_enabled:
                return out + self._operator(t, [lead], reason="max_timeouts")
            return out + self._goodbye(t, [lead], "no_input")
        if n == 1:
            return out + self._turn(t, [lead, *self._reprompt], reprompt=self._reprompt)
        return out + self._to_main(t, [lead])

    # -- turns -----------------------------------------------------------------------------------------------

    def _bi(self) -> bool:
        return self.settings.barge_in

    def _prompt(self, prompt_id: str, barge_in: bool | None = None, **fields: Any) -> _Spec:
        return _Spec(prompt_id, self.prompts.text(prompt_id, **fields),
                     barge_in=self._bi() if barge_in is None else barge_in)

    def _node_spec(self, node: MenuNode) -> _Spec:
        pid = "main_menu" if node.is_root else f"topic_menu:{node.topic_id}"
        return _Spec(pid, node.prompt or "", barge_in=self._bi())

    def _plays(self, specs: list[_Spec]) -> list[Action]:
        out: list[Action] = []
        for spec in specs:
            play = Play(self._next_play, spec.prompt_id, spec.faq_id, spec.text, spec.barge_in)
            self._next_play += 1
            self._outstanding[play.play_id] = play.barge_in
            out.append(play)
        return out

    def _turn(self, t: float, specs: list[_Spec], reprompt: list[_Spec]) -> list[Action]:
        """Say ``specs`` and listen; the no-input timer starts when they have been played."""
        self._reprompt = list(reprompt)
        self._timer = None
        out = self._plays(specs)
        if not self._outstanding:
            self._timer = ("no_input", t + self.settings.timeout)
        max_digits = min(self.settings.digit_max, self.node.max_key_length()) if self.state == MENU else 1
        expect = {CONFIRM: "yes_no", AFTER_ANSWER: "menu"}.get(self.state, "question")
        out.append(Listen(not self.keys_only, True, self.settings.timeout, self.settings.inter_digit_timeout, max_digits, expect))
        return out

    def _greet(self, t: float) -> list[Action]:
        self.state = MENU
        self.node = self.menu
        main = self._node_spec(self.menu)
        out: list[Action] = [Log("call_started", {"t": t})]
        greet = self._prompt("greet_keys" if self.keys_only else "greet_long")
        return out + self._turn(t, [greet, main], reprompt=[main])

    def _to_main(self, t: float, lead: list[_Spec], greet: bool = False) -> list[Action]:
        self.state = MENU
        self.node = self.menu
        self.confirm_id = None
        self._digits = ""
        main = self._node_spec(self.menu)
        specs = [*lead, *([self._prompt("greet_short")] if greet else []), main]
        return self._turn(t, specs, reprompt=[main])

    def _topic_node(self, topic_id: str) -> MenuNode | None:
        return next((n for n in (self.menu.options or {}).values() if n.topic_id == topic_id and n.is_menu), None)

    def _spoken_topic(self, text: str) -> MenuNode | None:
        """The topic menu whose name the caller said, alone ("mật khẩu", "về sinh trắc học ạ") or after a
        request ("tôi muốn hỏi về mật khẩu", "cho tôi hỏi về sinh trắc học", "em cần hỗ trợ về mã PIN")."""
        from ivr.language.normalize import normalize

        words = normalize(text).split()
        while words and (words[0] in _TOPIC_LEADS or words[0] in _REQUEST_WORDS):
            words = words[1:]
        while words and words[-1] in _TOPIC_TAILS:
            words = words[:-1]
        topic_id = self._topic_names.get(" ".join(words))
        return self._topic_node(topic_id) if topic_id else None

    def _enter_menu(self, t: float, node: MenuNode) -> list[Action]:
        self.state = MENU
        self.node = node
        spec = self._node_spec(node)
        return [Log("menu", {"t": t, "topic": node.topic_id})] + self._turn(t, [spec], reprompt=[spec])

    def _ask(self, t: float) -> list[Action]:
        self.state = MENU
        self.node = self.menu
        ask = self._prompt("ask")
        return self._turn(t, [ask], reprompt=[ask])

    def _repeat(self, t: float) -> list[Action]:
        return [Log("repeat", {"t": t, "state": self.state})] + self._turn(t, self._reprompt, self._reprompt)

    def _answer_specs(self, faq_id: int, intro: bool) -> tuple[list[_Spec], _Spec]:
        entry = self.faq.by_id(faq_id)
        s = self.settings
        after = self._prompt("after_answer", repeat=s.repeat_key, another=s.another_key, menu=s.menu_key,
                             goodbye=s.goodbye_key)
        specs = []
        if intro:
            specs.append(self._prompt("answer_intro", summary=self.prompts.summary(entry)))
        specs.append(_Spec(None, answer_text(entry), faq_id=faq_id, barge_in=s.answer_barge_in))
        return specs + [after], after

    def _answer(self, t: float, faq_id: int, via: str, score: float | None = None) -> list[Action]:
        specs, after = self._answer_specs(faq_id, intro=True)
        self.state = AFTER_ANSWER
        self.last_faq_id = faq_id
        self.confirm_id = None
        self.counters["answers"] += 1
        self.counters["failures"] = 0
        data: dict[str, Any] = {"t": t, "faq_id": faq_id, "via": via}
        if score is not None:
            data["score"] = score
        return [Log("answer", data)] + self._turn(t, specs, reprompt=[after])

    def _replay(self, t: float) -> list[Action]:
        specs, after = self._answer_specs(self.last_faq_id, intro=False)
        out: list[Action] = [Log("replay", {"t": t, "faq_id": self.last_faq_id})]
        return out + self._turn(t, specs, reprompt=[after])

    def _operator(self, t: float, lead: list[_Spec], reason: str = "caller") -> list[Action]:
        if not self.settings.operator_enabled:
            return self._to_main(t, [*lead, self._prompt("operator_unavailable")])
        self.state = TRANSFERRING
        self._timer = None
        self._digits = ""
        self._typeahead.clear()
        self.counters["transfers"] += 1
        self.counters["failures"] = 0
        self.counters["timeouts"] = 0
        out: list[Action] = [Log("operator", {"t": t, "target": self.settings.operator_target, "reason": reason})]
        out += self._plays([*lead, self._prompt("operator", barge_in=False)])
        out.append(Transfer(self.settings.operator_target))
        return out

    def _on_transfer_failed(self, reason: str, t: float) -> list[Action]:
        if self.state != TRANSFERRING:
            return [Log("ignored", {"t": t, "event": "transfer_failed", "state": self.state})]
        self._outstanding.clear()  # whatever was queued before the transfer is over
        out: list[Action] = [Log("transfer_failed", {"t": t, "reason": reason})]
        return out + self._to_main(t, [self._prompt("transfer_failed")], greet=True)

    def _goodbye(self, t: float, lead: list[_Spec], reason: str) -> list[Action]:
        self.state = ENDED
        self._timer = None
        self._digits = ""
        self._typeahead.clear()
        out: list[Action] = self._plays([*lead, self._prompt("goodbye", barge_in=False)])
        self._outstanding.clear()
        out.append(HangUp(reason))
        out.append(Log("goodbye", {"t": t, "reason": reason, **self._counts()}))
        return out

    def _counts(self) -> dict[str, int]:
        return {k: v for k, v in self.counters.items() if k not in ("failures", "timeouts")}

    # -- for TTS warm-up and documentation -------------------------------------------------------------------

    def prompt_texts(self) -> dict[str, str]:
        """Every fixed sentence this dialogue can say, by prompt id (answers excluded: see ``answer_text``)."""
        s = self.settings
        p = self.prompts
        texts = {pid: p.text(pid) for pid in ("greet_long", "greet_short", "ask", "invalid", "operator",
                                               "transfer_failed", "operator_unavailable", "goodbye", "error")}
        texts["after_answer"] = p.text("after_answer", repeat=s.repeat_key, another=s.another_key,
                                       menu=s.menu_key, goodbye=s.goodbye_key)
        texts["confirm_hint"] = p.text("confirm_hint", yes=s.yes_key, no=s.no_key)
        for step in range(1, p.ladder_length("no_input") + 1):
            texts[f"no_input_{step}"] = p.ladder("no_input", step)
        for step in range(1, p.ladder_length("no_match") + 1):
            texts[f"no_match_{step}"] = p.ladder("no_match", step)
        for node in self.menu.walk():
            if node.is_menu:
                texts[self._node_spec(node).prompt_id] = node.prompt
        for entry in self.faq.entries:
            summary = p.summary(entry)
            texts[f"confirm:{entry.id}"] = p.text("confirm", summary=summary)
            texts[f"confirm_other:{entry.id}"] = p.text("confirm_other", summary=summary)
            texts[f"answer_intro:{entry.id}"] = p.text("answer_intro", summary=summary)
        return texts


def _has_words(text: str | None) -> bool:
    return bool(text) and any(ch.isalnum() for ch in text)


def _contains(words: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return any(words[i:i + n] == phrase for i in range(len(words) - n + 1))
