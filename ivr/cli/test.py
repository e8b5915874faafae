"""``ivr test FILE_OR_DIR... [--junit FILE.xml]``: conversation test cases (see ivr.channels.conversation)."""

from __future__ import annotations

import sys
from pathlib import Path

from ivr.errors import IvrError


def register(sub) -> None:
    p = sub.add_parser(
        "test", help="run conversation test cases (YAML) through the real call flow; exit 1 if any fails",
        description="Run scripted calls (a YAML list of cases with turns: caller say/keys/silence/audio, "
                    "expect answer/confirm/prompt/transfer/hangup/no_match) through the call flow in virtual "
                    "time. Exit 0 when all pass, 1 when any fails, 2 when a file is malformed.",
    )
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="test files, or directories of *.yaml")
    p.add_argument("--junit", metavar="FILE.xml", help="also write the results as JUnit XML")
    p.add_argument("--model", metavar="PATH|none",
                   help="Vosk model for `audio` turns (default: the installed model, found as `ivr call` finds "
                        "it; without one, cases with an audio turn are skipped). `say` turns need no model")
    p.add_argument("--log-dir", metavar="DIR", help="keep the call logs here (default: not logged)")
    p.add_argument("--verbose", "-v", action="store_true", help="print every turn's events of failing cases")
    p.set_defaults(func=cmd_test)


def cmd_test(args) -> int:
    from ivr.channels.conversation import case_files, junit_xml, known_ids, load_cases, run_case
    from ivr.channels.resources import speech_model
    from ivr.channels.session import Resources

    files = case_files(args.paths)
    junit = Path(args.junit) if args.junit else None
    if junit is not None and junit.parent and not junit.parent.exists():
        raise IvrError(f"--junit {junit}: the directory {junit.parent} does not exist", "create it or give another path")
    model_path, speech_note = speech_model(args.model)  # a --model that is not a model: exit 2 before any case
    resources = Resources.load(tts_rate=8000, speech=False)
    faq_ids, prompt_ids = known_ids(resources)
    cases = [c for f in files for c in load_cases(f, faq_ids, prompt_ids)]  # every file checked before any runs
    if any(c.needs_speech for c in cases):  # the model is loaded only for audio turns (it takes seconds)
        if model_path is not None:
            from ivr.media.asr import load_model

            resources.model, resources.model_path = load_model(model_path), model_path
        resources.speech_note = speech_note
    results = []
    for case in cases:
        r = run_case(case, resources, log_dir=args.log_dir)
        results.append(r)
        if r.skipped:
            print(f"SKIP  {case.file}: {case.name}: {r.skipped}")
        elif r.passed:
            print(f"PASS  {case.file}: {case.name} ({len(case.turns)} turns, {r.call_seconds:.1f} s of call)")
        else:
            print(f"FAIL  {case.file}: {case.name}")
            for line in r.failures:
                print(f"      {line}")
            if args.verbose:
                for e in r.events:
                    print(f"      | {e}")
        sys.stdout.flush()
    failed = sum(r.failed for r in results)
    skipped = sum(bool(r.skipped) for r in results)
    print(f"-- {len(results) - failed - skipped} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    if junit is not None:
        try:
            junit.write_text(junit_xml(results), encoding="utf-8")
        except OSError as exc:
            raise IvrError(f"--junit {junit}: cannot write it ({exc.strerror or exc})", "give a writable path") from None
    return 1 if failed else 0
