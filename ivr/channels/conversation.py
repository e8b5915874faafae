"""Conversation test cases: scripted calls run through the real call flow in virtual time (``ivr test``).

A test file is a YAML list of cases::

    - name: password by keys
      turns:
        - expect: {prompt: [greet_long, main_menu]}      # the call's start (no caller turn)
        - caller: {keys: "2"}
          expect: {prompt: "topic_menu:password"}
        - caller: {keys: "1"}
          expect: {answer: 6}
        - caller: {say: "tôi quên mật khẩu đăng nhập", confidence: 0.9}
          expect: {answer: 9}                          # or confirm: 9, no_match: true
        - caller: {silence: true}                      # until the no-input timeout (or {silence: 3.5} s)
          expect: {prompt: no_input_1}
        - caller: {audio: calls/operator.wav}          # a WAV, relative to the test file
          expect: {transfer: true}

Caller turns: ``say`` (words; ``confidence``, default 0.9), ``keys`` (keypad keys, quoted), ``silence`` (true: until the IVR's no-input
timeout; a number: that many seconds), ``audio`` (a WAV file of the caller). Expectations, all checked on the
call-log events of the turn: ``answer`` / ``confirm`` (a FAQ id), ``prompt`` (a prompt id or a list of them,
as the call log's ``play`` events name them), ``transfer``, ``hangup``, ``no_match`` (true or false).

How a turn runs: the caller acts once the IVR has said everything it had to say and listens (the first
turn: after the greeting and the menu); the input goes in, then the call runs on (silence from the caller)
until the IVR listens again, hangs up or transfers the call (a transfer ends the call, as in ``ivr call``).
``barge_in: true`` in a caller turn makes the caller act over the IVR instead: as soon as the IVR starts
speaking its response to the turn before (the first turn: over the greeting); the turn before is then
checked on the events up to that moment. A turn's expectations are checked on what the call did from its
caller's input on (a first turn without a caller: the call's start, greeting and menu). The call is a
``CallSession`` driven frame by frame exactly as ``ivr call`` drives it (``ivr.cli.call.simulate_call``): 20 ms frames of caller
audio in, IVR audio read out, virtual time. Keys are real keypad tones (``ivr.media.dtmf.generate``) heard
by the session's DTMF receiver.

Speech: a ``say`` turn is taken as recognised speech: the typed events a recogniser would give go into the
call (``SpeechPartial`` when the caller starts: a barge-in over a prompt; ``SpeechFinal(text, confidence)``
when the words are done, ``SAY_SECONDS_PER_WORD`` later), and the caller's line is quiet meanwhile. No
recogniser is faked: a case is about the call flow, and no Vietnamese Vosk model can exist on this machine.
``audio`` turns are the caller's own sound, frame by frame through the session (keypad tones to its DTMF
receiver, speech to its real recogniser); a case with an ``audio`` turn needs a speech model and is skipped,
with the reason, when none is installed (``--model`` chooses one).

A malformed file is an ``IvrError`` naming the file, the case and the field (``ivr test`` exits 2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivr.errors import IvrError

RATE = 8000
FRAME = RATE // 50
CALLER_KINDS = ("say", "keys", "silence", "audio")
EXPECT_KINDS = ("answer", "confirm", "prompt", "transfer", "hangup", "no_match")
MAX_TURN_S = 180.0  # virtual seconds a turn may take before the case fails (an IVR that never listens)
MAX_SILENCE_S = 120.0
SAY_SECONDS_PER_WORD = 0.3
END_OF_TURN_MARGIN_S = 0.5  # quiet after a recording beyond the caller-audio piece's end-of-turn time
KEY_CHARS = set("0123456789*#ABCD")


@dataclass
class Turn:
    caller: dict[str, Any] | None
    expect: dict[str, Any]
    audio: np.ndarray | None = None  # a caller `audio` turn, read at load time


@dataclass
class Case:
    name: str
    file: Path
    turns: list[Turn]

    @property
    def needs_speech(self) -> bool:
        """An ``audio`` turn: the caller's sound goes through the recogniser, so the case needs a model."""
        return any(t.audio is not None for t in self.turns)


@dataclass
class Result:
    case: Case
    passed: bool
    failures: list[str] = field(default_factory=list)
    call_seconds: float = 0.0
    wall_seconds: float = 0.0
    events: list[dict] = field(default_factory=list)
    skipped: str = ""  # why the case did not run (no speech model for its audio turns)

    @property
    def failed(self) -> bool:
        return not self.passed and not self.skipped


# --- loading ------------------------------------------------------------------------------------------------


def case_files(paths: list[str | Path]) -> list[Path]:
    """The ``*.yaml``/``*.yml`` files named, or found (recursively) in the directories named."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
            if not found:
                raise IvrError(f"{p}: no test files (*.yaml) in this directory", "give a test file or a directory of them")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise IvrError(f"{p}: no such test file or directory", "check the path")
    return out


def load_cases(path: Path, faq_ids: set[int] | None = None, prompt_ids: set[str] | None = None) -> list[Case]:
    """Read and validate one test file. ``faq_ids``/``prompt_ids``: the ids an expectation may name."""
    from ivr.content.config import read_yaml

    path = Path(path)
    data = read_yaml(path, "check the path")
    if not isinstance(data, list) or not data:
        raise IvrError(f"{path}: expected a list of test cases (- name: ..., turns: [...])",
                       "see `ivr test --help` for the format")
    cases = []
    names: set[str] = set()
    for i, raw in enumerate(data, 1):
        where = f"{path}: case #{i}"
        if not isinstance(raw, dict):
            raise IvrError(f"{where}: expected a mapping with name and turns", "write - name: ...\\n  turns: [...]")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise IvrError(f"{where}: field name is missing or not a text", "give every case a name")
        where = f"{path}: case {name!r}"
        if name in names:
            raise IvrError(f"{where}: the name is used twice in the file", "give each case its own name")
        names.add(name)
        extra = sorted(str(k) for k in raw if k not in ("name", "turns", "description"))
        if extra:
            raise IvrError(f"{where}: unknown field(s) {', '.join(extra)}", "a case has name, turns, description")
        turns = raw.get("turns")
        if not isinstance(turns, list) or not turns:
            raise IvrError(f"{where}: field turns is missing or not a list", "list the turns: - caller: ...  expect: ...")
        cases.append(Case(name, path, [_turn(path, where, j, t, faq_ids, prompt_ids)
                                       for j, t in enumerate(turns, 1)]))
    return cases


def _turn(path: Path, where: str, j: int, raw: Any, faq_ids, prompt_ids) -> Turn:
    where = f"{where}: turn {j}"
    if not isinstance(raw, dict):
        raise IvrError(f"{where}: expected a mapping with caller and/or expect", "write - caller: {keys: \"1\"}")
    extra = sorted(str(k) for k in raw if k not in ("caller", "expect"))
    if extra:
        raise IvrError(f"{where}: unknown field(s) {', '.join(extra)}", "a turn has caller and expect")
    caller = raw.get("caller")
    expect = raw.get("expect") or {}
    if caller is None and j > 1:
        raise IvrError(f"{where}: field caller is missing", "only the first turn (the call's start) may have no caller")
    audio = None
    if caller is not None:
        if not isinstance(caller, dict):
            raise IvrError(f"{where}: caller: expected a mapping", "write caller: {say: ...} or {keys: \"1\"}")
        kinds = [k for k in CALLER_KINDS if k in caller]
        extra = sorted(str(k) for k in caller if k not in CALLER_KINDS and k not in ("confidence", "barge_in"))
        if extra or len(kinds) != 1:
            raise IvrError(f"{where}: caller: expected exactly one of {', '.join(CALLER_KINDS)}"
                           + (f" (unknown: {', '.join(extra)})" if extra else ""),
                           "write one caller action per turn")
        kind = kinds[0]
        value = caller[kind]
        if kind == "say" and (not isinstance(value, str) or not value.strip()):
            raise IvrError(f"{where}: caller.say: expected the words as a text", "write say: \"câu hỏi\"")
        if kind == "keys":
            if not isinstance(value, str) or not value or any(c not in KEY_CHARS for c in value.upper()):
                raise IvrError(f"{where}: caller.keys: {value!r} is not a quoted string of keys 0-9 * # A-D",
                               "quote the keys (keys: \"01\"): YAML reads 01 as the number 1")
        if kind == "silence" and not (value is True or (isinstance(value, int | float) and not isinstance(value, bool)
                                                         and 0 < value <= MAX_SILENCE_S)):
            raise IvrError(f"{where}: caller.silence: {value!r} is not true or seconds (0-{MAX_SILENCE_S:.0f})",
                           "write silence: true (until the IVR's timeout) or silence: 3.5")
        if kind == "audio":
            from ivr.media.audio import read_audio

            if not isinstance(value, str):
                raise IvrError(f"{where}: caller.audio: expected a WAV file path", "write audio: calls/question.wav")
            wav = (path.parent / value) if not Path(value).is_absolute() else Path(value)
            try:
                audio, _ = read_audio(wav, RATE)
            except IvrError as exc:
                raise IvrError(f"{where}: caller.audio: {exc.problem}", exc.fix) from None
        if not isinstance(caller.get("barge_in", False), bool):
            raise IvrError(f"{where}: caller.barge_in: {caller['barge_in']!r} is not true or false",
                           "write barge_in: true")
        if "confidence" in caller:
            c = caller["confidence"]
            if kind != "say" or isinstance(c, bool) or not isinstance(c, int | float) or not 0 <= c <= 1:
                raise IvrError(f"{where}: caller.confidence: {c!r} (a number 0-1, with say only)",
                               "write confidence: 0.9 beside say")
    if not isinstance(expect, dict):
        raise IvrError(f"{where}: expect: expected a mapping", "write expect: {answer: 6}")
    extra = sorted(str(k) for k in expect if k not in EXPECT_KINDS)
    if extra:
        raise IvrError(f"{where}: expect: unknown field(s) {', '.join(extra)}",
                       "the expectations are: " + ", ".join(EXPECT_KINDS))
    for k in ("answer", "confirm"):
        if k in expect:
            v = expect[k]
            if isinstance(v, bool) or not isinstance(v, int):
                raise IvrError(f"{where}: expect.{k}: {v!r} is not a FAQ id (a number)", f"write {k}: 6")
            if faq_ids is not None and v not in faq_ids:
                raise IvrError(f"{where}: expect.{k}: there is no FAQ entry {v}", "use an id from faq/*.yaml")
    if "prompt" in expect:
        v = expect["prompt"]
        items = v if isinstance(v, list) else [v]
        if not items or not all(isinstance(x, str) and x for x in items):
            raise IvrError(f"{where}: expect.prompt: expected a prompt id or a list of them", "write prompt: no_input_1")
        unknown = [x for x in items if prompt_ids is not None and x not in prompt_ids]
        if unknown:
            raise IvrError(f"{where}: expect.prompt: unknown prompt id {unknown[0]!r}",
                           "use the ids `ivr prompts script` lists "
                           "(confirm, confirm_other and answer_intro without :id)")
    for k in ("transfer", "hangup", "no_match"):
        if k in expect and not isinstance(expect[k], bool):
            raise IvrError(f"{where}: expect.{k}: {expect[k]!r} is not true or false", f"write {k}: true")
    if caller is None and not expect:
        raise IvrError(f"{where}: neither caller nor expect", "give the turn a caller action or an expectation")
    return Turn(caller, dict(expect), audio)


def known_ids(resources) -> tuple[set[int], set[str]]:
    """FAQ ids and the prompt ids a ``play`` event can carry, for validating expectations."""
    from ivr.channels.voice import catalogue

    texts, _ = catalogue(resources)
    per_entry = ("confirm", "confirm_other", "answer_intro")  # played as "confirm", catalogued as "confirm:7"
    prompts = {i for i in texts if not i.startswith("faq_") and i.split(":")[0] not in per_entry}
    prompts |= set(per_entry)
    return {e.id for e in resources.faq.entries}, prompts


# --- running ------------------------------------------------------------------------------------------------


class ScriptedCall:
    """One call in virtual time, driven as ``ivr call`` drives it; turns are fed in between."""

    def __init__(self, resources, call_id: str, log_dir=None):
        from ivr.channels.session import CallSession

        self.s = CallSession(resources, call_id=call_id, sample_rate=RATE, log_dir=log_dir, channel="test")
        self.k = 0
        self.transferred = False
        self.s.start(0.0)
        self.s.ivr_audio(FRAME, 0.0)

    @property
    def t(self) -> float:
        return self.k * FRAME / RATE

    @property
    def over(self) -> bool:
        return self.s.ended or self.transferred

    def step(self, frame: np.ndarray) -> None:
        if self.over:
            return
        if len(frame) < FRAME:
            frame = np.concatenate([frame, np.zeros(FRAME - len(frame), np.int16)])
        self.s.feed_audio(frame, self.t)
        self.k += 1
        if self.s.transfer_to is not None:
            self.transferred = True  # the call is with the operator now (as in `ivr call`)
            return
        self.s.ivr_audio(FRAME, self.t)

    def feed(self, audio: np.ndarray) -> None:
        for i in range(0, len(audio), FRAME):
            if self.over:
                return
            self.step(audio[i:i + FRAME])

    def listening(self) -> bool:
        return not self.s.playing and self.s.dialogue.waiting_for == "no_input"

    def settle(self, limit_s: float = MAX_TURN_S) -> bool:
        """Caller silence until the IVR listens again (or the call is over). False if it never does."""
        silence = np.zeros(FRAME, np.int16)
        end = self.t + limit_s
        while not self.over and not self.listening():
            if self.t >= end:
                return False
            self.step(silence)
        return True

    def until_speaking(self, since: int, limit_s: float = MAX_TURN_S) -> bool:
        """Caller silence until the IVR starts a play logged after event ``since`` (or listens, or the call
        is over): the next turn barges in over that play."""
        silence = np.zeros(FRAME, np.int16)
        end = self.t + limit_s
        while not self.over and not any(e["type"] == "play" for e in self.s.events[since:]):
            if self.listening() or self.t >= end:
                return not self.t >= end
            self.step(silence)
        return True

    def say(self, text: str, confidence: float) -> None:
        """The caller says ``text``, taken as recognised speech: the events a recogniser gives go into the
        call (``SpeechPartial`` as the caller starts: it barges in; ``SpeechFinal`` with ``confidence`` when
        the words are done), while the call runs on for as long as the words take to say."""
        from ivr.core.events import SpeechFinal, SpeechPartial

        frames = int(max(0.6, len(text.split()) * SAY_SECONDS_PER_WORD) * 50)
        self.speech(SpeechPartial(text, t=self.t))
        silence = np.zeros(FRAME, np.int16)
        for _ in range(frames):
            if self.over:
                return
            self.step(silence)
        self.speech(SpeechFinal(text, confidence, t=self.t, end="scripted"))

    def speech(self, event) -> None:
        """A recogniser's result, sent into the call between two frames (as the session sends its own)."""
        if self.over:
            return
        self.s.call.send(event)
        self.s.tick(self.t)
        if self.s.transfer_to is not None:
            self.transferred = True

    def recording(self, audio: np.ndarray) -> None:
        """The caller's recorded sound, then quiet long enough for the end of their turn: the caller-audio
        piece ends the turn after its gate's ``end_ms`` of quiet (the IVR may be listening all
        the while, so waiting for it alone would stop before the words are final)."""
        self.feed(audio)
        self.silence(self.s.caller.gate.end_ms / 1000.0 + END_OF_TURN_MARGIN_S)

    def keys(self, keys: str) -> None:
        from ivr.media.dtmf import generate

        self.feed(generate(keys, RATE, tone_ms=80, gap_ms=80))

    def silence(self, value) -> None:
        silence = np.zeros(FRAME, np.int16)
        if value is True:
            start = len(self.s.events)
            end = self.t + MAX_SILENCE_S
            while not self.over and self.t < end and not any(e["type"] == "no_input" for e in self.s.events[start:]):
                self.step(silence)
        else:
            for _ in range(int(round(float(value) * 50))):
                if self.over:
                    break
                self.step(silence)

    def close(self) -> None:
        if not self.s.ended:
            self.s.hangup(self.t)


def _describe(events: list[dict]) -> str:
    plays = [e.get("prompt_id") or f"FAQ {e.get('faq_id')}" for e in events if e["type"] == "play"]
    bits = [f"IVR played {plays}" if plays else "IVR played nothing"]
    for kind in ("answer", "confirm"):
        ids = [e.get("faq_id") for e in events if e["type"] == kind]
        if ids:
            bits.append(f"{kind} {ids}")
    for kind in ("no_match", "no_input", "invalid", "transfer", "hangup", "error"):
        if any(e["type"] == kind for e in events):
            bits.append(kind)
    for m in (e for e in events if e["type"] == "match"):  # why a question got what it got
        bits.append(f"the matcher said {m.get('decision')} {m.get('faq_id')} (score {m.get('score')}, "
                    f"candidates {m.get('candidates')})")
    return "; ".join(bits)


def _caller(caller: dict[str, Any] | None) -> str:
    """A caller turn as the case file writes it: ``keys "9"``, ``say "..."``, ``silence 8``."""
    if not caller:
        return "the call's start"
    kind = next(k for k in CALLER_KINDS if k in caller)
    value = caller[kind]
    return f'{kind} "{value}"' if isinstance(value, str) else f"{kind} {value}"


def check(expect: dict[str, Any], events: list[dict]) -> list[str]:
    """What in ``expect`` the turn's ``events`` do not show (empty: the turn passed)."""
    problems = []
    for kind in ("answer", "confirm"):
        if kind in expect and not any(e["type"] == kind and e.get("faq_id") == expect[kind] for e in events):
            problems.append(f"expected {kind} {expect[kind]}")
    if "prompt" in expect:
        want = expect["prompt"] if isinstance(expect["prompt"], list) else [expect["prompt"]]
        played = [e.get("prompt_id") for e in events if e["type"] == "play"]
        missing = [p for p in want if p not in played]
        if missing:
            problems.append(f"expected prompt {', '.join(missing)}")
    flags = {"transfer": lambda e: e["type"] == "transfer",
             "hangup": lambda e: e["type"] == "hangup" and e.get("by") == "ivr",
             "no_match": lambda e: e["type"] == "no_match"}
    for kind, test in flags.items():
        if kind in expect and any(test(e) for e in events) != expect[kind]:
            problems.append(f"expected {'a' if expect[kind] else 'no'} {kind}")
    return problems


def run_case(case: Case, resources, log_dir=None) -> Result:
    """Run one case; a failing turn ends it (the later turns would not be meaningful). A case with an
    ``audio`` turn is skipped, with the reason, when ``resources`` has no speech model."""
    import uuid

    if case.needs_speech and resources.model is None:
        why = resources.speech_note or "no speech model is loaded"
        return Result(case, False, skipped=f"its audio turns go through the recogniser, and {why}")
    wall = time.perf_counter()
    call = ScriptedCall(resources, f"test-{uuid.uuid4().hex[:8]}", log_dir)
    failures: list[str] = []
    start = 0
    try:
        for j, turn in enumerate(case.turns, 1):
            barge_next = j < len(case.turns) and bool((case.turns[j].caller or {}).get("barge_in"))
            if j == 1 and turn.caller is not None and not turn.caller.get("barge_in"):
                call.settle()  # the caller waits for the greeting and the menu ...
                start = len(call.s.events)  # ... and the turn is checked on what follows the caller's input
            if turn.caller is not None:
                if call.over:
                    failures.append(f"turn {j}: the call is already over ({_describe(call.s.events[-8:])})")
                    break
                c = turn.caller
                if "say" in c:
                    call.say(str(c["say"]), float(c.get("confidence", 0.9)))
                elif "keys" in c:
                    call.keys(str(c["keys"]))
                elif "silence" in c:
                    call.silence(c["silence"])
                else:
                    call.recording(turn.audio)
            if barge_next:
                ok = call.until_speaking(start if j > 1 else 0)
            else:
                ok = call.settle()
            if not ok:
                failures.append(f"turn {j}: the IVR did not come back to listening within {MAX_TURN_S:.0f} s")
                break
            events = call.s.events[start:]
            start = len(call.s.events)
            problems = check(turn.expect, events)
            if problems:
                failures.append(f"turn {j}: {'; '.join(problems)} — after {_caller(turn.caller)}, "
                                f"{_describe(events)}")
                break
    except Exception as exc:  # a crash in the call flow is a failure of the case, not of the runner
        failures.append(f"the call flow raised {type(exc).__name__}: {exc}")
    finally:
        call.close()
    return Result(case, not failures, failures, round(call.t, 2), round(time.perf_counter() - wall, 3),
                  list(call.s.events))


def junit_xml(results: list[Result]) -> str:
    """JUnit XML: one testsuite per file, one testcase per case (a ``failure`` or ``skipped`` in it)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="ivr test", tests=str(len(results)),
                      failures=str(sum(r.failed for r in results)), errors="0",
                      skipped=str(sum(bool(r.skipped) for r in results)),
                      time=f"{sum(r.wall_seconds for r in results):.3f}")
    by_file: dict[Path, list[Result]] = {}
    for r in results:
        by_file.setdefault(r.case.file, []).append(r)
    for path, rs in by_file.items():
        suite = ET.SubElement(root, "testsuite", name=str(path), tests=str(len(rs)),
                              failures=str(sum(r.failed for r in rs)), errors="0",
                              skipped=str(sum(bool(r.skipped) for r in rs)),
                              time=f"{sum(r.wall_seconds for r in rs):.3f}")
        for r in rs:
            tc = ET.SubElement(suite, "testcase", classname=path.stem, name=r.case.name, time=f"{r.wall_seconds:.3f}")
            if r.skipped:
                ET.SubElement(tc, "skipped", message=r.skipped[:300])
                continue
            if r.failed:
                f = ET.SubElement(tc, "failure", message=r.failures[0][:300], type="ConversationMismatch")
                f.text = "\n".join(r.failures)
            out = ET.SubElement(tc, "system-out")
            out.text = f"{r.call_seconds:.2f} s of call in virtual time"
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
