"""The call flow, event by event, over the real FAQ, the real matcher and the real prompts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ivr.content.faq import Faq, FaqEntry, Topic, load_faq
from ivr.content.prompts import load_prompts
from ivr.core.call import Call as CoreCall
from ivr.core.dialogue import Dialogue, answer_text
from ivr.core.events import (
    CallerHangup,
    CallStarted,
    Digit,
    HangUp,
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
from ivr.core.settings import DialogueSettings
from ivr.errors import IvrError
from ivr.language.match import Matcher

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = DialogueSettings()


@pytest.fixture(scope="module")
def faq():
    return load_faq()


@pytest.fixture(scope="module")
def matcher(faq):
    return Matcher(faq)


@pytest.fixture(scope="module")
def prompts():
    return load_prompts()


PLAY_RATE = 100  # samples per second of the stand-in voice
PLAY_S = 2.0  # every play lasts this long


class FixedLengthVoice:
    """FAKE voice: every play is PLAY_S of silence (the dialogue tests are about the flow, not the sound)."""

    def audio(self, text: str) -> np.ndarray:
        return np.zeros(int(PLAY_S * PLAY_RATE), dtype=np.int16)


class Call:
    """The dialogue driven through the real ``ivr.core.call.Call`` in virtual time (plays last PLAY_S)."""

    def __init__(self, dialogue: Dialogue):
        self.d = dialogue
        self.c = CoreCall(dialogue, FixedLengthVoice(), sample_rate=PLAY_RATE)
        self.t = 0.0

    @property
    def log(self) -> list[list]:
        return [actions for _event, actions in self.c.history]

    @property
    def queue(self) -> list[Play]:
        return [item.action for item in self.c.playout.items if item.is_play]

    def send(self, event) -> list:
        return self.c.send(event)

    def at(self, dt: float = 0.5) -> float:
        self.t += dt
        return self.t

    def start(self) -> list:
        return self.c.start(self.t)

    def finish(self) -> list:
        """Play out everything queued; returns the actions that came back."""
        n = len(self.c.history)
        while self.c.playout.items and not self.c.ended:
            plays = [item for item in self.c.playout.items if item.is_play]
            if not plays:
                break
            samples = max(1, plays[0].left)
            self.c.audio(samples, self.t)
            self.t += samples / PLAY_RATE
        return [a for actions in self.log[n:] for a in actions]

    def key(self, k: str) -> list:
        return self.send(Digit(k, t=self.at()))

    def keys(self, ks: str) -> list:
        out = []
        for k in ks:
            out += self.key(k)
        return out

    def say(self, text: str, confidence: float = 1.0) -> list:
        return self.send(SpeechFinal(text, confidence, t=self.at()))

    def silence(self) -> list:
        assert self.d.deadline is not None, "the dialogue is not waiting for anything"
        self.t = self.d.deadline
        return self.c.tick(self.t)


def new_call(faq, matcher, prompts, settings=SETTINGS) -> Call:
    return Call(Dialogue(faq, matcher, prompts, settings))


def plays(actions) -> list[Play]:
    return [a for a in actions if isinstance(a, Play)]


def prompt_ids(actions) -> list[str | None]:
    return [p.prompt_id for p in plays(actions)]


def answered(actions) -> int | None:
    ids = [p.faq_id for p in plays(actions) if p.faq_id is not None]
    assert len(ids) <= 1
    return ids[0] if ids else None


def logs(actions, kind: str) -> list[Log]:
    return [a for a in actions if isinstance(a, Log) and a.kind == kind]


def non_log(actions) -> list:
    return [a for a in actions if not isinstance(a, Log)]


def keys_for(faq, entry) -> str:
    """The keypad path to an entry worked out from the FAQ itself: topic key, then position in its topic."""
    topic = faq.topic(entry.topic)
    position = [e.id for e in faq.entries_for_topic(entry.topic)].index(entry.id) + 1
    return topic.key + str(position)


# --- greeting and deadline ----------------------------------------------------------------------------------


def test_greeting_invites_speech_or_keys_and_waits_for_playback_before_the_timer(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    actions = call.start()
    assert prompt_ids(actions) == ["greet_long", "main_menu"]
    greet = plays(actions)[0].text
    assert greet.startswith("Xin chào") and "nói câu hỏi" in greet and "bấm phím" in greet
    menu_text = plays(actions)[1].text
    for topic in faq.topics:
        assert f"bấm phím {topic.key}" in menu_text
    assert all(p.barge_in for p in plays(actions))
    listen = [a for a in actions if isinstance(a, Listen)]
    assert listen == [Listen(True, True, SETTINGS.timeout, SETTINGS.inter_digit_timeout, 1)]
    assert call.d.deadline is None  # still playing
    first, second = plays(actions)
    call.send(PlaybackFinished(first.play_id, t=3.0))
    assert call.d.deadline is None  # the menu is still playing
    call.send(PlaybackFinished(second.play_id, t=9.0))
    assert call.d.deadline == pytest.approx(9.0 + SETTINGS.timeout)
    assert call.d.waiting_for == "no_input"


def test_deadline_timeout_before_it_is_ignored_and_speech_pushes_it_back(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    deadline = call.d.deadline
    early = call.send(Timeout(t=deadline - 1.0))
    assert non_log(early) == [] and logs(early, "ignored")
    assert call.d.deadline == deadline
    call.send(SpeechPartial("em muốn hỏi", t=deadline - 0.5))  # the caller is talking: no silence yet
    assert call.d.deadline == pytest.approx(deadline - 0.5 + SETTINGS.timeout)
    call.send(SpeechPartial("", t=deadline))  # empty partials are not speech
    assert call.d.deadline == pytest.approx(deadline - 0.5 + SETTINGS.timeout)


def test_unknown_play_id_and_events_before_the_call_starts_do_nothing(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    assert non_log(call.send(Digit("1", t=0.0))) == []
    assert call.d.state == "idle"
    call.start()
    assert call.send(PlaybackFinished(999, t=1.0)) == []
    assert call.d.deadline is None


def test_same_events_give_the_same_actions(faq, matcher, prompts):
    script = [CallStarted(t=0.0), Digit("2", t=1.0), SpeechFinal("tôi quên mật khẩu", t=2.0),
              Timeout(t=99.0), Digit("1", t=3.0), Digit("9", t=4.0)]
    runs = []
    for _ in range(2):
        d = Dialogue(faq, matcher, prompts, SETTINGS)
        runs.append([d.handle(e) for e in script])
    assert runs[0] == runs[1]


# --- all 14 answers by keys and by voice ----------------------------------------------------------------------


def test_every_answer_by_keys_alone(faq, matcher, prompts):
    assert len(faq.entries) == 14
    for entry in faq.entries:
        call = new_call(faq, matcher, prompts)
        call.start()
        call.finish()
        path = keys_for(faq, entry)
        assert call.d.menu.path_to(entry.id) == list(path)
        call.key(path[0])
        topic_play = call.queue[-1]
        assert topic_play.prompt_id == f"topic_menu:{entry.topic}"
        assert f"{prompts.summary(entry)}, bấm phím {path[1]}" in topic_play.text
        call.finish()
        actions = call.key(path[1])
        assert answered(actions) == entry.id, entry.id
        answer = next(p for p in plays(actions) if p.faq_id == entry.id)
        assert answer.text == answer_text(entry) and answer.prompt_id is None
        assert prompt_ids(actions) == ["answer_intro", None, "after_answer"]
        assert logs(actions, "answer")[0].data["via"] == "keys"
        assert call.d.state == "after_answer"


def test_every_answer_by_voice_alone_with_the_question_text(faq, matcher, prompts):
    for entry in faq.entries:
        call = new_call(faq, matcher, prompts)
        call.start()
        call.finish()
        actions = call.say(entry.question)
        assert answered(actions) == entry.id, (entry.id, logs(actions, "match"))
        assert logs(actions, "answer")[0].data["via"] == "voice"


# callers' own words (not in the FAQ's paraphrases); a "confirm" is accepted with "có"
CALLER_SENTENCES = {
    1: "một chữ ký số dùng cho mấy dịch vụ thì có bị tính thêm phí không ạ",
    2: "em xóa ứng dụng rồi cài lại thì có phải kích hoạt lại không",
    3: "em bị mất điện thoại và quên luôn mã pin thì phải làm sao",
    4: "ứng dụng báo thiết bị không đủ an toàn là bị sao vậy",
    5: "máy android em đã bật nhận diện khuôn mặt mà app vẫn bắt dùng sinh trắc học",
    6: "cho hỏi muốn đổi mật khẩu trên app thì làm thế nào",
    7: "máy tôi không có sinh trắc học thì có dùng được ứng dụng không",
    8: "một tài khoản có dùng được trên hai điện thoại không",
    9: "tôi quên mật khẩu rồi lấy lại kiểu gì",
    10: "làm sao biết chữ ký số của tôi còn hạn đến bao giờ",
    11: "email kích hoạt để quá 48 giờ rồi thì làm thế nào",
    12: "thông tin định danh bị sai thì gửi lại email kích hoạt thế nào",
    13: "lúc kích hoạt nó báo không thể đăng ký thông báo",
    14: "kích hoạt tài khoản thì báo không tồn tại thông tin tài khoản trên hệ thống",
}


@pytest.mark.parametrize("faq_id", sorted(CALLER_SENTENCES))
def test_every_answer_by_voice_alone_with_a_caller_sentence(faq, matcher, prompts, faq_id):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    actions = call.say(CALLER_SENTENCES[faq_id])
    if call.d.state == "confirm":
        assert call.d.confirm_id == faq_id, logs(actions, "match")
        call.finish()
        actions = call.say("có")
    assert answered(actions) == faq_id, logs(actions, "match")


# --- confirmation ---------------------------------------------------------------------------------------------

AMBIGUOUS = ["mất máy", "gửi lại mail", "lỗi tài khoản", "khuôn mặt sinh trắc", "quên mật khẩu với mã pin",
             "kích hoạt báo lỗi thông báo", "mật khẩu quên"]


@pytest.fixture(scope="module")
def ambiguous(matcher):
    """A short caller phrase the real matcher is unsure about (decision "confirm")."""
    for text in AMBIGUOUS:
        result = matcher.match(text)
        if result.decision == "confirm":
            return text, result.faq_id
    pytest.fail(f"none of {AMBIGUOUS} gives a confirm decision any more: add a phrase that does")


def _confirming(faq, matcher, prompts, ambiguous, settings=SETTINGS):
    text, faq_id = ambiguous
    call = new_call(faq, matcher, prompts, settings)
    call.start()
    call.finish()
    actions = call.say(text)
    assert call.d.state == "confirm"
    assert prompt_ids(actions) == ["confirm", "confirm_hint"]
    summary = prompts.summary(faq.by_id(faq_id))
    assert plays(actions)[0].text == prompts.text("confirm", summary=summary)
    assert answered(actions) is None
    call.finish()
    return call, faq_id


@pytest.mark.parametrize("reply", ["có", "đúng rồi", "vâng đúng ạ"])
def test_confirm_yes_by_voice(faq, matcher, prompts, ambiguous, reply):
    call, faq_id = _confirming(faq, matcher, prompts, ambiguous)
    actions = call.say(reply)
    assert answered(actions) == faq_id
    assert logs(actions, "answer")[0].data["via"] == "confirm_voice"


def test_confirm_yes_by_key(faq, matcher, prompts, ambiguous):
    call, faq_id = _confirming(faq, matcher, prompts, ambiguous)
    actions = call.key(SETTINGS.yes_key)
    assert answered(actions) == faq_id
    assert logs(actions, "answer")[0].data["via"] == "confirm_keys"


@pytest.mark.parametrize("how", ["voice", "keys"])
def test_confirm_no_goes_down_the_no_match_ladder(faq, matcher, prompts, ambiguous, how):
    settings = replace(SETTINGS, second_candidate=False)
    call, _ = _confirming(faq, matcher, prompts, ambiguous, settings)
    actions = call.say("không phải") if how == "voice" else call.key(SETTINGS.no_key)
    assert answered(actions) is None
    assert prompt_ids(actions) == ["no_match_1"]
    assert call.d.state == "menu" and call.d.counters["failures"] == 1


def test_confirm_other_speech_is_taken_as_a_new_question(faq, matcher, prompts, ambiguous):
    call, _ = _confirming(faq, matcher, prompts, ambiguous)
    entry = faq.by_id(10)
    actions = call.say(entry.question)
    assert answered(actions) == 10


def test_confirm_silence_asks_again(faq, matcher, prompts, ambiguous):
    call, _ = _confirming(faq, matcher, prompts, ambiguous)
    actions = call.silence()
    assert prompt_ids(actions) == ["no_input_1", "confirm", "confirm_hint"]


def _small_faq(entries: list[tuple[str, str]], topic_count: int = 1) -> Faq:
    topics = [Topic(id=f"t{i + 1}", label=f"Chủ đề {i + 1}", key=str(i + 1)) for i in range(topic_count)]
    return Faq(
        topics=topics,
        entries=[
            FaqEntry(id=i + 1, topic=topics[i % topic_count].id, question=q, answer=a, paraphrases=(),
                     keywords=(), spoken=None, source=Path("test-faq.yaml"))
            for i, (q, a) in enumerate(entries)
        ],
    )


def test_confirm_no_offers_the_runner_up(prompts):
    """Two entries a caller's few words fit almost equally: "no" to the first offers the second."""
    faq = _small_faq([
        ("Làm sao để đổi mật khẩu đăng nhập ứng dụng?", "Vào mục Đổi mật khẩu."),
        ("Quên mật khẩu đăng nhập ứng dụng thì lấy lại thế nào?", "Dùng chức năng Quên mật khẩu."),
        ("Cách kiểm tra thời hạn chữ ký số?", "Xem trong mục Thông tin chứng thư."),
    ])
    matcher = Matcher(faq)
    text = "mật khẩu đăng nhập ứng dụng"
    result = matcher.match(text)
    assert result.decision == "confirm", result
    runner_up = result.candidates[1]
    assert runner_up.score >= SETTINGS.confirm_min_score and {result.faq_id, runner_up.faq_id} == {1, 2}
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.say(text)
    assert call.d.confirm_id == result.faq_id
    call.finish()
    actions = call.say("không phải")
    assert call.d.state == "confirm" and call.d.confirm_id == runner_up.faq_id
    # the runner-up is offered as an alternative: "Hay quý khách muốn hỏi về ...?"
    assert prompt_ids(actions) == ["confirm_other", "confirm_hint"]
    assert plays(actions)[0].text == prompts.text("confirm_other", summary=prompts.summary(faq.by_id(runner_up.faq_id)))
    call.finish()
    assert answered(call.key("1")) == runner_up.faq_id


# --- ladders --------------------------------------------------------------------------------------------------


def test_no_input_ladder_reprompts_then_menu_then_goodbye(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.key("2")  # into a topic menu
    call.finish()
    first = call.silence()
    assert prompt_ids(first) == ["no_input_1", "topic_menu:password"]  # the current prompt again
    assert first[0] == Log("no_input", {"t": call.t, "count": 1, "state": "menu"})
    call.finish()
    second = call.silence()
    assert prompt_ids(second) == ["no_input_2", "main_menu"]  # the keypad menu
    assert call.d.node is call.d.menu
    call.finish()
    third = call.silence()
    assert prompt_ids(third) == ["no_input_3", "goodbye"]
    assert [a for a in non_log(third) if not isinstance(a, Play)] == [HangUp("no_input")]
    assert not plays(third)[-1].barge_in
    assert call.d.ended and call.d.deadline is None
    assert call.key("1") == [] and call.say("alo") == []
    assert call.d.counters["no_input"] == 3


def test_no_input_count_starts_again_after_the_caller_acts(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.silence()
    call.finish()
    call.silence()
    call.finish()
    call.key("1")
    call.finish()
    actions = call.silence()
    assert prompt_ids(actions)[0] == "no_input_1"
    assert not call.d.ended


def test_no_input_ladder_can_end_with_the_operator(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts, replace(SETTINGS, on_max_timeouts="operator", max_timeouts=2))
    call.start()
    call.finish()
    call.silence()
    call.finish()
    actions = call.silence()
    assert prompt_ids(actions) == ["no_input_2", "operator"]
    assert non_log(actions)[-1] == Transfer("operator")


NONSENSE = ["trời hôm nay đẹp quá", "cho tôi đặt một cái bánh pizza", "bóng đá tối nay mấy giờ"]


def test_no_match_ladder_rephrase_then_menu_then_operator(faq, matcher, prompts):
    for text in NONSENSE:
        assert matcher.match(text).decision == "reject", text
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    first = call.say(NONSENSE[0])
    assert prompt_ids(first) == ["no_match_1"]
    assert logs(first, "no_match")
    call.finish()
    second = call.say(NONSENSE[1])
    assert prompt_ids(second) == ["no_match_2", "main_menu"]
    call.finish()
    third = call.say(NONSENSE[2])
    assert prompt_ids(third) == ["no_match_3", "operator"]
    assert non_log(third)[-1] == Transfer("operator")
    assert call.d.state == "transferring" and call.d.deadline is None
    assert call.d.counters["no_match"] == 3


def test_no_match_ladder_without_operator_says_goodbye(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts, replace(SETTINGS, operator_enabled=False))
    assert "0" not in call.d.menu.options
    call.start()
    call.finish()
    for text in NONSENSE:
        actions = call.say(text)
        call.finish()
    assert prompt_ids(actions) == ["no_match_3", "goodbye"]
    assert non_log(actions)[-1] == HangUp("max_failures")


def test_low_confidence_speech_counts_as_not_understood(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts, replace(SETTINGS, min_confidence=0.5))
    call.start()
    call.finish()
    actions = call.say(faq.by_id(9).question, confidence=0.2)
    assert answered(actions) is None and prompt_ids(actions) == ["no_match_1"]


def test_an_answer_resets_the_failure_count(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.say(NONSENSE[0])
    call.finish()
    call.say(faq.by_id(6).question)
    call.finish()
    actions = call.say(NONSENSE[1])
    assert prompt_ids(actions) == ["no_match_1"]


# --- keypad ---------------------------------------------------------------------------------------------------


def test_invalid_keys_reprompt_then_operator(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    unused = next(k for k in "987654321" if k not in call.d.menu.options)
    actions = call.key(unused)
    assert prompt_ids(actions) == ["invalid", "main_menu"]
    assert logs(actions, "invalid")[0].data["keys"] == unused
    call.finish()
    call.key("1")
    call.finish()
    assert call.d.counters["failures"] == 0  # a valid key is progress: the count starts again
    actions = call.key("9")  # topic 1 has fewer than 9 questions
    assert prompt_ids(actions) == ["invalid", "topic_menu:account"]
    call.finish()
    actions = call.key("8")
    assert prompt_ids(actions) == ["invalid", "topic_menu:account"]
    call.finish()
    actions = call.key("A")
    assert prompt_ids(actions) == ["invalid", "operator"]
    assert non_log(actions)[-1] == Transfer("operator")
    assert call.d.counters["invalid"] == 4


def test_star_repeats_and_hash_goes_back_to_the_main_menu(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.key("3")
    topic = call.queue[-1]
    call.finish()
    actions = call.key("*")
    assert prompt_ids(actions) == ["topic_menu:device"] and plays(actions)[0].text == topic.text
    call.finish()
    actions = call.key("#")
    assert prompt_ids(actions) == ["greet_short", "main_menu"]
    assert call.d.node is call.d.menu
    call.finish()
    actions = call.key("*")
    assert prompt_ids(actions) == ["main_menu"]


def test_after_answer_choices(faq, matcher, prompts):
    entry = faq.by_id(10)
    path = keys_for(faq, entry)
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.keys(path)
    call.finish()
    replay = call.key(SETTINGS.repeat_key)
    assert answered(replay) == 10 and prompt_ids(replay) == [None, "after_answer"]
    call.finish()
    star = call.key("*")
    assert prompt_ids(star) == ["after_answer"]
    call.finish()
    ask = call.key(SETTINGS.another_key)
    assert prompt_ids(ask) == ["ask"]
    call.finish()
    assert answered(call.say(faq.by_id(8).question)) == 8
    call.finish()
    menu = call.key(SETTINGS.menu_key)
    assert prompt_ids(menu) == ["greet_short", "main_menu"]
    call.finish()
    call.keys(path)
    call.finish()
    bye = call.key(SETTINGS.goodbye_key)
    assert prompt_ids(bye) == ["goodbye"] and non_log(bye)[-1] == HangUp("caller")
    assert call.d.ended


def test_voice_commands(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.say(faq.by_id(4).question)
    call.finish()
    assert answered(call.say("nghe lại")) == 4
    call.finish()
    assert prompt_ids(call.say("dạ cho tôi hỏi câu khác")) == ["ask"]
    call.finish()
    assert prompt_ids(call.say("về menu chính")) == ["greet_short", "main_menu"]
    call.finish()
    actions = call.say("cho tôi gặp tổng đài viên")
    assert non_log(actions)[-1] == Transfer("operator")
    # a question that merely holds a command phrase is a question
    call2 = new_call(faq, matcher, prompts)
    call2.start()
    call2.finish()
    actions = call2.say("email kích hoạt để quá 48 giờ rồi, tôi muốn kết thúc việc kích hoạt thì làm thế nào")
    assert not logs(actions, "command")
    call2.finish()
    actions = call2.say("kết thúc")
    assert non_log(actions)[-1] == HangUp("caller")


def test_multi_key_entry_ends_on_inter_digit_timeout(prompts):
    """A topic with twelve questions needs two keys for 10-12; "1" alone waits for the inter-digit timeout."""
    faq = _small_faq([(f"Câu hỏi số {i} về chữ ký số?", f"Trả lời {i}.") for i in range(1, 13)])
    matcher = Matcher(faq)
    call = new_call(faq, matcher, prompts)
    assert sorted(call.d.menu.options["1"].options, key=int) == [str(i) for i in range(13)]
    call.start()
    call.finish()
    call.key("1")
    call.finish()
    actions = call.key("1")
    assert non_log(actions) == [] and call.d.waiting_for == "inter_digit"
    assert call.d.deadline == pytest.approx(call.t + SETTINGS.inter_digit_timeout)
    actions = call.key("2")  # "12" cannot grow: complete at once
    assert answered(actions) == 12
    call.finish()
    call.key("#")
    call.finish()
    call.key("1")
    call.finish()
    call.key("1")
    assert call.d.waiting_for == "inter_digit"
    actions = call.silence()  # the inter-digit timeout ends "1"
    assert answered(actions) == 1
    call.finish()
    call.key("#")
    call.finish()
    call.key("1")
    call.finish()
    call.key("1")
    assert answered(call.key("0")) == 10
    call.finish()
    call.key("#")
    call.finish()
    call.key("1")
    call.finish()
    actions = call.key("0")  # no question key starts with 0: the operator at once
    assert non_log(actions)[-1] == Transfer("operator")


# --- barge-in and type-ahead ----------------------------------------------------------------------------------


def test_key_during_a_prompt_stops_playback_first(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    actions = call.key("2")
    assert isinstance(actions[0], StopPlayback)
    assert logs(actions, "barge_in")[0].data["by"] == "digit"
    assert prompt_ids(actions) == ["topic_menu:password"]


def test_speech_during_a_prompt_stops_playback_first(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    assert call.send(SpeechPartial("", t=call.at())) == []  # no words: no barge-in
    assert call.send(SpeechPartial("   ", t=call.at())) == []
    actions = call.send(SpeechPartial("em muốn", t=call.at()))
    assert actions[0] == StopPlayback("barge_in")
    assert call.d.deadline == pytest.approx(call.t + SETTINGS.timeout)  # silence counts from here
    actions = call.say(faq.by_id(7).question)
    assert answered(actions) == 7
    assert not any(isinstance(a, StopPlayback) for a in actions)  # already stopped
    # a final without a partial before it also barges in
    actions = call.say(faq.by_id(2).question)
    assert actions[0] == StopPlayback("barge_in") and answered(actions) == 2


def test_key_during_an_answer_stops_it(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.say(faq.by_id(3).question)
    actions = call.key(SETTINGS.goodbye_key)
    assert isinstance(actions[0], StopPlayback)
    assert non_log(actions)[-1] == HangUp("caller")


def test_type_ahead_over_the_greeting_reaches_topic_1_question_2(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    first = call.key("1")
    second = call.key("2")
    assert isinstance(first[0], StopPlayback) and isinstance(second[0], StopPlayback)
    topic1 = next(t for t in faq.topics if t.key == "1")
    assert answered(second) == faq.entries_for_topic(topic1.id)[1].id


def test_keys_during_a_prompt_that_cannot_be_cut_are_kept(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts, replace(SETTINGS, barge_in=False))
    actions = call.start()
    assert not any(p.barge_in for p in plays(actions))
    for k in "13":
        actions = call.key(k)
        assert non_log(actions) == [] and logs(actions, "typeahead")
    assert call.send(SpeechFinal("alo", t=call.at())) and call.d.state == "menu"  # speech over it is ignored
    first, second = list(call.queue)
    call.c.playout.clear()
    assert non_log(call.send(PlaybackFinished(first.play_id, t=call.at()))) == []
    actions = call.send(PlaybackFinished(second.play_id, t=call.at()))
    topic1 = next(t for t in faq.topics if t.key == "1")
    # "1" opened the topic menu; "3" waits for that menu (it cannot be cut) ...
    assert prompt_ids(actions) == [f"topic_menu:{topic1.id}"]
    actions = call.finish()
    assert answered(actions) == faq.entries_for_topic(topic1.id)[2].id  # ... and then picks question 3


# --- operator, hang-up ----------------------------------------------------------------------------------------


def test_operator_and_transfer_failure(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    actions = call.key("0")
    assert prompt_ids(actions) == ["operator"] and not plays(actions)[0].barge_in
    assert non_log(actions)[-1] == Transfer(SETTINGS.operator_target)
    assert call.d.state == "transferring" and call.d.deadline is None
    assert non_log(call.key("5")) == []  # keys while being transferred do nothing
    actions = call.send(TransferFailed("486 Busy Here", t=call.at()))
    assert prompt_ids(actions) == ["transfer_failed", "greet_short", "main_menu"]
    assert logs(actions, "transfer_failed")[0].data["reason"] == "486 Busy Here"
    assert call.d.state == "menu"
    call.finish()
    assert call.d.deadline is not None
    entry = faq.by_id(5)
    path = keys_for(faq, entry)
    call.key(path[0])
    assert answered(call.key(path[1])) == 5


def test_transfer_failed_out_of_a_transfer_is_ignored(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    assert non_log(call.send(TransferFailed(t=1.0))) == []


def test_operator_disabled(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts, replace(SETTINGS, operator_enabled=False))
    call.start()
    call.finish()
    assert prompt_ids(call.key("0")) == ["invalid", "main_menu"]
    call.finish()
    actions = call.say("cho tôi gặp tổng đài viên")
    assert prompt_ids(actions) == ["operator_unavailable", "main_menu"]
    assert not any(isinstance(a, Transfer) for a in actions)


def test_hangup_in_the_middle_of_a_prompt_ends_cleanly(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.say(faq.by_id(1).question)  # the answer is playing
    playing = call.queue[0]
    actions = call.send(CallerHangup(t=call.at()))
    assert len(actions) == 1 and isinstance(actions[0], Log) and actions[0].kind == "hangup"
    assert actions[0].data["by"] == "caller" and actions[0].data["answers"] == 1
    assert call.d.ended and call.d.deadline is None and not call.d.playing
    for event in (PlaybackFinished(playing.play_id, t=call.at()), Digit("1", t=call.at()),
                  SpeechFinal("alo", t=call.at()), Timeout(t=call.at(100)), TransferFailed(t=call.at()),
                  CallStarted(t=call.at())):
        assert call.send(event) == [] and call.d.handle(event) == []
    again = call.d.handle(CallerHangup(t=call.at()))
    assert [type(a) for a in again] == [Log]


def test_every_action_has_a_json_log_record(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.key("2")
    call.key("7")
    call.finish()
    call.say(faq.by_id(9).question)
    call.finish()
    call.silence()
    call.key("0")
    call.send(TransferFailed(t=call.at()))
    call.key("9")
    call.key("9")
    call.key("9")
    kinds = set()
    for actions in call.log:
        for a in actions:
            rec = a.record()
            json.dumps(rec, ensure_ascii=False)
            assert isinstance(rec["type"], str) and rec["type"]
            if isinstance(a, Log):
                assert "t" in rec
            kinds.add(rec["type"])
    assert {"play", "stop", "listen", "transfer", "answer", "digit", "speech", "no_input", "invalid"} <= kinds
    assert not any(a.kind == "error" for actions in call.log for a in actions if isinstance(a, Log))


def test_prompt_texts_cover_what_the_dialogue_says(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    texts = call.d.prompt_texts()
    for entry in faq.entries:
        assert f"confirm:{entry.id}" in texts and f"answer_intro:{entry.id}" in texts
    call.start()
    call.finish()
    for k in "1*#2":
        call.key(k)
        call.finish()
    call.silence()
    said = {p.text for actions in call.log for p in plays(actions)}
    assert said <= set(texts.values())



def test_prompt_texts_hold_the_runner_up_question(prompts):
    """"Hay quý khách muốn hỏi về ...?" is said after a "no": it is warmed and recordable like the rest."""
    faq = _two_topics()
    matcher = Matcher(faq)
    call = new_call(faq, matcher, prompts)
    texts = call.d.prompt_texts()
    call.start()
    call.finish()
    call.say("mật khẩu đăng nhập ứng dụng")
    call.finish()
    actions = call.say("không phải")
    assert prompt_ids(actions)[0] == "confirm_other"
    assert plays(actions)[0].text in set(texts.values())
    for entry in faq.entries:
        assert f"confirm_other:{entry.id}" in texts

# --- settings ---------------------------------------------------------------------------------------------------


def test_settings_file_loads():
    from ivr.channels.resources import load_settings

    s = load_settings()
    assert s.timeout > 0 and s.max_failures >= 1 and s.operator_key == "0"


@pytest.mark.parametrize("data, field", [
    ({"timeout": "soon"}, "timeout"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": float("inf")}, "timeout"),  # YAML's .inf: a caller waiting forever in silence
    ({"timeout": 3600}, "timeout"),
    ({"inter_digit_timeout": float("inf")}, "inter_digit_timeout"),
    ({"inter_digit_timeout": float("nan")}, "inter_digit_timeout"),
    ({"max_failures": 0}, "max_failures"),
    ({"on_max_failures": "hang"}, "on_max_failures"),
    ({"after_answer_keys": {"repeat": "*"}}, "after_answer_keys.repeat"),
    ({"after_answer_keys": {"repeat": "2"}}, "after_answer_keys"),
    ({"confirm": {"yes_key": "0"}}, "confirm"),
    ({"operator": {"enabled": "yes"}}, "operator.enabled"),
])
def test_bad_settings_name_the_field(data, field):
    with pytest.raises(IvrError) as exc:
        DialogueSettings.from_config(data, source="config/dialogue.yaml")
    assert "config/dialogue.yaml" in str(exc.value) and field in str(exc.value)


# --- ivr chat -------------------------------------------------------------------------------------------------


def _chat(lines: list[str], *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "ivr", "chat", *extra], input="\n".join(lines) + "\n", capture_output=True,
        text=True, encoding="utf-8", cwd=ROOT, env=env, timeout=120,
    )


def test_chat_scripted_conversation_reaches_an_answer_and_goodbye(faq):
    entry = faq.by_id(9)
    other = faq.by_id(13)
    path = keys_for(faq, other)
    proc = _chat([entry.question, "", "3", path, "9"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.splitlines()[0].startswith("IVR: Xin chào")
    assert f"IVR [FAQ 9]: {answer_text(entry).splitlines()[0]}" in out
    assert "IVR: " + load_prompts().ladder("no_input", 1) in out
    assert f"IVR [FAQ {other.id}]:" in out  # both keys on one line: type-ahead
    assert out.index("[FAQ 9]") < out.index(f"[FAQ {other.id}]")
    assert "Cảm ơn quý khách đã gọi" in out and "[tổng đài kết thúc cuộc gọi: caller]" in out
    assert "Traceback" not in proc.stderr


def test_chat_end_of_input_is_a_hangup_and_verbose_prints_the_log():
    proc = _chat(["mật khẩu đăng nhập bị quên thì sao"], "--verbose")
    assert proc.returncode == 0, proc.stderr
    assert "[quý khách gác máy]" in proc.stdout
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert {"play", "listen", "speech", "hangup"} <= {r["type"] for r in records}


def test_chat_speak_without_a_sound_device_says_so_once_and_keeps_printing(faq):
    env_lines = [faq.by_id(6).question, "9"]
    proc = _chat(env_lines, "--speak")
    assert proc.returncode == 0, proc.stderr
    assert "[FAQ 6]" in proc.stdout and "[tổng đài kết thúc cuộc gọi: caller]" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "cannot speak" in line]
    assert len(warnings) == (0 if _has_sound_output() else 1), proc.stderr


def _has_sound_output() -> bool:
    import sounddevice as sd

    try:
        sd.query_devices(kind="output")
    except Exception:
        return False
    return True


# --- disambiguation after "không" -------------------------------------------------------------------------------


def _two_topics():
    return _small_faq([
        ("Làm sao để đổi mật khẩu đăng nhập ứng dụng?", "Vào mục Đổi mật khẩu."),
        ("Quên mật khẩu đăng nhập ứng dụng thì lấy lại thế nào?", "Dùng chức năng Quên mật khẩu."),
        ("Cách kiểm tra thời hạn chữ ký số?", "Xem trong mục Thông tin chứng thư."),
        ("Thiết bị không có sinh trắc học thì dùng được không?", "Dùng mã PIN."),
    ], topic_count=2)


def test_no_to_the_runner_up_offers_the_likeliest_topic_menu_before_the_ladder(prompts):
    faq = _two_topics()
    matcher = Matcher(faq)
    text = "mật khẩu đăng nhập ứng dụng"
    first = matcher.match(text)
    assert first.decision == "confirm" and {first.faq_id, first.candidates[1].faq_id} == {1, 2}
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    call.say(text)
    call.finish()
    assert prompt_ids(call.say("không phải"))[0] == "confirm_other"
    call.finish()
    actions = call.key(SETTINGS.no_key)
    topic = faq.by_id(first.faq_id).topic
    assert call.d.state == "menu" and call.d.node.topic_id == topic
    assert prompt_ids(actions) == [f"topic_menu:{topic}"]
    assert logs(actions, "disambiguate")[0].data["topic"] == topic
    assert call.d.counters["failures"] == 0  # not yet the no-match ladder
    call.finish()
    # the topic's keypad menu works: its first question is answered
    entry = faq.entries_for_topic(topic)[0]
    assert answered(call.key("1")) == entry.id


def test_no_without_a_runner_up_goes_to_the_topic_menu(faq, matcher, prompts, ambiguous):
    call, faq_id = _confirming(faq, matcher, prompts, ambiguous)
    call.d._confirm_rest = []  # no plausible runner-up
    actions = call.say("không")
    topic = faq.by_id(faq_id).topic
    assert prompt_ids(actions) == [f"topic_menu:{topic}"] and call.d.node.topic_id == topic
    assert call.d.counters["failures"] == 0
    # "không" once more in the topic menu is not a question: the no-match ladder starts
    call.finish()
    assert prompt_ids(call.say("không biết"))[0] == "no_match_1"


@pytest.mark.parametrize("said,topic", [("mật khẩu", "password"), ("sinh trắc học", "device"),
                                        ("về mã PIN ạ", "password"), ("tài khoản", "account")])
def test_saying_a_topic_name_opens_its_menu(faq, matcher, prompts, said, topic):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    actions = call.say(said)
    assert call.d.state == "menu" and call.d.node.topic_id == topic, prompt_ids(actions)
    assert prompt_ids(actions) == [f"topic_menu:{topic}"]
    assert logs(actions, "topic_named")[0].data["topic"] == topic
    # a question that contains the name is still a question
    call.finish()
    assert answered(call.say("tôi quên mật khẩu thì làm sao")) == 9


@pytest.mark.parametrize("said,topic", [
    ("tôi muốn hỏi về mật khẩu", "password"), ("cho tôi hỏi về mật khẩu", "password"),
    ("em cần hỗ trợ về mã PIN", "password"), ("mình muốn biết thêm về sinh trắc học", "device"),
    ("tôi có câu hỏi về tài khoản", "account"), ("cho em hỏi chút về chữ ký số thôi", "service"),
    ("tôi muốn được tư vấn về dịch vụ", "service"),
])
def test_a_topic_name_after_a_request_opens_its_menu(faq, matcher, prompts, said, topic):
    """The request callers say before a topic name ("tôi muốn hỏi về ...", "cho tôi hỏi về ...") is not the
    question: the topic's menu follows, as for the name alone."""
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    actions = call.say(said)
    assert prompt_ids(actions) == [f"topic_menu:{topic}"], logs(actions, "match")
    assert logs(actions, "topic_named")[0].data["topic"] == topic


@pytest.mark.parametrize("said", ["không có sinh trắc học", "tôi muốn đổi mật khẩu", "cho tôi hỏi về quên mật khẩu"])
def test_a_request_with_more_than_a_topic_name_is_a_question(faq, matcher, prompts, said):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    actions = call.say(said)
    assert not logs(actions, "topic_named") and logs(actions, "match"), prompt_ids(actions)


def test_nbest_alternatives_reach_the_matcher(faq, matcher, prompts):
    call = new_call(faq, matcher, prompts)
    call.start()
    call.finish()
    garbled = "quyên mà bin gì đó"
    hyps = ((garbled, 0.4), ("quên mã pin", 0.35), ("quên mã bin", 0.25))
    actions = call.send(SpeechFinal(garbled, 0.6, hyps, t=call.at()))
    match = logs(actions, "match")[0].data
    assert match["faq_id"] == 3 and match["decision"] in ("answer", "confirm")
    # the control: the best hypothesis alone is not understood as entry 3
    alone = matcher.match(garbled)
    assert alone.faq_id != 3 or alone.score < match["score"]
