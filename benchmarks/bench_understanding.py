"""Understanding under recognition errors: the matcher beside two baselines, on the labelled sets, at 0, 10,
20 and 30 % syllable error rate (the Vosk-style noise channel, ivr/language/noise.py, seed 0).

Sets: dev (tests/data/eval_questions.yaml), long and keywords (tests/data/eval_questions_long.yaml,
eval_questions_keywords.yaml: long chatty questions and few-word calls) and symptoms
(eval_questions_symptoms.yaml: callers describing what happens in their own words, regional wording) and hotline
(eval_questions_hotline.yaml: written from the source page alone, the style of the held-out sets); the matcher was
calibrated on these five. Dec (tests/data/eval_calls_dec.yaml): written blind and held out for two measurements,
then used as a call log (the out-of-scope categories it showed missing are listed now): a dev set since.
Fresh (tests/data/eval_questions_fresh.yaml), callers (tests/data/eval_callers.yaml) and dec2
(tests/data/eval_calls_dec2.yaml): held out, written from the source page alone, never used to tune.

How the held-out figures are judged (fixed before the dec set was first measured): at 20 % syllable errors,
the mean over ten noise seeds (0..9, ``--draws 10``) is the figure compared with the targets; seed 0's row
and the worst seed are printed beside it. Clean text has no draws.
"clean" is the typed text; 0 % is the same text as the recogniser writes it (lower case, numbers and
loanwords as Vietnamese syllables) without errors.

Baselines, given the same phrasings (FAQ questions, paraphrases, keywords and the out-of-scope phrasings;
a best match on an out-of-scope phrasing is a reject):
* rapidfuzz: the best ``fuzz.token_set_ratio`` over all phrasings (lower-cased text);
* tfidf: cosine similarity of TF-IDF character 2-4-grams (scikit-learn), best phrasing per entry.
Their answer/confirm thresholds are chosen on the dev set (clean and 20 % noise) like the matcher's: the most
top-1 with at most 1 % wrong outright answers.

Prints one row per (set, noise, system): top-1, answered-right, wrong-outright, out-of-scope rejected. Then,
for the matcher at 20 %, the same figures over ``--draws`` noise seeds (mean, and the worst seed's): one draw
of a set's 30-70 out-of-scope questions moves the rejection rate 1.5-3.5 points per question, so the mean
over draws is the steadier estimate of what callers get. Asserts nothing.

    .venv/bin/python benchmarks/bench_understanding.py [--sets dev,fresh,callers] [--noise 0,0.1,0.2,0.3]
                                                       [--draws 10]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ivr.cli.eval import load_text_set, noisy_texts  # noqa: E402
from ivr.content.faq import load_faq  # noqa: E402
from ivr.language import evaluation  # noqa: E402
from ivr.language.match import Candidate, Matcher, MatchResult  # noqa: E402

SETS = {
    "dev": ROOT / "tests" / "data" / "eval_questions.yaml",
    "long": ROOT / "tests" / "data" / "eval_questions_long.yaml",
    "keywords": ROOT / "tests" / "data" / "eval_questions_keywords.yaml",
    "symptoms": ROOT / "tests" / "data" / "eval_questions_symptoms.yaml",
    "hotline": ROOT / "tests" / "data" / "eval_questions_hotline.yaml",
    "fresh": ROOT / "tests" / "data" / "eval_questions_fresh.yaml",
    "callers": ROOT / "tests" / "data" / "eval_callers.yaml",
    "dec": ROOT / "tests" / "data" / "eval_calls_dec.yaml",
    "dec2": ROOT / "tests" / "data" / "eval_calls_dec2.yaml",
}


def phrasings(faq) -> tuple[list[str], list[int | None]]:
    texts, owners = [], []
    for e in faq.entries:
        for t in (e.question, *e.paraphrases, *e.keywords):
            texts.append(t)
            owners.append(e.id)
    for g in faq.out_of_scope:
        for t in g.phrasings:
            texts.append(t)
            owners.append(None)
    return texts, owners


def _lower(text: str) -> str:
    return unicodedata.normalize("NFC", text).lower()


class Baseline:
    """Best phrasing score per entry -> answer / confirm / reject with two thresholds."""

    answer = 0.9
    confirm = 0.6

    def entry_scores(self, text: str) -> tuple[dict[int, float], float]:
        raise NotImplementedError

    def match(self, text: str) -> MatchResult:
        scores, oos = self.entry_scores(text)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        cands = [Candidate(o, round(v, 4)) for o, v in ranked if v > 0]
        if not cands or oos >= cands[0].score:
            return MatchResult("reject", None, cands[0].score if cands else 0.0, cands, out_of_scope=bool(cands))
        top = cands[0]
        if top.score >= self.answer:
            return MatchResult("answer", top.faq_id, top.score, cands)
        if top.score >= self.confirm:
            return MatchResult("confirm", top.faq_id, top.score, cands)
        return MatchResult("reject", None, top.score, cands)

    def match_nbest(self, hyps):
        return self.match(hyps[0][0])


class RapidfuzzBaseline(Baseline):
    name = "rapidfuzz"

    def __init__(self, faq):
        self.texts, self.owners = phrasings(faq)
        self.texts = [_lower(t) for t in self.texts]

    def entry_scores(self, text):
        from rapidfuzz import fuzz, process

        best: dict[int, float] = {}
        oos = 0.0
        for _, score, i in process.extract(_lower(text), self.texts, scorer=fuzz.token_set_ratio, limit=None):
            o, v = self.owners[i], score / 100.0
            if o is None:
                oos = max(oos, v)
            elif v > best.get(o, 0.0):
                best[o] = v
        return best, oos


class TfidfBaseline(Baseline):
    name = "tfidf"

    def __init__(self, faq):
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts, self.owners = phrasings(faq)
        self.vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
        self.matrix = self.vec.fit_transform([_lower(t) for t in texts])

    def entry_scores(self, text):
        sims = (self.matrix @ self.vec.transform([_lower(text)]).T).toarray().ravel()
        best: dict[int, float] = {}
        oos = 0.0
        for o, v in zip(self.owners, sims, strict=True):
            if o is None:
                oos = max(oos, float(v))
            elif v > best.get(o, 0.0):
                best[o] = float(v)
        return best, oos


def calibrate(system: Baseline, items) -> None:
    """The baseline's thresholds from the dev set, clean and at 20 % noise (seed 1001, not the report's)."""
    texts = [i.text for i in items] + noisy_texts([i.text for i in items], 0.2, 1001)
    labels = [i.expected for i in items] * 2
    scored = []
    for t, want in zip(texts, labels, strict=True):
        scores, oos = system.entry_scores(t)
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        top_id, top = ranked[0] if ranked else (None, 0.0)
        scored.append((top_id, top, oos, want))
    best = None
    grid = [x / 100 for x in range(20, 101, 5)] + [1.01]  # 1.01: never answer
    for a, c in itertools.product(grid, grid):
        if c > a:
            continue
        top1 = wrong = 0
        for top_id, top, oos, want in scored:
            if top_id is None or oos >= top or top < c:
                continue
            if top >= a and top_id != want:
                wrong += 1
            if want is not None and top_id == want:
                top1 += 1
        # the most top-1 with at most 1 % wrong answers; when no threshold gets there, the fewest wrong
        key = (wrong <= 0.01 * len(scored), -wrong if wrong > 0.01 * len(scored) else 0, top1, a, c)
        if best is None or key > best:
            best = key
    system.answer, system.confirm = best[3], best[4]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="dev,long,keywords,symptoms,hotline,fresh,callers,dec,dec2")
    ap.add_argument("--noise", default="clean,0,0.1,0.2,0.3")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--draws", type=int, default=10, help="noise seeds for the matcher's 20 %% figures (0: none)")
    args = ap.parse_args()
    faq = load_faq()
    dev = load_text_set(SETS["dev"])
    systems = [Matcher(faq), RapidfuzzBaseline(faq), TfidfBaseline(faq)]
    for s in systems[1:]:
        calibrate(s, dev)
        print(f"# {s.name} thresholds from dev: answer >= {s.answer:.2f}, confirm >= {s.confirm:.2f}")
    print(f"{'set':<8} {'noise':>5}  {'system':<10} {'top-1':>6} {'answered':>8} {'wrong':>6} "
          f"{'OOS-rej':>7} {'ranked':>6}  {'ms/q':>5}")
    for name in args.sets.split(","):
        items = load_text_set(SETS[name])
        for level in args.noise.split(","):
            heard = None if level == "clean" else noisy_texts([i.text for i in items], float(level), args.seed)
            for system in systems:
                t0 = time.perf_counter()
                outcomes = evaluation.run(system, items, heard)
                ms = (time.perf_counter() - t0) * 1000 / len(items)
                f = evaluation.figures(outcomes, worst=0)
                label = getattr(system, "name", "matcher")
                print(f"{name:<8} {level:>5}  {label:<10} {f.top1:6.3f} {f.answered_right:8.3f} "
                      f"{f.wrong_outright:6.3f} {f.oos_rejected:7.3f} {f.ranked_first:6.3f}  {ms:5.2f}")
        print()
    if args.draws > 0:
        draws(systems[0], args.sets.split(","), args.seed, args.draws)


def draws(matcher, names: list[str], seed: int, n: int, noise: float = 0.2) -> None:
    print(f"matcher at {noise:.0%} syllable errors over {n} noise seeds ({seed}..{seed + n - 1}): mean (worst seed)")
    print(f"{'set':<8} {'top-1':>13} {'answered':>13} {'wrong':>13} {'OOS-rej':>13}")
    for name in names:
        items = load_text_set(SETS[name])
        rows = []
        for k in range(seed, seed + n):
            f = evaluation.figures(evaluation.run(matcher, items, noisy_texts([i.text for i in items], noise, k)),
                                   worst=0)
            rows.append((f.top1, f.answered_right, f.wrong_outright, f.oos_rejected))
        cols = list(zip(*rows, strict=True))
        worst = [min(c) for c in cols[:2]] + [max(cols[2]), min(cols[3])]
        print(f"{name:<8} " + " ".join(f"{sum(c) / len(c):6.3f} ({w:.3f})" for c, w in zip(cols, worst, strict=True)))


if __name__ == "__main__":
    main()
