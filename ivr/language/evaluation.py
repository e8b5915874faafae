"""Figures of the matcher over a labelled set of caller questions (pure: texts in, figures out).

A labelled item is ``(text, expected)`` where ``expected`` is a FAQ entry id or ``None`` (out of scope);
``hypotheses`` may carry a recogniser's n-best list instead of one text. The figures:

* top-1: in-scope questions whose right entry is answered or offered for confirmation;
* answered-right: in-scope questions answered outright with the right entry;
* ranked-first: in-scope questions whose right entry scores best (whatever the decision);
* confirm rate: in-scope questions that get a "Có phải ...?" question;
* wrong-outright: questions (in or out of scope) answered outright with a wrong entry, over all questions;
* out-of-scope rejected: out-of-scope questions rejected;
* a confusion table (expected -> decision) and the worst misses.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    text: str
    expected: int | None
    hypotheses: tuple[tuple[str, float], ...] = ()  # (text, weight) from a recogniser's n-best list
    source: str = ""  # where the item came from (a file name), for the report


@dataclass
class Outcome:
    item: Item
    heard: str  # the text matched (after the noise channel or the recogniser)
    decision: str
    faq_id: int | None
    score: float
    out_of_scope: bool
    ranked_first: int | None
    expected_score: float  # score of the expected entry (0 when it is not among the candidates)


@dataclass
class Figures:
    n_in: int = 0
    n_out: int = 0
    top1: float = 0.0
    answered_right: float = 0.0
    ranked_first: float = 0.0
    confirm_rate: float = 0.0
    wrong_outright: float = 0.0
    wrong_outright_count: int = 0
    oos_rejected: float = float("nan")
    confusion: dict[str, Counter] = field(default_factory=dict)
    worst: list[Outcome] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "in_scope": self.n_in, "out_of_scope": self.n_out, "top1": round(self.top1, 4),
            "answered_right": round(self.answered_right, 4), "ranked_first": round(self.ranked_first, 4),
            "confirm_rate": round(self.confirm_rate, 4), "wrong_outright": round(self.wrong_outright, 4),
            "wrong_outright_count": self.wrong_outright_count,
            "oos_rejected": None if self.n_out == 0 else round(self.oos_rejected, 4),
            "confusion": {k: dict(sorted(v.items())) for k, v in sorted(self.confusion.items())},
            "worst": [{"text": o.item.text, "heard": o.heard, "expected": o.item.expected, "decision": o.decision,
                       "faq_id": o.faq_id, "score": o.score, "expected_score": o.expected_score,
                       **({"source": o.item.source} if o.item.source else {})} for o in self.worst],
        }


def run(matcher, items: list[Item], heard: list[str] | None = None) -> list[Outcome]:
    """Match every item (``heard[i]`` instead of its text when given; its n-best list when it has one)."""
    out = []
    for i, item in enumerate(items):
        text = heard[i] if heard is not None else item.text
        if item.hypotheses:
            r = matcher.match_nbest(list(item.hypotheses))
        else:
            r = matcher.match(text)
        exp_score = next((c.score for c in r.candidates if c.faq_id == item.expected), 0.0)
        out.append(Outcome(item, text, r.decision, r.faq_id, float(r.score), bool(getattr(r, "out_of_scope", False)),
                           r.candidates[0].faq_id if r.candidates else None, float(exp_score)))
    return out


def figures(outcomes: list[Outcome], worst: int = 10) -> Figures:
    f = Figures()
    ind = [o for o in outcomes if o.item.expected is not None]
    ood = [o for o in outcomes if o.item.expected is None]
    f.n_in, f.n_out = len(ind), len(ood)
    n = max(1, len(ind))
    f.top1 = sum(o.decision != "reject" and o.faq_id == o.item.expected for o in ind) / n
    f.answered_right = sum(o.decision == "answer" and o.faq_id == o.item.expected for o in ind) / n
    f.ranked_first = sum(o.ranked_first == o.item.expected for o in ind) / n
    f.confirm_rate = sum(o.decision == "confirm" for o in ind) / n
    wrong = [o for o in outcomes if o.decision == "answer" and o.faq_id != o.item.expected]
    f.wrong_outright_count = len(wrong)
    f.wrong_outright = len(wrong) / max(1, len(outcomes))
    if ood:
        f.oos_rejected = sum(o.decision == "reject" for o in ood) / len(ood)
    for o in outcomes:
        row = "none" if o.item.expected is None else str(o.item.expected)
        col = "reject" if o.decision == "reject" else f"{o.decision[0]}{o.faq_id}"
        f.confusion.setdefault(row, Counter())[col] += 1

    def badness(o: Outcome) -> tuple:
        if o.item.expected is None:
            return (0 if o.decision == "answer" else 1, -o.score)
        if o.decision == "answer" and o.faq_id != o.item.expected:
            return (0, -o.score)
        if o.decision == "confirm" and o.faq_id != o.item.expected:
            return (1, -o.score)
        return (2, -(o.score - o.expected_score))

    misses = [o for o in outcomes
              if (o.item.expected is None and o.decision != "reject")
              or (o.item.expected is not None and (o.decision == "reject" or o.faq_id != o.item.expected))]
    f.worst = sorted(misses, key=badness)[:worst]
    return f
