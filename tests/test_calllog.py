"""Call log files, masking of personal numbers, and `ivr report` over real call logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivr.channels.calllog import MASK, CallLog, mask_text, read_log, report
from ivr.cli import main

CALLS = Path(__file__).parent / "fixtures" / "calls"


@pytest.mark.parametrize("text,kept,gone", [
    ("số căn cước của tôi là 001203004567", "số căn cước của tôi là", "001203004567"),
    ("gọi 0912 345 678 giúp tôi", "giúp tôi", "0912 345 678"),
    ("số là không chín một hai ba bốn năm", "số là", "không chín một hai"),
    ("mã 12345 thôi", "mã 12345 thôi", None),  # five digits stay
    ("tôi có một hai câu hỏi", "tôi có một hai câu hỏi", None),
])
def test_mask_text(text, kept, gone):
    masked = mask_text(text)
    assert kept in masked
    if gone:
        assert gone not in masked and MASK in masked
    else:
        assert masked == text


def test_lines_are_flushed_as_written_and_key_runs_masked(tmp_path):
    log = CallLog(tmp_path, "c1", "sip")
    log.write({"t": 0.5, "type": "heard", "text": "alo"})
    assert json.loads(log.path.read_text(encoding="utf-8").splitlines()[-1])["text"] == "alo"  # on disk now
    for i, d in enumerate("0912345678"):
        log.write({"t": 1.0 + 0.4 * i, "type": "key", "digit": d, "via": "tone"})
        log.write({"t": 1.0 + 0.4 * i, "type": "digit", "digit": d})
    log.tick(10.0)  # the run has paused: written, masked
    recs = read_log(log.path)
    assert [r["digit"] for r in recs if r["type"] in ("key", "digit")] == [MASK] * 20
    log.write({"t": 11.0, "type": "key", "digit": "3"})
    log.write({"t": 14.0, "type": "key", "digit": "1"})
    log.close()
    keys = [r["digit"] for r in read_log(log.path) if r["type"] == "key"]
    assert keys[-2:] == ["3", "1"]
    assert "0912345678" not in log.path.read_text(encoding="utf-8")


def test_the_start_time_is_kept_while_a_typed_number_is_masked(tmp_path):
    """The header's wall-clock "at" is the log's own record (calls per hour read it), never a caller's digits;
    a caller's number in the same log is still masked."""
    from datetime import datetime

    log = CallLog(tmp_path, "call-at")
    log.write({"t": 1.0, "type": "no_match", "text": "số căn cước 001203004567"})
    log.close()
    header, rec = read_log(log.path)[:2]
    assert datetime.fromisoformat(header["at"]).year >= 2024
    assert "001203004567" not in rec["text"] and MASK in rec["text"]


def test_unwritable_log_dir_is_a_clear_error(tmp_path):
    from ivr.errors import IvrError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(IvrError, match="cannot write the call log"):
        CallLog(blocker / "logs", "c")


def _write(path: Path, records: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + tail, encoding="utf-8")


def test_report_counts_and_tolerates_a_truncated_last_line(tmp_path):
    _write(tmp_path / "a.jsonl", [
        {"t": 0, "type": "call"}, {"t": 3, "type": "no_match", "text": "máy in bị kẹt giấy"},
        {"t": 5, "type": "answer", "faq_id": 9}, {"t": 20, "type": "hangup", "by": "ivr"}])
    _write(tmp_path / "b.jsonl", [
        {"t": 0, "type": "call"}, {"t": 2, "type": "no_match", "text": "máy in bị kẹt giấy"},
        {"t": 4, "type": "answer", "faq_id": 9}, {"t": 6, "type": "answer", "faq_id": 3},
        {"t": 10, "type": "transfer", "target": "operator"}], tail='{"t": 12, "type": "hang')
    data = report(tmp_path)
    assert data["calls"] == 2 and data["transfers"] == 1
    assert data["answers"] == {"3": 1, "9": 2}
    assert data["unanswered"] == [{"text": "máy in bị kẹt giấy", "count": 2}]
    assert data["mean_call_seconds"] == 15.0


def test_report_over_simulated_calls(capsys, tmp_path):
    logs = tmp_path / "logs"
    for name in ("keys_topic2_password.wav", "operator.wav", "invalid_key.wav"):
        assert main(["call", str(CALLS / name), "--model", "none", "--log-dir", str(logs), "--json"]) == 0
    capsys.readouterr()
    assert main(["report", str(logs), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["calls"] == 3 and data["transfers"] == 1
    assert data["answers"] == {"3": 1, "6": 2, "9": 1}
    assert main(["report", str(logs)]) == 0
    text = capsys.readouterr().out
    assert "calls: 3" in text and "FAQ   6:    2" in text


def test_report_on_missing_dir_is_exit_2(capsys, tmp_path):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_call_ids_are_kept_while_what_callers_say_is_masked(tmp_path):
    call_id = "1-3237345@127.0.0.1"  # a SIP Call-ID full of digits
    log = CallLog(tmp_path, call_id, channel="sip")
    log.write({"t": 1.0, "type": "heard", "text": "số căn cước 012345678901", "call_id": call_id})
    log.close()
    records = read_log(log.path)
    assert records[0]["call_id"] == call_id and records[1]["call_id"] == call_id
    assert "012345678901" not in records[1]["text"] and MASK in records[1]["text"]


def test_chat_is_logged_like_a_call_and_reported(tmp_path, monkeypatch, capsys):
    import io

    from ivr.cli import main

    logs = tmp_path / "logs"
    monkeypatch.setattr("sys.stdin", io.StringIO(
        "quên mật khẩu\n3\nmật khẩu wifi nhà tôi là 012345678901\n"))
    assert main(["chat", "--log-dir", str(logs)]) == 0
    (path,) = logs.glob("chat-*.jsonl")
    records = read_log(path)
    assert records[0]["channel"] == "chat"
    assert [r["faq_id"] for r in records if r["type"] == "answer"] == [9]
    assert [r["digit"] for r in records if r["type"] == "key"] == ["3"]  # typed keys are logged
    data = report(logs)
    assert data["calls"] == 1 and data["answers"] == {"9": 1}
    (unanswered,) = data["unanswered"]
    assert unanswered["text"].startswith("mật khẩu wifi nhà tôi là ")
    assert "012345678901" not in unanswered["text"] and MASK in unanswered["text"]  # a number is masked
    assert "012345678901" not in path.read_text(encoding="utf-8")


def test_report_names_files_that_hold_no_call_log(tmp_path):
    log = CallLog(tmp_path, "c1", channel="file")
    log.write({"t": 1.0, "type": "answer", "faq_id": 9})
    log.close()
    (tmp_path / "junk.jsonl").write_bytes(b"\x00\xffnot json\n")
    data = report(tmp_path)
    assert data["calls"] == 1 and data["skipped_files"] == ["junk.jsonl"]
    from ivr.channels.calllog import report_text

    assert "junk.jsonl" in report_text(data)
