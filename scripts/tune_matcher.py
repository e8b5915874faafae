"""Matcher calibration figures: the FAQ's own paraphrases scored leave-one-out and the dev caller questions.

The thresholds in config/match.yaml are calibrated on these two sources only:

* **leave-one-out**: fold k drops the k-th paraphrase of every entry, and each dropped paraphrase is matched
  against the matcher built without it (a handful of rebuilds, not one per paraphrase);
* **dev**: tests/data/eval_questions.yaml (caller questions, in-domain and out-of-domain).

The fresh set tests/data/eval_questions_fresh.yaml is printed last, for reporting only: it is never used to
choose a setting. ``--grid`` sweeps the decision settings over the tuning data and prints the best rows.

    .venv/bin/python scripts/tune_matcher.py [--grid]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.content import config  # noqa: E402
from ivr.content.faq import Faq, load_faq  # noqa: E402
from ivr.language.match import Matcher  # noqa: E402

DEV = ROOT / "tests" / "data" / "eval_questions.yaml"
FRESH = ROOT / "tests" / "data" / "eval_questions_fresh.yaml"


def load_questions(path: Path) -> list[tuple[str, int | None]]:
    items = yaml.safe_load(path.read_text(encoding="utf-8"))["questions"]
    return [(q["text"], q["faq_id"]) for q in items]


def leave_one_out(faq: Faq, settings: dict) -> list[tuple[Matcher, str, int]]:
    """(matcher without the paraphrase, paraphrase, its entry) for every paraphrase of the FAQ."""
    folds = max(len(e.paraphrases) for e in faq.entries)
    out = []
    for k in range(folds):
        entries = [dataclasses.replace(e, paraphrases=tuple(p for i, p in enumerate(e.paraphrases) if i != k))
                   for e in faq.entries]
        m = Matcher(Faq(topics=list(faq.topics), entries=entries), settings)
        out += [(m, e.paraphrases[k], e.id) for e in faq.entries if k < len(e.paraphrases)]
    return out


def evaluate(pairs) -> dict:
    """Figures over (matcher, text, expected id or None) triples."""
    ind = [(m, t, i) for m, t, i in pairs if i is not None]
    ood = [(m, t, i) for m, t, i in pairs if i is None]
    top1 = answered = wrong = ranked = 0
    for m, t, i in ind:
        r = m.match(t)
        ranked += bool(r.candidates) and r.candidates[0].faq_id == i
        if r.decision != "reject" and r.faq_id == i:
            top1 += 1
            answered += r.decision == "answer"
        elif r.decision == "answer":
            wrong += 1
    rejected = wrong_ood = 0
    for m, t, _ in ood:
        d = m.match(t).decision
        rejected += d == "reject"
        wrong_ood += d == "answer"
    n, k = max(1, len(ind)), max(1, len(ood))
    return {"n": len(ind), "ood": len(ood), "top1": top1 / n, "answered": answered / n, "ranked": ranked / n,
            "wrong": wrong, "wrong_rate": wrong / n, "ood_reject": rejected / k if ood else float("nan"),
            "ood_answered": wrong_ood}


def line(name: str, f: dict) -> str:
    ood = f"; OOD rejected {f['ood_reject']:.3f} (answered {f['ood_answered']}) of {f['ood']}" if f["ood"] else ""
    return (f"{name:<14} in-domain {f['n']:>3}: top-1 {f['top1']:.3f}  answered-right {f['answered']:.3f}  "
            f"ranked-first {f['ranked']:.3f}  wrong answers {f['wrong']} ({f['wrong_rate']:.3f}){ood}")


def tuning_figures(faq: Faq, settings: dict, dev) -> tuple[dict, dict]:
    m = Matcher(faq, settings)
    return (evaluate([(m, t, i) for t, i in dev]), evaluate(leave_one_out(faq, settings)))


SCORING = {"unknown_cap": [0.0, 2.0, 4.0], "unknown_word_weight": [0.6, 0.9], "foreign_factor": [1.0, 0.5, 0.3]}
DECISION = {
    "answer_threshold": [0.65, 0.7, 0.75],
    "margin": [0.06, 0.1, 0.15],
    "confirm_threshold": [0.4, 0.48],
    "lead_threshold": [0.15, 0.2, 0.25, 0.3, 0.35],
    "lead_ratio": [1.3, 1.5, 1.8, 2.2, 3.0],
}


def _decide(top, top_id, runner_up, s) -> tuple[str, int | None]:
    if top_id is None:
        return "reject", None
    if top >= s["answer_threshold"] and top - runner_up >= s["margin"]:
        return "answer", top_id
    if top >= s["confirm_threshold"] or (top >= s["lead_threshold"] and top >= s["lead_ratio"] * runner_up):
        return "confirm", top_id
    return "reject", None


def _figures(scored, s) -> dict:
    ind = [x for x in scored if x[3] is not None]
    ood = [x for x in scored if x[3] is None]
    top1 = wrong = 0
    for top, top_id, ru, want in ind:
        d, i = _decide(top, top_id, ru, s)
        top1 += d != "reject" and i == want
        wrong += d == "answer" and i != want
    rej = sum(_decide(top, top_id, ru, s)[0] == "reject" for top, top_id, ru, _ in ood)
    return {"top1": top1 / max(1, len(ind)), "wrong_rate": wrong / max(1, len(ind)),
            "ood_reject": rej / len(ood) if ood else 1.0}


def _scored(pairs) -> list[tuple[float, int | None, float, int | None]]:
    out = []
    for m, t, want in pairs:
        c = m.scores(t)
        out.append((c[0].score if c else 0.0, c[0].faq_id if c else None, c[1].score if len(c) > 1 else 0.0, want))
    return out


def grid(faq: Faq, base: dict, dev) -> None:
    """Sweep scoring and decision settings on the tuning data (scores computed once per scoring setting)."""
    rows = []
    for sv in itertools.product(*SCORING.values()):
        s0 = {**base, **dict(zip(SCORING, sv, strict=True))}
        m = Matcher(faq, s0)
        dev_scored = _scored([(m, t, i) for t, i in dev])
        loo_scored = _scored(leave_one_out(faq, s0))
        for dv in itertools.product(*DECISION.values()):
            s = {**s0, **dict(zip(DECISION, dv, strict=True))}
            d, loo = _figures(dev_scored, s), _figures(loo_scored, s)
            worst = min(d["top1"], loo["top1"])
            ok = worst >= 0.93 and d["ood_reject"] >= 0.85 and max(d["wrong_rate"], loo["wrong_rate"]) <= 0.01
            # on the phone a reject costs a rephrase and a wrong confirm one "không": top-1 counts double
            rows.append((ok, 2 * worst + d["ood_reject"] - 5 * (d["wrong_rate"] + loo["wrong_rate"]), s, d, loo))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    keys = [*SCORING, *DECISION]
    for ok, score, s, d, loo in rows[:15]:
        print(("OK " if ok else "-- ") + " ".join(f"{k}={s[k]}" for k in keys) + f"  objective {score:.3f}  "
              f"dev top-1 {d['top1']:.3f} OOD {d['ood_reject']:.3f} wrong {d['wrong_rate']:.3f}  "
              f"loo top-1 {loo['top1']:.3f} wrong {loo['wrong_rate']:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", action="store_true", help="sweep the decision settings on the tuning data")
    ap.add_argument("--no-fresh", action="store_true", help="leave the fresh (reporting-only) set out")
    args = ap.parse_args()
    faq = load_faq()
    settings = config.load("match")
    dev = load_questions(DEV)
    if args.grid:
        grid(faq, settings, dev)
        print()
    d, loo = tuning_figures(faq, settings, dev)
    print("shipped settings (config/match.yaml)")
    print(line("dev", d))
    print(line("leave-one-out", loo))
    if not args.no_fresh and FRESH.exists():
        m = Matcher(faq, settings)
        print(line("fresh (report)", evaluate([(m, t, i) for t, i in load_questions(FRESH)])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
