"""How well callers are understood through recognition errors: the matcher on the labelled sets, clean and
through the seeded Vosk-style noise channel (seed 0, as `ivr eval --noise` and
benchmarks/bench_understanding.py print them). The dev sets (eval_questions, _long, _keywords, _symptoms,
_hotline, and calls_dec since it served as a call log) were used to calibrate; the held-out sets (fresh, callers,
calls_dec2) never.

Levels are asserted a little below the measured figures in LEVELS (tolerances in the test) to absorb FAQ edits."""

import pytest

from ivr.cli.eval import load_text_set, noisy_texts
from ivr.content import paths
from ivr.language import evaluation
from ivr.language.normalize import normalize

DATA = paths.home() / "tests" / "data"

# set, noise (None = typed text): measured top-1, answered-right, wrong-outright, out-of-scope rejected
LEVELS = [
    ("eval_questions.yaml", None, 1.000, 0.941, 0.000, 1.000),
    ("eval_questions.yaml", 0.2, 0.983, 0.857, 0.000, 0.977),
    ("eval_questions_long.yaml", None, 1.000, 0.845, 0.000, 1.000),
    ("eval_questions_long.yaml", 0.2, 1.000, 0.732, 0.000, 0.960),
    ("eval_questions_keywords.yaml", 0.2, 0.973, 0.919, 0.000, 0.941),
    ("eval_questions_symptoms.yaml", None, 0.987, 0.878, 0.000, 0.972),
    ("eval_questions_symptoms.yaml", 0.2, 0.929, 0.763, 0.000, 0.889),
    ("eval_questions_hotline.yaml", None, 0.987, 0.870, 0.000, 0.943),
    ("eval_questions_hotline.yaml", 0.2, 0.937, 0.744, 0.003, 0.929),
    ("eval_questions_fresh.yaml", None, 0.962, 0.724, 0.000, 1.000),
    ("eval_questions_fresh.yaml", 0.2, 0.943, 0.543, 0.007, 0.900),
    ("eval_questions_fresh.yaml", 0.3, 0.943, 0.524, 0.000, 0.967),
    ("eval_callers.yaml", None, 0.977, 0.879, 0.004, 0.983),
    ("eval_callers.yaml", 0.2, 0.921, 0.748, 0.015, 0.914),
    ("eval_callers.yaml", 0.3, 0.911, 0.724, 0.011, 0.897),
    ("eval_calls_dec.yaml", None, 0.991, 0.862, 0.000, 0.983),
    ("eval_calls_dec.yaml", 0.2, 0.942, 0.746, 0.000, 0.983),
    ("eval_calls_dec.yaml", 0.3, 0.933, 0.674, 0.000, 0.967),
    ("eval_calls_dec2.yaml", None, 0.948, 0.757, 0.000, 0.900),
    ("eval_calls_dec2.yaml", 0.2, 0.919, 0.633, 0.000, 0.917),
    ("eval_calls_dec2.yaml", 0.3, 0.900, 0.619, 0.004, 0.900),
]


@pytest.mark.parametrize("name,noise,top1,answered,wrong,oos", LEVELS,
                         ids=[f"{n.split('.')[0]}-{'clean' if s is None else s}" for n, s, *_ in LEVELS])
def test_understanding_levels(matcher, name, noise, top1, answered, wrong, oos):
    items = load_text_set(DATA / name)
    heard = None if noise is None else noisy_texts([i.text for i in items], noise, 0)
    f = evaluation.figures(evaluation.run(matcher, items, heard), worst=0)
    print(f"\n{name} noise {noise}: top-1 {f.top1:.3f} answered-right {f.answered_right:.3f} "
          f"wrong-outright {f.wrong_outright:.3f} OOS rejected {f.oos_rejected:.3f} ranked-first {f.ranked_first:.3f}")
    assert f.top1 >= top1 - 0.02
    assert f.answered_right >= answered - 0.03
    assert f.wrong_outright <= max(0.01, wrong + 0.005)
    assert f.oos_rejected >= oos - 0.03


def test_the_noisy_sets_are_the_same_on_every_run():
    items = load_text_set(DATA / "eval_questions_fresh.yaml")
    texts = [i.text for i in items]
    assert noisy_texts(texts, 0.2, 0) == noisy_texts(texts, 0.2, 0)


def test_callers_set_is_mostly_not_faq_phrasings(faq):
    """Written from the source page before the paraphrases were read, and kept as written: 13 short calls
    ("quên mã pin", "đổi máy", "quên pass") happen to equal an FAQ keyword or paraphrase after normalisation,
    as real callers' keyword calls do. None equals an out-of-scope phrasing (those were written afterwards)."""
    phrasings = {normalize(p) for e in faq.entries for p in (e.question, *e.paraphrases, *e.keywords)}
    items = load_text_set(DATA / "eval_callers.yaml")
    assert len([i for i in items if i.expected is not None]) >= 14 * 15
    assert len([i for i in items if i.expected is None]) >= 50
    assert _out_of_scope_phrasings_among(faq, items) == []
    same = [i.text for i in items if normalize(i.text) in phrasings]
    assert len(same) <= 13 and all(len(t.split()) <= 9 for t in same), same


@pytest.mark.parametrize("name", ["eval_calls_dec.yaml", "eval_calls_dec2.yaml"])
def test_december_sets_have_the_shape_the_measure_needs(faq, name):
    """Written blind from the source page (no paraphrase, no out-of-scope phrasing, no other set read): 15-16
    calls per entry in the styles callers use, and 60 out-of-scope questions, most sharing the FAQ's words.
    calls_dec2 is held out like the callers' set; calls_dec was, until it served as the call log the
    out-of-scope data was completed from (no phrasing copies one of its questions even so)."""
    import unicodedata
    from collections import Counter

    items = load_text_set(DATA / name)
    per_entry = Counter(i.expected for i in items if i.expected is not None)
    assert sorted(per_entry) == list(range(1, 15)) and min(per_entry.values()) >= 15
    assert len([i for i in items if i.expected is None]) >= 50
    assert all(unicodedata.is_normalized("NFC", i.text) for i in items)
    assert len({i.text.lower() for i in items}) == len(items)
    # no question is word for word an out-of-scope phrasing: those were written without reading the set
    assert _out_of_scope_phrasings_among(faq, items) == []


def _out_of_scope_phrasings_among(faq, items) -> list[str]:
    """The held-out questions that equal an out-of-scope phrasing after normalisation (a leak: the matcher
    would hold the very question it is measured on)."""
    out_of_scope = {normalize(p) for g in faq.out_of_scope for p in g.phrasings}
    return [i.text for i in items if normalize(i.text) in out_of_scope]
