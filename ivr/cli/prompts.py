"""``ivr prompts status`` (which sentences are recorded, their levels and problems) and ``ivr prompts script``
(the recording script for a voice talent). ``ivr prompts render`` lives in ``ivr.cli.say``.

See ``ivr.media.recordings`` for file names, the conversion and how an out-of-date recording is told.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ivr.errors import IvrError


def register_actions(psub) -> None:
    """Add ``status`` and ``script`` to the ``ivr prompts`` sub-parser."""
    s = psub.add_parser("status", help="every prompt and answer: recorded or TTS, length, level, warnings",
                        description="List every sentence the IVR can say: recorded (prompts/audio/) or "
                                    "synthesised, its length and loudness, and what is wrong with a recording "
                                    "(clipped, too quiet, far longer than its text, older than its text).")
    s.add_argument("--dir", metavar="DIR", help="recordings directory (default: prompts/audio or "
                   "$IVR_RECORDINGS_DIR)")
    s.add_argument("--rate", type=int, default=8000, metavar="HZ", help="rate the lengths are measured at "
                   "(default 8000, the phone line)")
    s.add_argument("--no-tts", action="store_true", help="do not synthesise the unrecorded ones to measure them")
    s.add_argument("--json", action="store_true", help="print the rows as JSON")
    s.set_defaults(func=cmd_status)

    c = psub.add_parser("script", help="the recording script for a voice talent (id, file, text, spoken form)",
                        description="Write the recording script: one row per sentence with its id, the WAV file "
                                    "name to save it as, the exact text to read, and its spoken form (numbers "
                                    "and abbreviations written out as they should be said).")
    c.add_argument("--out", metavar="FILE.csv", help="write CSV here (default: print CSV)")
    c.add_argument("--missing", action="store_true", help="only the sentences not recorded yet")
    c.add_argument("--dir", metavar="DIR", help="recordings directory (for --missing)")
    c.set_defaults(func=cmd_script)


def _resources():
    from ivr.channels.session import Resources

    return Resources.load(model_path="none", tts_rate=8000)


def expected_seconds(text: str) -> float:
    """How long ``text`` takes said at a calm pace (``WORDS_PER_SECOND``), from its spoken form."""
    from ivr.language.spoken import spoken_form
    from ivr.media.recordings import WORDS_PER_SECOND

    return len(spoken_form(text).split()) / WORDS_PER_SECOND


def status_rows(resources, directory=None, rate: int = 8000, tts: bool = True) -> tuple[list[dict], list[str]]:
    """One row per sentence, and the names of WAV files that stand for no sentence."""
    from ivr.channels.voice import recordings_for
    from ivr.media.audio import to_float
    from ivr.media.recordings import (
        LONG_FACTOR,
        LONG_SLACK_S,
        QUIET_LUFS,
        RecordedVoice,
        analyse,
        loudness_lufs,
        peak_dbfs,
    )

    recs = recordings_for(resources, directory)
    synth = resources.tts.tts if isinstance(resources.tts, RecordedVoice) else resources.tts
    rows = []
    for item in recs.items.values():
        row = {"id": item.id, "file": item.file_name, "voice": "tts", "seconds": None, "lufs": None,
               "peak_dbfs": None, "warnings": list(item.notes)}
        expected = expected_seconds(item.text)
        if item.path is not None:
            row["voice"] = "recorded" if item.playable else "tts (recording out of date)"
            try:
                info, _y, _r = analyse(item.path)
            except Exception as exc:  # a damaged file: say so, go on with the others
                row["voice"] = "tts (recording unreadable)"
                why = exc.problem if isinstance(exc, IvrError) else f"{type(exc).__name__}: {exc}"
                row["warnings"].append(f"unreadable: {why}")
                info = None
            if info is not None:
                row.update(seconds=round(info.seconds, 2), lufs=_num(info.lufs), peak_dbfs=_num(info.peak_dbfs),
                           gain_db=_num(info.gain_db))
                if info.clipped:
                    row["warnings"].append(f"clipped ({info.clipped} run(s) at full scale)")
                if info.lufs < QUIET_LUFS:
                    row["warnings"].append(f"too quiet ({_fmt(info.lufs)} LUFS; below {QUIET_LUFS:.0f})")
                if info.seconds > LONG_FACTOR * expected + LONG_SLACK_S:
                    row["warnings"].append(f"far longer than its text suggests ({info.seconds:.1f} s for about "
                                           f"{expected:.1f} s of words)")
            if item.out_of_date:
                row["warnings"].append(f"out of date: {item.path.with_suffix('.txt').name} holds another text "
                                       "(not played; record the current text)")
            elif item.older_than_text:
                row["warnings"].append(f"older than its text ({item.source.name} changed after it was recorded)")
        elif tts:
            audio = synth.get(item.text, rate)
            f = to_float(audio).astype("float64")
            row.update(seconds=round(len(audio) / rate, 2), lufs=_num(loudness_lufs(f, rate)),
                       peak_dbfs=_num(peak_dbfs(f)))
        rows.append(row)
    return rows, [p.name for p in recs.unknown]


def _check_dir(directory) -> None:
    if directory is not None and not Path(directory).is_dir():
        raise IvrError(f"--dir {directory}: not a directory", "give the directory holding the recordings (*.wav)")


def _num(x: float) -> float | None:
    import math

    return round(float(x), 1) if math.isfinite(x) else None


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def cmd_status(args) -> int:
    from ivr.media.tts import check_rate

    rate = check_rate(args.rate)
    _check_dir(args.dir)
    resources = _resources()
    rows, unknown = status_rows(resources, args.dir, rate, tts=not args.no_tts)
    if args.json:
        print(json.dumps({"rows": rows, "unknown_files": unknown}, ensure_ascii=False, indent=2))
        return 0
    recorded = sum(1 for r in rows if r["voice"] == "recorded")
    width = max(len(r["id"]) for r in rows)
    print(f"{'id':<{width}}  {'voice':<9} {'sec':>6} {'LUFS':>6} {'peak':>6}  warnings")
    for r in rows:
        voice = r["voice"] if len(r["voice"]) <= 9 else "tts*"
        print(f"{r['id']:<{width}}  {voice:<9} {_fmt(r['seconds']):>6} {_fmt(r['lufs']):>6} "
              f"{_fmt(r['peak_dbfs']):>6}  {'; '.join(r['warnings'])}")
    for name in unknown:
        print(f"{name}: no prompt or answer has this id (see `ivr prompts script` for the file names)")
    warned = sum(1 for r in rows if r["warnings"])
    print(f"-- {recorded} of {len(rows)} recorded; {warned} with warnings; levels of recordings as delivered "
          "(they are brought to the loudness target when played); tts* = a recording is there but not used")
    return 0


def cmd_script(args) -> int:
    from ivr.channels.voice import recordings_for
    from ivr.language.spoken import spoken_form

    _check_dir(args.dir)
    recs = recordings_for(_resources(), args.dir)
    rows = [(i.id, i.file_name, i.text, spoken_form(i.text)) for i in recs.items.values()
            if not (args.missing and i.playable)]
    out = Path(args.out) if args.out else None
    if out is not None and out.parent and not out.parent.exists():
        raise IvrError(f"--out {out}: the directory {out.parent} does not exist", "create it or give another path")
    header = ("id", "file", "text", "spoken")
    if out is None:
        w = csv.writer(sys.stdout)
        w.writerow(header)
        w.writerows(rows)
        return 0
    try:
        with open(out, "w", encoding="utf-8-sig", newline="") as fh:  # the BOM lets spreadsheets see UTF-8
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
    except OSError as exc:
        raise IvrError(f"--out {out}: cannot write it ({exc.strerror or exc})", "give a writable path") from None
    print(f"{out}: {len(rows)} sentences to record; save each as {recs.directory}/<file>, and its text as "
          "<file without .wav>.txt beside it")
    return 0
