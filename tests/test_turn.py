"""The VAD gate and end-of-turn rule (ivr/media/turn.py) on synthesised speech (espeak-ng) with pauses and
noise (fixed seeds): a pause inside a sentence never splits it, turns end ``end_ms`` after the last word,
no word onset is held back, silence is never passed on."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.errors import IvrError
from ivr.media.tts import Synthesizer
from ivr.media.turn import END_MS, MIN_END_MS, TurnGate, TurnSettings

HALVES = [("Tôi quên mật khẩu", "thì phải làm sao"), ("Cho em hỏi", "cách gia hạn chứng thư số"),
          ("Điện thoại của tôi", "bị mất rồi")]


def trimmed(text: str, rate: int, voice: str = "north") -> np.ndarray:
    """Speech without espeak-ng's leading and trailing silence (so pauses are exactly what the test says)."""
    a = Synthesizer(voice, rate_wpm=160).render(text, rate, raw=True)
    loud = np.flatnonzero(np.abs(a.astype(np.int32)) > 300)
    return a[loud[0]:loud[-1] + 1]


def noisy(parts: list, rate: int, snr_db: float | None, seed: int) -> np.ndarray:
    x = np.concatenate([p if isinstance(p, np.ndarray) else np.zeros(int(p * rate), np.int16) for p in parts])
    x = x.astype(np.float64)
    if snr_db is not None:
        speech = np.concatenate([p for p in parts if isinstance(p, np.ndarray)]).astype(np.float64)
        level = np.sqrt(np.mean(speech ** 2)) * 10 ** (-snr_db / 20)
        x += np.random.default_rng(seed).standard_normal(len(x)) * level
    else:
        x += np.random.default_rng(seed).standard_normal(len(x)) * 3.0  # line hiss, about -80 dBFS
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def run(gate: TurnGate, x: np.ndarray):
    """Feed 20 ms frames; (turns as (start s, end s, voice_end s), frames passed on, first frame index passed)."""
    n = gate.frame_len
    turns, start, passed, first = [], None, 0, None
    for k in range(len(x) // n):
        step = gate.feed(x[k * n:(k + 1) * n])
        if step.frames and first is None:
            first = k - len(step.frames) + 1
        passed += len(step.frames)
        if step.turn_start:
            start = k
        if step.turn_end:
            turns.append((start * gate.frame_s, (k + 1) * gate.frame_s, step.voice_end))
    return turns, passed, first


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("snr_db", [None, 20.0])
@pytest.mark.parametrize("pause", [0.3, 0.45, 0.5])
def test_a_pause_inside_a_sentence_never_splits_it(rate, snr_db, pause):
    for i, (a, b) in enumerate(HALVES):
        first, second = trimmed(a, rate), trimmed(b, rate)
        x = noisy([1.0, first, pause, second, 1.5], rate, snr_db, seed=i)
        end = 1.0 + (len(first) + len(second)) / rate + pause
        turns, _, _ = run(TurnGate(rate), x)
        assert len(turns) == 1, (a, b, turns)
        _, turn_end, voice_end = turns[0]
        assert end - 0.12 <= voice_end <= end + 0.06, (a, b, voice_end, end)
        assert turn_end == pytest.approx(voice_end + 0.65, abs=0.021)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_two_questions_are_two_turns_and_the_onset_is_passed_on(rate):
    first, second = trimmed(HALVES[0][0] + " " + HALVES[0][1], rate), trimmed(HALVES[1][0], rate, "south")
    x = noisy([1.0, first, 1.2, second, 1.0], rate, 20.0, seed=5)
    gate = TurnGate(rate, TurnSettings(pre_roll_ms=300))
    turns, passed, first_frame = run(gate, x)
    assert len(turns) == 2
    onset = 1.0
    assert first_frame * gate.frame_s <= onset - 0.28  # the pre-roll reaches back before the first word
    assert turns[0][0] > onset  # the onset was confirmed after it started: hence the pre-roll
    voiced = (len(first) + len(second)) / rate
    assert passed * gate.frame_s < voiced + 2 * (0.3 + 0.65 + 0.1)  # pauses and silence around are not


def test_silence_and_noise_alone_pass_nothing():
    rate = 8000
    x = noisy([3.0], rate, None, seed=1)
    turns, passed, _ = run(TurnGate(rate), x)
    assert turns == [] and passed == 0


def test_end_of_turn_is_set_per_dialogue_state():
    rate = 8000
    word = trimmed("có", rate)
    x = noisy([1.0, word, 2.0], rate, None, seed=2)
    gate = TurnGate(rate)
    gate.set_end_ms(END_MS["yes_no"])
    turns, _, _ = run(gate, x)
    assert len(turns) == 1 and turns[0][1] == pytest.approx(turns[0][2] + 0.5, abs=0.021)
    gate = TurnGate(rate)
    gate.set_end_ms(END_MS["open"])
    turns, _, _ = run(gate, x)
    assert turns[0][1] == pytest.approx(turns[0][2] + 0.8, abs=0.021)


def test_deterministic():
    rate = 16000
    x = noisy([0.5, trimmed("Tôi quên mật khẩu", rate), 0.45, trimmed("thì phải làm sao", rate), 1.0], rate, 15.0, 9)
    assert run(TurnGate(rate), x) == run(TurnGate(rate), x)


def test_flush_ends_a_turn_in_progress():
    rate = 8000
    x = noisy([0.5, trimmed("Tôi quên mật khẩu", rate)], rate, None, seed=3)
    gate = TurnGate(rate)
    run(gate, x)
    step = gate.flush()
    assert step.turn_end and step.voice_end == pytest.approx(len(x) / rate, abs=0.1)
    assert not gate.flush().turn_end


@pytest.mark.parametrize("bad", [MIN_END_MS - 1, 10_000, True, "600"])
def test_bad_end_of_turn_is_named(bad):
    with pytest.raises(IvrError, match="end of turn"):
        TurnGate(8000).set_end_ms(bad)


def test_bad_frame_is_named():
    with pytest.raises(IvrError, match="20 ms frames"):
        TurnGate(8000).feed(np.zeros(100, np.int16))



@pytest.mark.parametrize("rate", [8000, 16000])
def test_noise_that_starts_with_the_voice_is_not_taken_for_more_words(rate):
    """A line that is digital silence until the caller's audio begins, noisy from then on (a recording at
    15 dB SNR): the turn still ends ``end_ms`` after the last word, not when the noise stops."""
    speech = trimmed(HALVES[1][0] + " " + HALVES[1][1], rate)
    noisy_part = noisy([0.5, speech, 2.0], rate, 15.0, seed=8)
    x = np.concatenate([np.zeros(rate, np.int16), noisy_part])
    turns, _, _ = run(TurnGate(rate), x)
    start, end = 1.5, 1.5 + len(speech) / rate
    assert not [t for t in turns if start + 0.1 < t[1] < end]  # no turn ends inside the sentence
    assert end - 0.12 <= turns[-1][2] <= end + 0.1, (turns, end)
    assert turns[-1][1] < end + 0.8


@pytest.mark.parametrize("rate", [8000, 16000])
def test_a_pause_reaches_the_recogniser_whole_and_the_closing_quiet_only_its_hang_over(rate):
    first, second = trimmed(HALVES[2][0], rate), trimmed(HALVES[2][1], rate)
    pause = 0.45
    x = noisy([1.0, first, pause, second, 1.5], rate, None, seed=3)
    gate = TurnGate(rate, TurnSettings(pre_roll_ms=300, hang_ms=250))
    n = gate.frame_len
    released = []  # (frame index of the frame released, index of the frame it came with)
    ended = None
    for k in range(len(x) // n):
        frame = x[k * n:(k + 1) * n]
        step = gate.feed(frame)
        for f in step.frames:
            released.append(next(j for j in range(max(0, k - 80), k + 1) if np.array_equal(x[j * n:(j + 1) * n], f)))
        if step.turn_end:
            ended = (k, step.voice_end)
    assert ended is not None
    order = released
    assert order == sorted(order) and len(set(order)) == len(order)  # in order, none twice
    first_k, last_k = order[0], order[-1]
    assert order == list(range(first_k, last_k + 1))  # nothing missing: the inner pause went through whole
    voice_end_frame = round(ended[1] / gate.frame_s)
    assert last_k - voice_end_frame + 1 == pytest.approx(0.25 / gate.frame_s, abs=1)  # the hang-over, not 650 ms
    assert ended[0] - voice_end_frame + 1 == pytest.approx(0.65 / gate.frame_s, abs=1)  # the turn still ends at 650
