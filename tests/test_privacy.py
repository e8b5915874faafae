"""No output shows an identity number typed or spoken by a caller: ``ivr call`` (--json, the transcript, the
call log), ``ivr report``, ``ivr chat`` (stdout, --verbose, its log) and ``ivr answer --json``. The kiosk
display is checked in test_kiosk.py, the records themselves in test_call.py. Real engines: the DTMF
receiver hears real keypad tones."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ivr.cli import main
from ivr.media.audio import write_wav
from ivr.media.dtmf import generate

ROOT = Path(__file__).resolve().parent.parent
TYPED = "912345678"  # an identity number typed on the keypad, at the main menu


def key_fields(text: str) -> list[str]:
    """Every value of a "digit" or "keys" field in JSON text."""
    return re.findall(r'"(?:digit|keys)": "([^"]*)"', text)


def assert_no_typed_digits(text: str) -> None:
    for value in key_fields(text):
        assert not re.search(r"\d", value), value
    assert not re.search(r"pressed \d|invalid key \d|\[phím \d", text)
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', text) if text.lstrip().startswith("{") else text.splitlines()
    windows = [TYPED[i:i + 6] for i in range(len(TYPED) - 5)]
    for value in strings:  # no string (or line) spells 6 digits of the number, whatever stands between them
        digits = re.sub(r"\D", "", value)
        assert not any(w in digits for w in windows), value


@pytest.fixture(scope="module")
def typed_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("privacy") / "typed.wav"
    pcm = np.concatenate([np.zeros(8000, np.int16), generate(TYPED, 8000, tone_ms=100, gap_ms=100),
                          np.zeros(3 * 8000, np.int16)])
    write_wav(path, pcm, 8000)
    return path


def test_ivr_call_json_transcript_log_and_report_mask_a_typed_number(typed_wav, tmp_path, capsys):
    logs = tmp_path / "logs"
    assert main(["call", str(typed_wav), "--json", "--model", "none", "--log-dir", str(logs)]) == 0
    out = capsys.readouterr().out
    events = json.loads(out)["events"]
    keys = [e for e in events if e["type"] == "key"]
    assert len(keys) == len(TYPED)  # every key was heard ...
    assert {e["type"] for e in events if "digit" in e or "keys" in e} >= {"key", "digit", "invalid"}
    assert_no_typed_digits(out)  # ... and none is readable, nor the dialogue's echoes of them

    assert main(["call", str(typed_wav), "--model", "none", "--log-dir", str(logs)]) == 0
    transcript = capsys.readouterr().out
    assert transcript.count("caller pressed •") == len(TYPED) and "[invalid key •]" in transcript
    assert_no_typed_digits(transcript)

    logged = "".join(p.read_text(encoding="utf-8") for p in logs.glob("*.jsonl"))
    assert logged.count('"type": "key"') == 2 * len(TYPED)
    assert_no_typed_digits(logged)

    for extra in ([], ["--json"]):
        assert main(["report", str(logs), *extra]) == 0
        assert_no_typed_digits(capsys.readouterr().out)


def test_ivr_chat_masks_a_typed_and_a_spoken_number_in_stdout_verbose_and_log(tmp_path):
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "ivr", "chat", "--verbose", "--log-dir", str(tmp_path)],
        input=f"{TYPED}\nsố của tôi là không chín một hai ba bốn năm sáu\n", capture_output=True, text=True,
        encoding="utf-8", cwd=ROOT, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    logged = "".join(p.read_text(encoding="utf-8") for p in tmp_path.glob("*.jsonl"))
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert len([r for r in records if r["type"] == "key"]) == len(TYPED)
    for text in (proc.stdout, proc.stderr, logged):
        assert_no_typed_digits(text)
        assert "không chín một" not in text
    assert "Bạn: •••••••••" in proc.stdout


def test_ivr_answer_json_masks_a_typed_number(typed_wav, capsys):
    assert main(["answer", str(typed_wav), "--json", "--model", "none"]) == 0
    captured = capsys.readouterr()
    obj = json.loads(captured.out)
    assert obj["digits"] == "•" * len(TYPED)
    assert not re.search(r"\d{6}", captured.out + captured.err)
    assert main(["answer", str(typed_wav), "--model", "none"]) == 0
    assert not re.search(r"\d{6}", capsys.readouterr().out)


def test_ivr_ask_echoes_the_question_masked(capsys):
    question = "tôi quên mật khẩu, số căn cước 012345678901"
    assert main(["ask", question, "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["question"] == "tôi quên mật khẩu, số căn cước ••••••••••••"
    assert main(["ask", question]) == 0
    assert "012345" not in capsys.readouterr().out
