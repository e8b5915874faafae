"""The pure Call over the real FAQ, matcher, prompts and dialogue, in virtual time: no sound card, socket,
thread or clock. The voice is a FAKE (silence of a fixed length: these tests are about the flow)."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from ivr.channels.resources import Resources
from ivr.core.call import Call
from ivr.core.dialogue import Dialogue
from ivr.core.events import CallerHangup, Digit, EndCall, SpeechFinal

RATE = 100  # samples per second of the fake voice
FRAME = 2  # 20 ms


class FixedLengthVoice:
    """FAKE voice: every play is one second of silence."""

    def audio(self, text: str) -> np.ndarray:
        return np.zeros(RATE, dtype=np.int16)


@pytest.fixture(scope="module")
def res():
    return Resources.load(speech=False)


def new_call(res, dialogue=None, **kw) -> Call:
    d = dialogue if dialogue is not None else res.dialogue()
    return Call(d, FixedLengthVoice(), sample_rate=RATE, call_id="t", channel="test", **kw)


def run(call: Call, seconds: float, t: float) -> float:
    """Read the IVR's audio frame by frame for ``seconds`` from ``t``; returns the time reached."""
    for _ in range(int(round(seconds * 50))):
        if call.ended:
            break
        call.audio(FRAME, t)
        t += FRAME / RATE
    return round(t, 6)


def of(call: Call, kind: str) -> list[dict]:
    return [e for e in call.events if e["type"] == kind]


def test_a_whole_call_keys_to_an_answer_then_goodbye(res):
    call = new_call(res)
    call.start(0.0)
    t = run(call, 1.0, 0.0)  # the greeting (cut by the key below)
    topic = next(k for k, n in res.menu.options.items() if n.is_menu)
    question = next(k for k, n in res.menu.options[topic].options.items() if n.faq_id is not None)
    call.send(Digit(topic, t=t))
    t = run(call, 0.5, t)
    call.send(Digit(question, t=t))
    t = run(call, 10.0, t)
    assert of(call, "answer")[0]["faq_id"] == res.menu.options[topic].options[question].faq_id
    call.send(Digit(res.settings.goodbye_key, t=t))
    t = run(call, 10.0, t)
    assert call.ended and call.events[-1] == {**call.events[-1], "type": "hangup", "by": "ivr", "reason": "caller"}
    assert [p["prompt_id"] for p in of(call, "play")][-1] == "goodbye"
    latency = [p["latency"] for p in of(call, "play") if "after" in p]
    assert latency and all(x == 0.0 for x in latency)  # the IVR answers a key in the frame it came in
    assert not call.audio(FRAME, t).any()


def test_silence_walks_the_no_input_ladder_to_goodbye_on_the_timers_alone(res):
    call = new_call(res)
    call.start(0.0)
    run(call, 120.0, 0.0)
    assert call.ended and len(of(call, "no_input")) == res.settings.max_timeouts
    assert call.events[-1]["reason"] == "no_input"


def test_end_call_says_goodbye_and_the_record_says_the_ivr_ended_it(res):
    call = new_call(res)
    call.start(0.0)
    t = run(call, 0.5, 0.0)
    call.send(EndCall("shutdown", t=t))
    run(call, 10.0, t)
    assert call.ended
    assert [p["prompt_id"] for p in of(call, "play")][-1] == "goodbye"
    end = of(call, "end")[0]
    assert end["reason"] == "shutdown" and end["state"] == "menu"
    assert call.events[-1] == {**call.events[-1], "type": "hangup", "by": "ivr", "reason": "shutdown"}
    assert not [e for e in call.events if e.get("by") == "caller"]  # no fake caller hang-up any more


def test_a_caller_hangup_ends_at_once(res):
    call = new_call(res)
    call.start(0.0)
    call.send(CallerHangup(t=0.3))
    assert call.ended and call.events[-1]["by"] == "caller" and not call.playing


class BrokenDialogue(Dialogue):
    """FAKE: a dialogue with a bug in its key handling."""

    def _on_keys(self, keys, t):
        raise ZeroDivisionError("a bug in the call flow")


def test_a_bug_ends_the_call_with_the_error_prompt_and_a_logged_traceback(res, caplog, tmp_path):
    from ivr.channels.calllog import CallLog, read_log

    log = CallLog(tmp_path, "bug")
    d = BrokenDialogue(res.faq, res.matcher, res.prompts, res.settings, menu=res.menu)
    call = new_call(res, d, on_record=log.write)
    call.start(0.0)
    t = run(call, 0.5, 0.0)
    with caplog.at_level(logging.ERROR, logger="ivr.core.call"):
        call.send(Digit("1", t=t))
    run(call, 10.0, t)
    log.close()
    assert call.ended
    assert [p["prompt_id"] for p in of(call, "play")][-2:] == ["error", "goodbye"]
    assert call.events[-1] == {**call.events[-1], "type": "hangup", "by": "ivr", "reason": "error"}
    error = of(call, "error")[0]
    assert error["where"] == "dialogue" and "ZeroDivisionError" in error["traceback"]
    assert "ZeroDivisionError: a bug in the call flow" in caplog.text and "Traceback" in caplog.text
    logged = read_log(log.path)
    assert any(r["type"] == "error" and "_on_keys" in r["traceback"] for r in logged)


def test_a_failing_voice_is_an_error_the_call_survives(res):
    class BrokenVoice:  # FAKE: an engine that fails on one text
        def audio(self, text):
            if text == res.menu.prompt:
                raise RuntimeError("engine crashed")
            return np.zeros(RATE, dtype=np.int16)

    call = Call(res.dialogue(), BrokenVoice(), sample_rate=RATE)
    call.start(0.0)
    assert of(call, "error")[0]["where"] == "tts" and not call.ended


def test_a_long_run_of_keys_is_masked_in_every_record_and_shown_only_when_it_ends(res):
    call = new_call(res)
    call.start(0.0)
    t = run(call, 0.5, 0.0)
    typed = "912345678"
    for i, d in enumerate(typed):  # an identity number typed at the main menu
        call.send(Digit(d, t=t + 0.2 * i))
        assert call.settled <= len(call.events)
    shown_during = call.events[:call.settled]
    assert not [e for e in shown_during if e["type"] == "key"]  # the run is not shown while it is typed
    call.tick(t + 5.0)  # the run is over
    assert call.settled == len(call.events)
    echoes = [e for e in call.events if "digit" in e or "keys" in e]
    assert len([e for e in echoes if e["type"] == "key"]) == len(typed)
    assert {e["type"] for e in echoes} >= {"key", "digit", "invalid"}  # the dialogue echoed them
    for e in echoes:
        assert not re.search(r"\d", str(e.get("digit", "")) + str(e.get("keys", ""))), e


def test_short_key_entries_stay_readable(res):
    call = new_call(res)
    call.start(0.0)
    call.send(Digit("1", t=0.5))
    call.send(Digit("2", t=0.7))
    call.tick(3.0)
    assert [e["digit"] for e in of(call, "key")] == ["1", "2"]


def test_spoken_identity_numbers_are_masked_where_the_record_is_made(res):
    call = new_call(res)
    call.start(0.0)
    call.send(SpeechFinal("số căn cước của tôi là 0 9 1 2 3 4 5 6 7", 0.9, t=1.0))
    call.send(SpeechFinal("không chín một hai ba bốn năm sáu", 0.9, t=5.0))
    texts = " ".join(str(e) for e in call.events)
    assert "0 9 1 2 3 4" not in texts and "không chín một" not in texts
    assert of(call, "heard")[0]["text"] == "số căn cước của tôi là • • • • • • • • •"
