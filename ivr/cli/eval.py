"""``ivr eval SET``: how well the IVR understands a labelled set of caller questions.

SET is a YAML file (``questions: [{text, faq_id}]``, or ``by_entry: {id: [texts]}`` with ``out_of_scope:
[texts]``), a TSV file (``text<TAB>faq id or none`` per line, ``#`` comments), or a folder of WAV recordings
with a ``manifest.yaml`` (``fixtures: [{file, faq_id}]``; ``faq_id: null`` or ``none`` is out of scope), each
transcribed with the installed Vosk model (n-best alternatives included).
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ivr.errors import IvrError

THRESHOLDS = {
    # option -> (figure, direction)
    "min_top1": ("top1", ">="), "min_answered": ("answered_right", ">="), "min_ranked": ("ranked_first", ">="),
    "max_wrong": ("wrong_outright", "<="), "min_oos_rejected": ("oos_rejected", ">="),
}

DESCRIPTION = __doc__.split("\n", 2)[2] + """
Prints top-1 (right entry answered or confirmed), answered-right, ranked-first, confirm rate, wrong-outright
(answered with a wrong entry, over all questions), out-of-scope rejection, a confusion table and the worst
misses. --noise SER passes each text through a seeded Vosk-style noise channel first (numbers and loanwords
as Vietnamese syllables, sound-alike syllable errors at rate SER).
Exit status: 0, or 1 when a given threshold is not met, 2 on bad input.
"""


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise IvrError(f"{text!r} is not a number", "give a fraction between 0 and 1, e.g. 0.9") from None
    if not 0.0 <= v <= 1.0:
        raise IvrError(f"{v:g} is outside 0..1", "give a fraction between 0 and 1, e.g. 0.9")
    return v


def register(sub) -> None:
    import argparse

    p = sub.add_parser("eval", help="measure how well questions (text or WAV) are understood",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("set", type=Path, help="labelled questions: YAML, TSV, or a folder of WAVs with manifest.yaml")
    p.add_argument("--noise", type=str, default=None, metavar="SER",
                   help="syllable error rate of the simulated recogniser (0..1; default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise channel (default 0)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--junit", type=Path, default=None, metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--dir", type=Path, default=None, help="FAQ directory (default: faq/)")
    p.add_argument("--model", default=None, help="Vosk model directory for a folder of WAVs")
    p.add_argument("--worst", type=int, default=10, help="how many worst misses to list (default 10)")
    for opt, (fig, direction) in THRESHOLDS.items():
        p.add_argument("--" + opt.replace("_", "-"), type=str, default=None, metavar="X",
                       help=f"fail (exit 1) unless {fig} {direction} X")
    p.set_defaults(func=cmd_eval)


# ----------------------------------------------------------------------------------------------- loading


def _expected(value, where: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null", "-", ""}):
        return None
    if isinstance(value, bool):
        raise IvrError(f"{where}: expected a FAQ id or none, found {value!r}", "write the entry id or none")
    try:
        v = int(str(value).strip())
    except ValueError:
        raise IvrError(f"{where}: expected a FAQ id or none, found {value!r}", "write the entry id or none") from None
    return v


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise IvrError(f"{where}: expected the question's text, found {value!r}", "write the question as text")
    return unicodedata.normalize("NFC", value.strip())


def load_text_set(path: Path):
    """Items of a YAML or TSV set."""
    from ivr.language.evaluation import Item

    if path.suffix.lower() in {".yaml", ".yml"}:
        from ivr.content.config import read_yaml

        data = read_yaml(path)
        items = []
        if isinstance(data, dict) and "questions" in data:
            qs = data["questions"]
            if not isinstance(qs, list):
                raise IvrError(f"{path}, field 'questions': expected a list", "write one '- {text: ..., faq_id: ...}' per line")
            for i, q in enumerate(qs):
                where = f"{path}, question #{i + 1}"
                if not isinstance(q, dict) or "text" not in q:
                    raise IvrError(f"{where}: expected {{text, faq_id}}", "write it as {text: \"...\", faq_id: 3}")
                items.append(Item(_text(q["text"], where), _expected(q.get("faq_id", q.get("expected")), where)))
        elif isinstance(data, dict) and ("by_entry" in data or "out_of_scope" in data):
            by_entry = data.get("by_entry") or {}
            if not isinstance(by_entry, dict):
                raise IvrError(f"{path}, field 'by_entry': expected a mapping of entry id to questions",
                               "write 'by_entry:' then '  3:' and the questions as a list")
            for key, texts in by_entry.items():
                where = f"{path}, by_entry {key}"
                fid = _expected(key, where)
                if not isinstance(texts, list):
                    raise IvrError(f"{where}: expected a list of questions", "write one '- ...' per question")
                items += [Item(_text(t, f"{where} item {i + 1}"), fid) for i, t in enumerate(texts)]
            oos = data.get("out_of_scope") or []
            if not isinstance(oos, list):
                raise IvrError(f"{path}, field 'out_of_scope': expected a list", "write one '- ...' per question")
            items += [Item(_text(t, f"{path}, out_of_scope item {i + 1}"), None) for i, t in enumerate(oos)]
        else:
            raise IvrError(f"{path}: no 'questions' or 'by_entry' list",
                           "see tests/data/eval_questions.yaml or tests/data/eval_callers.yaml for the format")
    elif path.suffix.lower() in {".tsv", ".txt"}:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise IvrError(f"{path}: not UTF-8 text", "save the file as UTF-8") from None
        items = []
        first = True
        for n, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise IvrError(f"{path}, line {n}: expected 'question<TAB>faq id or none', found {len(parts)} field(s)",
                               "separate the question and the expected entry with one tab")
            if first and parts[1].strip().lower() in {"faq_id", "expected"}:
                first = False
                continue  # header
            first = False
            items.append(Item(_text(parts[0], f"{path}, line {n}"), _expected(parts[1], f"{path}, line {n}")))
    else:
        raise IvrError(f"{path}: unknown set format {path.suffix or '(no extension)'}",
                       "give a .yaml or .tsv file, or a folder of WAVs with manifest.yaml")
    if not items:
        raise IvrError(f"{path}: no questions", "add labelled questions to the set")
    return items


def load_wav_set(folder: Path) -> list[tuple[Path, int | None]]:
    from ivr.content.config import read_yaml

    manifest = folder / "manifest.yaml"
    data = read_yaml(manifest, "write manifest.yaml: fixtures: [{file: a.wav, faq_id: 3}, ...]")
    rows = data.get("fixtures") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise IvrError(f"{manifest}: expected 'fixtures:' with a list of {{file, faq_id}}",
                       "write one '- {file: a.wav, faq_id: 3}' per recording")
    out = []
    for i, row in enumerate(rows):
        where = f"{manifest}, fixture #{i + 1}"
        if not isinstance(row, dict) or "file" not in row:
            raise IvrError(f"{where}: expected {{file, faq_id}}", "name the WAV file and its expected entry")
        if row.get("kind", "question") != "question" or ("faq_id" not in row and "expected" not in row):
            continue  # key-press or silence recordings carry no question
        wav = folder / str(row["file"])
        if not wav.is_file():
            raise IvrError(f"{where}: {wav} does not exist", "fix the file name or add the recording")
        out.append((wav, _expected(row.get("faq_id", row.get("expected")), where)))
    if not out:
        raise IvrError(f"{manifest}: no labelled question recordings", "add fixtures with a faq_id")
    return out


def transcribe_items(rows, model_path: str | None):
    """Transcribe each WAV with the installed model: one Item per recording, with its n-best list."""
    from ivr.language.evaluation import Item
    from ivr.media import asr
    from ivr.media.audio import read_audio

    model = asr.load_model(asr.resolve_model_path(model_path))
    items = []
    for wav, expected in rows:
        samples, rate = read_audio(wav)
        rec = asr.Recognizer(model, rate)
        finals = []
        step = max(1, rate // 50)
        for i in range(0, len(samples), step):
            ev = rec.feed(samples[i:i + step])
            if ev is not None and ev.kind == "final":
                finals.append(ev)
        finals.append(rec.finish())
        finals = [e for e in finals if e.text]
        text = " ".join(e.text for e in finals)
        hyps: tuple = ()
        if len(finals) == 1 and finals[0].alternatives:
            hyps = tuple((a.text, a.weight) for a in finals[0].alternatives)
        items.append(Item(text, expected, hyps, source=wav.name))
    return items


# ----------------------------------------------------------------------------------------------- output


def _print_report(name: str, f, out, faq) -> None:
    oos = "-" if f.n_out == 0 else f"{f.oos_rejected:.3f}"
    print(f"set: {name}  ({f.n_in} in scope, {f.n_out} out of scope)", file=out)
    print(f"top-1 {f.top1:.3f}  answered-right {f.answered_right:.3f}  ranked-first {f.ranked_first:.3f}  "
          f"confirm {f.confirm_rate:.3f}  wrong-outright {f.wrong_outright:.3f} ({f.wrong_outright_count})  "
          f"out-of-scope rejected {oos}", file=out)
    print("confusion (expected -> a<id> answered, c<id> confirmed, reject):", file=out)
    for row in sorted(f.confusion, key=lambda r: (r == "none", int(r) if r.isdigit() else 0)):
        cells = "  ".join(f"{k}:{v}" for k, v in sorted(f.confusion[row].items(), key=lambda kv: -kv[1]))
        print(f"  {row:>4}  {cells}", file=out)
    if f.worst:
        print("worst misses:", file=out)
        for o in f.worst:
            exp = "none" if o.item.expected is None else o.item.expected
            got = o.decision if o.faq_id is None else f"{o.decision} {o.faq_id}"
            heard = f"  (heard: {o.heard})" if o.heard != o.item.text else ""
            src = f" [{o.item.source}]" if o.item.source else ""
            print(f"  expected {exp}, got {got} ({o.score:.2f}): {o.item.text}{heard}{src}", file=out)


def _junit(path: Path, name: str, f, failures: list[str]) -> None:
    cases = []
    for fig, _direction in THRESHOLDS.values():
        value = getattr(f, fig)
        msg = next((m for m in failures if m.startswith(fig + " ")), None)
        body = f"<failure message={quoteattr(msg)}>{escape(msg)}</failure>" if msg else ""
        cases.append(f'  <testcase classname="ivr.eval" name={quoteattr(f"{name}: {fig} = {value:.4f}")}>{body}</testcase>')
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name={quoteattr("ivr eval " + name)} '
           f'tests="{len(cases)}" failures="{len(failures)}">\n' + "\n".join(cases) + "\n</testsuite>\n")
    try:
        path.write_text(xml, encoding="utf-8")
    except OSError as exc:
        raise IvrError(f"cannot write {path} ({exc.strerror})", "give a writable path to --junit") from None


def evaluate_set(set_path: Path, *, noise: float | None = None, seed: int = 0, faq_dir=None, model=None,
                 matcher=None):
    """(items, heard texts, outcomes) for one set."""
    from ivr.content.faq import load_faq
    from ivr.language import evaluation
    from ivr.language.match import Matcher

    if not set_path.exists():
        raise IvrError(f"{set_path} does not exist", "give a YAML/TSV set or a folder of WAVs with manifest.yaml")
    if set_path.is_dir():
        items = transcribe_items(load_wav_set(set_path), model)
    else:
        items = load_text_set(set_path)
    if matcher is None:
        matcher = Matcher(load_faq(faq_dir))
    heard = None
    if noise is not None:
        heard = noisy_texts([i.text for i in items], noise, seed)
    return items, heard, evaluation.run(matcher, items, heard)


def noisy_texts(texts: list[str], ser: float, seed: int) -> list[str]:
    """Each text through the seeded noise channel (one channel per set, in order: deterministic)."""
    from ivr.language.noise import NoiseChannel, vosk_style

    vocab = sorted({w for t in texts for w in vosk_style(t).split()})
    channel = NoiseChannel(ser, seed, vocab)
    return [channel.corrupt(t) for t in texts]


def cmd_eval(args) -> int:
    from ivr.language import evaluation

    noise = None if args.noise is None else _fraction(args.noise)
    limits = {}
    for opt in THRESHOLDS:
        value = getattr(args, opt)
        if value is not None:
            limits[opt] = _fraction(value)
    if args.worst < 0:
        raise IvrError(f"--worst {args.worst} is negative", "give 0 or more")
    items, heard, outcomes = evaluate_set(args.set, noise=noise, seed=args.seed, faq_dir=args.dir, model=args.model)
    f = evaluation.figures(outcomes, worst=args.worst)
    failures = []
    for opt, limit in limits.items():
        fig, direction = THRESHOLDS[opt]
        value = getattr(f, fig)
        ok = value >= limit if direction == ">=" else value <= limit
        if fig == "oos_rejected" and f.n_out == 0:
            ok = False
        if not ok:
            failures.append(f"{fig} {value:.4f} is not {direction} {limit:g}")
    name = str(args.set) + (f" (noise {noise:g}, seed {args.seed})" if noise is not None else "")
    if args.json:
        obj = {"set": str(args.set), "noise": noise, "seed": args.seed if noise is not None else None,
               **f.as_dict(), "failures": failures}
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    else:
        _print_report(name, f, sys.stdout, None)
        for m in failures:
            print(f"FAILED: {m}", file=sys.stdout)
    if args.junit is not None:
        _junit(args.junit, name, f, failures)
    return 1 if failures else 0
