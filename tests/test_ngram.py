"""The second signal of the matcher (ivr/language/ngram.py) and the decision on both signals."""

import numpy as np
import pytest

from ivr.content import config
from ivr.language.match import Matcher
from ivr.language.ngram import NgramIndex, grams


def test_grams_are_padded_word_ngrams():
    assert grams("ab") == {" a": 1, "ab": 1, "b ": 1, " ab": 1, "ab ": 1, " ab ": 1}
    assert grams("mat mat")[" mat"] == 2


def test_cosine_is_scikit_learns_char_wb_tfidf(faq):
    """Where every n-gram of the question is known (and words are 3+ letters: scikit-learn counts a shorter
    word's n-grams twice), the cosine is exactly scikit-learn's TF-IDF char_wb 2-4 cosine."""
    sklearn = pytest.importorskip("sklearn.feature_extraction.text")
    m = Matcher(faq)
    texts = [" ".join(w for w in t.split() if len(w) >= 3) for t in m.fold.texts]
    texts = [t for t in texts if t]
    index = NgramIndex(texts)
    vec = sklearn.TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, lowercase=False)
    matrix = vec.fit_transform(texts)
    for q in ("quen mat khau dang nhap", "kich hoat lai tai khoan tren thiet", texts[5], texts[40]):
        want = (matrix @ vec.transform([q]).T).toarray().ravel()
        assert np.allclose(index.cosine(q), want, atol=1e-6), q


def test_unknown_ngrams_lower_the_cosine():
    index = NgramIndex(["quen mat khau", "doi mat khau", "kich hoat"])
    plain, padded = index.cosine("quen mat khau"), index.cosine("quen mat khau xyzw")
    assert plain[0] == pytest.approx(1.0) and padded[0] < plain[0] and padded.argmax() == 0
    assert not index.cosine("").any() and not index.cosine("zzz").any()


def test_an_answer_outright_needs_both_signals_to_rank_the_entry_first(faq):
    m = Matcher(faq)  # shipped settings: answer_needs_agreement 1
    words = {9: 0.9, 6: 0.4}
    agree = m._judge(words, False, {9: 0.8, 6: 0.4})
    assert (agree.decision, agree.faq_id) == ("answer", 9)
    disagree = m._judge(words, False, {9: 0.5, 6: 0.8})
    assert (disagree.decision, disagree.faq_id) == ("confirm", 9)
    # without the agreement rule the same scores are answered
    loose = Matcher(faq, {**config.load("match"), "answer_needs_agreement": 0})
    assert loose._judge(words, False, {9: 0.5, 6: 0.8}).decision == "answer"


def test_an_answer_outright_needs_the_ngram_best_entry_clear_of_other_services(faq):
    m = Matcher(faq)
    words = {9: 0.9, 6: 0.4}
    # the caller named another service: the n-gram's best entry must beat its best out-of-scope phrasing by 0.2
    assert m._judge(words, True, {9: 0.8, 6: 0.4, -1: 0.7}).decision == "confirm"
    assert m._judge(words, True, {9: 0.8, 6: 0.4, -1: 0.5}).decision == "answer"
    # named nothing: a narrower gap (0.1)
    assert m._judge(words, False, {9: 0.8, 6: 0.4, -1: 0.65}).decision == "answer"
    assert m._judge(words, False, {9: 0.8, 6: 0.4, -1: 0.75}).decision == "confirm"


def test_the_ngram_signal_alone_does_not_lift_a_weak_question_into_a_confirmation(faq):
    """The low-score rules (clear lead, agreement) need the word matcher's own score: an n-gram cosine
    higher than a weak word score does not make it a confirmation."""
    m = Matcher(faq)
    weak = m._judge({11: 0.24, 9: 0.03}, False, {11: 0.34, 1: 0.21})
    assert weak.decision == "reject"
    assert m._judge({11: 0.27, 9: 0.03}, False, {11: 0.34, 1: 0.21}).decision == "confirm"


def test_with_no_ngram_setting_the_index_is_not_built(faq):
    off = {"ngram_weight": 0.0, "answer_needs_agreement": 0, "agree_answer_threshold": 1.01,
           "ngram_out_of_scope_gap": -1.0, "ngram_out_of_scope_gap_unnamed": -1.0, "out_of_scope_ngram_share": 0.0}
    m = Matcher(faq, {**config.load("match"), **off})
    assert m.ngram is None
    assert m.match("tôi quên mật khẩu").faq_id == 9
