"""Call log names on the phone: one file per call, whatever the Call-ID (SIP Call-IDs are chosen by callers)."""

from ivr.channels.calllog import CallLog, read_log


def test_call_ids_differing_in_punctuation_or_reused_get_their_own_log(tmp_path):
    ids = ["a@b.example", "a_b.example", "a@b.example", "a/b.example"]
    logs = [CallLog(tmp_path, call_id, "sip") for call_id in ids]
    for i, log in enumerate(logs):
        log.write({"t": 1.0, "type": "note", "n": i})
        log.close()
    assert len({log.path for log in logs}) == len(ids)
    for i, log in enumerate(logs):
        records = read_log(log.path)
        assert records[0]["call_id"] == ids[i] and [r.get("n") for r in records[1:]] == [i]


def _write(path, records):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_report_over_several_instances_counts_outcomes_not_unanswered_invites(tmp_path):
    from ivr.channels.calllog import report
    from ivr.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _write(a / "1.jsonl", [{"t": 0, "type": "call", "call_id": "1"}, {"t": 0, "type": "start"},
                           {"t": 5, "type": "transfer", "target": "operator"},
                           {"t": 5, "type": "transfer_outcome", "outcome": "attempted"},
                           {"t": 5.1, "type": "transfer_outcome", "outcome": "accepted"},
                           {"t": 7, "type": "transfer_outcome", "outcome": "completed"}])
    _write(b / "2.jsonl", [{"t": 0, "type": "call", "call_id": "2"}, {"t": 0, "type": "start"},
                           {"t": 3, "type": "transfer", "target": "operator"},
                           {"t": 3, "type": "transfer_outcome", "outcome": "attempted"},
                           {"t": 4, "type": "transfer_outcome", "outcome": "failed", "reason": "REFER answered 603"}])
    _write(b / "3.jsonl", [{"t": 0, "type": "call", "call_id": "3"}])  # an INVITE that never became a call
    data = report([a, b])
    assert data["calls"] == 2 and data["not_calls"] == 1
    assert (data["transfers"], data["transfers_accepted"], data["transfers_completed"],
            data["transfers_failed"]) == (2, 1, 1, 1)
    assert main(["report", str(a), str(b), "--json"]) == 0
