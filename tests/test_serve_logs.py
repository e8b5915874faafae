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
