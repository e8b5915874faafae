"""The call log: one JSON-lines file per call, written and flushed event by event, and the report over them.

``CallLog(log_dir, call_id, channel)`` appends ``{"t": seconds, "type": ..., ...}`` records to
``<log_dir>/<call_id>.jsonl`` (a new file for every call: ``<call_id>-2.jsonl`` ... when the name is taken). Each line is flushed as it is written, so a crash loses nothing already
logged. The default directory is ``logs/`` under the product's home (``IVR_LOG_DIR`` moves it).

Personal numbers never reach the file: a run of 6 or more digits (an identity card or phone number), in
figures or as spoken Vietnamese digit words, is masked in every text; and keys typed quickly one after
another (gaps under ``run_gap`` seconds) are held back until the run ends, so that a run of 6 or more
digit keys is written masked. Held-back lines are written when the run ends (another kind of input, a
pause, or the end of the call): at most the keys still being typed wait in memory.

``report(log_dir)`` summarises a directory of logs, or several (``ivr report DIR1 DIR2``): unanswered
questions with counts, answers per FAQ entry, calls, transfers asked for and their outcome (records
``transfer_outcome`` with ``outcome`` attempted / accepted / completed / failed, written by the phone
channel), mean call length. A truncated last line (a crash mid-write) is
skipped.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from ivr.core.privacy import MASK, MIN_RUN, RUN_GAP, UNMASKED_FIELDS, is_key, mask, mask_keys, mask_text
from ivr.errors import IvrError

__all__ = ["MASK", "MIN_RUN", "UNMASKED_FIELDS", "CallLog", "default_log_dir", "mask", "mask_text", "read_log",
           "report", "report_text", "safe_name"]

ENV_LOG_DIR = "IVR_LOG_DIR"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_log_dir() -> Path:
    """``$IVR_LOG_DIR``, else ``logs/`` under the product's home."""
    from ivr.content import paths

    env = os.environ.get(ENV_LOG_DIR)
    return Path(env) if env else paths.home() / "logs"


def safe_name(call_id: str) -> str:
    """A file name for ``call_id`` (SIP call ids carry '@' and other characters)."""
    import unicodedata

    # fold letters to ASCII first ("tiếng việt" -> "tieng_viet"), so only true symbols become "_"
    folded = unicodedata.normalize("NFD", str(call_id).replace("đ", "d").replace("Đ", "D"))
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    name = _UNSAFE_NAME.sub("_", folded).strip("._") or "call"
    return name[:120]


def _create_unique(directory: Path, name: str):
    """A new file ``<name>.jsonl`` in ``directory``, or ``<name>-2.jsonl`` ... when that name is taken (two
    Call-IDs that differ only in punctuation, or one Call-ID used twice): one call never writes into
    another's log."""
    for n in range(1, 10000):
        path = directory / (f"{name}.jsonl" if n == 1 else f"{name}-{n}.jsonl")
        try:
            return path, open(path, "x", encoding="utf-8")  # noqa: SIM115 - kept open for the call
        except FileExistsError:
            continue
    raise OSError(f"too many logs named {name}")


class CallLog:
    """One call's log file. ``write(record)`` with ``record["t"]`` and ``record["type"]``; ``close()``."""

    def __init__(self, log_dir: Path | str, call_id: str, channel: str = "", run_gap: float = RUN_GAP):
        self.dir = Path(log_dir)
        self.run_gap = run_gap
        self.path = self.dir / f"{safe_name(call_id)}.jsonl"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.path, self._fh = _create_unique(self.dir, safe_name(call_id))
        except OSError as exc:
            raise IvrError(f"cannot write the call log {self.path} ({exc.strerror or exc})",
                           f"make {self.dir} writable, or choose another directory (--log-dir or "
                           f"{ENV_LOG_DIR})") from None
        self._held: list[dict] = []  # lines waiting while a run of keys is being typed
        self._run_digits = 0
        self._last_key_t: float | None = None
        self.closed = False
        from datetime import datetime

        at = datetime.now().astimezone().isoformat(timespec="seconds")  # wall clock: calls per hour of day
        self.write({"t": 0.0, "type": "call", "call_id": str(call_id), "channel": channel, "at": at})

    def write(self, record: dict) -> None:
        if self.closed:
            return
        t = float(record.get("t", 0.0))
        if self._held and self._last_key_t is not None and t - self._last_key_t > self.run_gap:
            self._release()
        if is_key(record):
            if self._last_key_t is not None and t - self._last_key_t > self.run_gap:
                self._release()
            self._run_digits += 1
            self._last_key_t = t
            self._held.append(dict(record))
            return
        if record.get("type") in ("heard", "hangup"):
            self._release()  # other input ends a run of keys
        if self._held:
            self._held.append(dict(record))
            return
        self._emit(record)

    def tick(self, t: float) -> None:
        """Write held lines once the run of keys has paused long enough."""
        if self._held and self._last_key_t is not None and t - self._last_key_t > self.run_gap:
            self._release()

    def _release(self) -> None:
        sensitive = self._run_digits >= MIN_RUN
        for rec in self._held:
            if sensitive and is_key(rec):
                rec["digit"] = MASK
            self._emit(rec, mask_digits=sensitive)
        self._held = []
        self._run_digits = 0
        self._last_key_t = None

    def _emit(self, record: dict, mask_digits: bool = False) -> None:
        rec = mask(record)
        if mask_digits:  # the keys, and the dialogue's echoes of them ("digit", "invalid" keys...), of the run
            mask_keys(rec)
        try:
            self._fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            self._fh.flush()
        except (OSError, ValueError):  # a full disk must not end the call
            pass

    def close(self) -> None:
        if self.closed:
            return
        self._release()
        self.closed = True
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except (OSError, ValueError):
            pass
        self._fh.close()


# --- reading and the report ---------------------------------------------------------------------------------


def read_log(path: Path | str) -> list[dict]:
    """The records of one log file; a damaged line (a crash mid-write) is skipped."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


LENGTH_BUCKETS = (30, 60, 120, 300, 600)  # seconds: upper edges of the call-length histogram (the last is open)


def _length_bucket(seconds: float) -> str:
    lo = 0
    for hi in LENGTH_BUCKETS:
        if seconds < hi:
            return f"{lo}-{hi}s"
        lo = hi
    return f"{lo}s+"


def _started(records: list[dict], path: Path, length: float):
    """When the call began (a datetime): the ``at`` of its first record, else the file's mtime less its length."""
    from datetime import datetime, timedelta

    for rec in records[:3]:
        at = rec.get("at")
        if isinstance(at, str):
            try:
                return datetime.fromisoformat(at)
            except ValueError:
                break
    try:
        return datetime.fromtimestamp(path.stat().st_mtime).astimezone() - timedelta(seconds=length)
    except OSError:
        return None


def _recording_of(records: list[dict], path: Path) -> str | None:
    """The call's recording: a ``recording`` record's ``path``, else ``<log name>.wav`` beside the log."""
    for rec in records:
        if rec.get("type") == "recording" and isinstance(rec.get("path"), str):
            p = Path(rec["path"])
            return str(p if p.is_absolute() else path.parent / p)
    wav = path.with_suffix(".wav")
    return str(wav) if wav.exists() else None


def report(log_dir: Path | str | list) -> dict[str, Any]:
    """Figures over every ``*.jsonl`` call log in ``log_dir`` (one directory or a list of them: the logs
    of several ``ivr serve`` instances). A log holding nothing but its header line is no call (a call that
    was never answered) and is not counted.

    Besides the counts of ``ivr report``: ``contained`` (calls that got an answer and never went to the
    operator), ``answers_via`` (keys, voice, confirm_voice, confirm_keys), ``confirmations`` (offered,
    accepted, refused), ``no_match_calls``/``no_input_calls`` (calls with at least one), ``transfers_failed``
    and ``transfers_handed_over`` (a transfer not followed by ``transfer_failed`` in the same call),
    ``calls_by_hour`` (hour of day the call began, 0-23), ``call_lengths`` (histogram, ``LENGTH_BUCKETS``),
    and ``unanswered_examples``: for each unanswered question up to three (log file, time in the call, the
    call's recording if there is one).
    """
    dirs = [Path(d) for d in log_dir] if isinstance(log_dir, list | tuple) else [Path(log_dir)]
    if not dirs:
        raise IvrError("no log directory given", "give the directory the calls were logged in")
    files: list[Path] = []
    for d in dirs:
        if not d.exists():
            raise IvrError(f"log directory {d} does not exist", "give the directory the calls were logged in")
        if not d.is_dir():
            raise IvrError(f"{d} is a file, not a log directory",
                           "give the directory holding the *.jsonl call logs")
        files += sorted(d.glob("*.jsonl"))
    unanswered: Counter[str] = Counter()
    examples: dict[str, list[dict]] = {}
    answers: Counter[int] = Counter()
    via: Counter[str] = Counter()
    by_hour: Counter[int] = Counter()
    length_hist: Counter[str] = Counter()
    lengths: list[float] = []
    outcomes: Counter[str] = Counter()
    not_calls = 0
    transfers = errors = calls = contained = 0
    no_match = no_input = no_match_calls = no_input_calls = 0
    offered = refused = failed = handed_over = 0
    skipped: list[str] = []  # files that hold no call log (unreadable, or no valid line at all)
    for path in files:
        try:
            records = read_log(path)
        except OSError:
            records = []
        if not records:
            skipped.append(path.name)
            continue
        if all(rec.get("type") == "call" for rec in records):
            not_calls += 1
            continue
        calls += 1
        last_t = 0.0
        answered = transferred = False
        call_no_match = call_no_input = 0
        call_examples: list[dict] = []
        pending_transfer = False
        for rec in records:
            kind = rec.get("type")
            try:
                last_t = max(last_t, float(rec.get("t", 0.0)))
            except (TypeError, ValueError):
                pass
            if kind == "answer" and rec.get("faq_id") is not None:
                answers[int(rec["faq_id"])] += 1
                via[str(rec.get("via") or "unknown")] += 1
                answered = True
            elif kind == "no_match":
                no_match += 1
                call_no_match += 1
                if rec.get("text"):
                    text = unicodedata.normalize("NFC", str(rec["text"]))
                    unanswered[text] += 1
                    ex = examples.setdefault(text, [])
                    if len(ex) < 3:
                        ex.append({"log": str(path), "t": rec.get("t"), "recording": None})
                        call_examples.append(ex[-1])
            elif kind == "no_input":
                no_input += 1
                call_no_input += 1
            elif kind == "confirm":
                offered += 1
            elif kind == "denied":
                refused += 1
            elif kind == "transfer":
                transfers += 1
                transferred = True
                if pending_transfer:
                    handed_over += 1
                pending_transfer = True
            elif kind == "transfer_failed":
                failed += 1
                pending_transfer = False
            elif kind == "transfer_outcome" and rec.get("outcome") in ("accepted", "completed", "failed"):
                outcomes[str(rec["outcome"])] += 1
            elif kind == "error":
                errors += 1
        if pending_transfer:
            handed_over += 1
        contained += int(answered and not transferred)
        no_match_calls += int(call_no_match > 0)
        no_input_calls += int(call_no_input > 0)
        lengths.append(last_t)
        length_hist[_length_bucket(last_t)] += 1
        started = _started(records, path, last_t)
        if started is not None:
            by_hour[started.hour] += 1
        if call_examples:
            recording = _recording_of(records, path)
            for ex in call_examples:
                ex["recording"] = recording
    buckets = [_length_bucket(hi - 1) for hi in LENGTH_BUCKETS] + [_length_bucket(LENGTH_BUCKETS[-1])]
    return {
        "calls": calls,
        "transfers": transfers,  # attempts: the caller asked for a person
        "transfers_accepted": outcomes["accepted"],  # the PBX took the REFER
        "transfers_completed": outcomes["completed"],  # the operator leg answered
        # failed: the transfer_outcome records, or (older logs) the transfer_failed events
        "transfers_failed": outcomes["failed"] if outcomes else failed,
        "not_calls": not_calls,  # logs of calls never answered (older versions wrote them)
        "log_dirs": [str(d) for d in dirs],
        "errors": errors,
        "mean_call_seconds": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        "answers": {str(k): v for k, v in sorted(answers.items())},
        "unanswered": [{"text": text, "count": n} for text, n in unanswered.most_common()],
        "unanswered_examples": {text: examples.get(text, []) for text, _n in unanswered.most_common()},
        "skipped_files": skipped,
        "contained": contained,
        "answers_via": dict(sorted(via.items())),
        "confirmations": {"offered": offered, "accepted": sum(n for v, n in via.items() if v.startswith("confirm_")),
                          "refused": refused},
        "no_match": no_match,
        "no_match_calls": no_match_calls,
        "no_input": no_input,
        "no_input_calls": no_input_calls,
        "transfers_handed_over": handed_over,
        "calls_by_hour": {str(h): by_hour.get(h, 0) for h in range(24)},
        "call_lengths": {b: length_hist.get(b, 0) for b in buckets},
    }


def report_text(data: dict[str, Any], faq=None) -> str:
    """The report for people."""
    lines = [
        f"calls: {data['calls']}   transfers to an operator: {data['transfers']} asked, "
        f"{data.get('transfers_completed', 0)} completed, {data.get('transfers_failed', 0)} failed   "
        f"mean call length: {data['mean_call_seconds']:.1f} s   errors: {data['errors']}",
    ]
    if "contained" in data:  # figures of the analytics page (absent from summaries made elsewhere)
        calls = data["calls"] or 1
        via = data.get("answers_via", {})
        conf = data.get("confirmations", {})
        voice = sum(via.get(v, 0) for v in ("voice", "confirm_voice", "confirm_keys"))  # a spoken question
        lines += [
            f"contained (answered, no operator): {data['contained']} ({100 * data['contained'] / calls:.0f} %)   "
            f"calls with a no-match: {data['no_match_calls']} ({100 * data['no_match_calls'] / calls:.0f} %)   "
            f"with a no-input: {data['no_input_calls']} ({100 * data['no_input_calls'] / calls:.0f} %)",
            f"answers by voice: {voice}   by keys: {via.get('keys', 0)}   confirmations offered: "
            f"{conf.get('offered', 0)}, accepted: {conf.get('accepted', 0)}, refused: {conf.get('refused', 0)}   "
            f"transfers failed: {data.get('transfers_failed', 0)}",
        ]
    lines += [
        "",
        "answers given per FAQ entry:",
    ]
    if not data["answers"]:
        lines.append("  (none)")
    for faq_id, n in data["answers"].items():
        label = ""
        if faq is not None:
            try:
                label = "  " + faq.by_id(int(faq_id)).question[:70]
            except Exception:
                label = ""
        lines.append(f"  FAQ {faq_id:>3}: {n:4d}{label}")
    lines += ["", "unanswered questions (not understood), most asked first:"]
    if not data["unanswered"]:
        lines.append("  (none)")
    for item in data["unanswered"]:
        lines.append(f"  {item['count']:4d} x {item['text']}")
    if data.get("skipped_files"):
        lines += ["", f"skipped {len(data['skipped_files'])} file(s) holding no call log: "
                  + ", ".join(data["skipped_files"])]
    return "\n".join(lines)
