"""``ivr ask`` (match a question against the FAQ) and ``ivr faq check`` (validate the FAQ files).

Only rapidfuzz and PyYAML are imported, inside the handlers, so that ``ivr ask`` starts quickly.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path

from ivr.errors import IvrError

MAX_ALTERNATIVES = 3


def register(sub) -> None:
    ask = sub.add_parser(
        "ask",
        help="match a caller's question to the FAQ and show the answer",
        description="Match a question to the FAQ. Without a question, read one question per line from stdin.",
    )
    ask.add_argument("question", nargs="?", help="the caller's question (omit to read lines from stdin)")
    ask.add_argument("--json", action="store_true",
                     help="one JSON object per question (per line of stdin), flushed as each is matched")
    ask.add_argument("--dir", type=Path, default=None, help="FAQ directory (default: faq/)")
    ask.set_defaults(func=cmd_ask)

    faq = sub.add_parser("faq", help="FAQ tools", description="Tools for the FAQ files.")
    faq_sub = faq.add_subparsers(dest="faq_command", metavar="FAQ_COMMAND")
    check = faq_sub.add_parser("check", help="validate the FAQ files and print a summary")
    check.add_argument("--dir", type=Path, default=None, help="FAQ directory (default: faq/)")
    check.set_defaults(func=cmd_faq_check)
    faq.set_defaults(func=lambda args: (faq.print_help(), 2)[1])


def result_object(question: str, result, faq) -> dict:
    """The JSON shape of one match (also used by other tools that report matches); the question is echoed
    with identity numbers masked."""
    from ivr.core.privacy import mask_text

    answer = faq.by_id(result.faq_id).answer if result.faq_id is not None else None
    alternatives = [c for c in result.candidates if c.faq_id != result.faq_id][:MAX_ALTERNATIVES]
    return {
        "question": mask_text(question),
        "decision": result.decision,
        "faq_id": result.faq_id,
        "score": round(float(result.score), 4),
        "out_of_scope": bool(getattr(result, "out_of_scope", False)),
        "answer": answer,
        "alternatives": [{"faq_id": c.faq_id, "score": round(float(c.score), 4)} for c in alternatives],
    }


def _print_readable(question: str, result, faq, out) -> None:
    from ivr.core.privacy import mask_text

    print(f"question: {mask_text(question)}", file=out)
    print(f"decision: {result.decision}   score: {result.score:.3f}", file=out)
    if result.faq_id is not None:
        entry = faq.by_id(result.faq_id)
        print(f"matched:  [{entry.id}] {entry.question}", file=out)
        print("answer:", file=out)
        for line in entry.answer.splitlines():
            print(f"  {line}", file=out)
    elif getattr(result, "out_of_scope", False):
        print("matched:  nothing: out of scope (a question this line does not handle; see faq/out_of_scope.yaml)",
              file=out)
    else:
        print("matched:  nothing (the caller goes to the keypad menu)", file=out)
    alternatives = [c for c in result.candidates if c.faq_id != result.faq_id][:MAX_ALTERNATIVES]
    if alternatives:
        print("alternatives:", file=out)
        for c in alternatives:
            print(f"  {c.score:.3f}  [{c.faq_id}] {faq.by_id(c.faq_id).question}", file=out)


def _lines(stream):
    for raw in stream:
        yield unicodedata.normalize("NFC", raw.rstrip("\r\n"))


def cmd_ask(args) -> int:
    from ivr.content.faq import load_faq
    from ivr.language.match import Matcher

    faq = load_faq(args.dir)
    matcher = Matcher(faq)
    out = sys.stdout
    if args.question is not None:
        questions = [unicodedata.normalize("NFC", args.question)]
    else:
        if sys.stdin is None or (sys.stdin.isatty() and not args.json):
            raise IvrError("no question given", 'ask one: ivr ask "tôi quên mật khẩu", or pipe questions into stdin')
        if hasattr(sys.stdin, "reconfigure"):
            sys.stdin.reconfigure(encoding="utf-8", errors="replace")
        questions = _lines(sys.stdin)
    first = True
    for question in questions:
        result = matcher.match(question)
        if args.json:
            out.write(json.dumps(result_object(question, result, faq), ensure_ascii=False) + "\n")
        else:
            if not first:
                out.write("\n")
            _print_readable(question, result, faq, out)
        first = False
        out.flush()
    return 0


def cmd_faq_check(args) -> int:
    from ivr.content.faq import load_faq
    from ivr.language.match import Matcher

    faq = load_faq(args.dir)
    Matcher(faq)  # the FAQ is only usable with the matcher's settings (config/match.yaml): check them too
    files = sorted({str(e.source) for e in faq.entries})
    print(f"FAQ OK: {len(faq.entries)} entries, {len(faq.topics)} topics, from {', '.join(files)}")
    print("topics (keypad key, id, entries):")
    for t in faq.topics:
        entries = faq.entries_for_topic(t.id)
        print(f"  {t.key}  {t.id:<12} {len(entries):>3}  {t.label}")
    print("entries (id, topic, paraphrases, keywords, question):")
    for e in faq.entries:
        q = e.question if len(e.question) <= 70 else e.question[:69] + "…"
        print(f"  {e.id:>3}  {e.topic:<12} {len(e.paraphrases):>3} {len(e.keywords):>3}  {q}")
    thin = [e.id for e in faq.entries if not e.paraphrases]
    if thin:
        print(f"note: entries without paraphrases (callers' wordings match less well): {thin}")
    print("(the FAQ part only: `ivr check` validates the prompts, menu and settings files too)")
    return 0
