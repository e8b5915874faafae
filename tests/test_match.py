import re
from pathlib import Path

import pytest
import yaml

from ivr.content import config, paths
from ivr.content.faq import Faq, FaqEntry, Topic, load_faq
from ivr.language.match import HINTS, NAMES, Candidate, Matcher, MatchResult, yes_no
from ivr.language.normalize import normalize

# the word matcher alone (no character n-gram signal): for tests of how its own scores and rules behave
WORDS_ONLY = {"ngram_weight": 0.0, "answer_needs_agreement": 0, "agree_answer_threshold": 1.01,
              "ngram_out_of_scope_gap": -1.0, "ngram_out_of_scope_gap_unnamed": -1.0,
              "out_of_scope_ngram_share": 0.0}

EVAL_FILE = paths.home() / "tests" / "data" / "eval_questions.yaml"  # dev: used to calibrate
FRESH_FILE = paths.home() / "tests" / "data" / "eval_questions_fresh.yaml"  # never used to calibrate


@pytest.mark.parametrize(
    "text,faq_id",
    [
        ("quên mã PIN", 3),
        ("quên mật khẩu", 9),
        ("đổi mật khẩu", 6),
        ("máy không có sinh trắc học", 7),
        ("bật khuôn mặt mà vẫn đòi sinh trắc học", 5),
        ("alo cho em hỏi em quên mk app smartca rồi ạ", 9),
        ("quen mat khau", 9),
        ("doi mat khau tren app", 6),
        ("dùng hai thiết bị cho một tài khoản được không", 8),
        ("mail kích hoạt quá bốn mươi tám tiếng", 11),
        ("kiểm tra thời hạn chứng thư số", 10),
        ("mail kích hoạt quá bốn tám tiếng rồi", 11),
        ("không nhớ pass smartca", 9),
        ("quên mã pin code", 3),
    ],
)
def test_confusable_questions_go_to_the_right_entry(matcher, text, faq_id):
    result = matcher.match(text)
    assert result.faq_id == faq_id, result
    assert result.decision in ("answer", "confirm")


@pytest.mark.parametrize(
    "text",
    ["mật khẩu wifi", "mất ví tiền", "kiểm tra số dư tài khoản ngân hàng", "xin chào", "alo alo",
     "quên mật khẩu facebook", "đổi mật khẩu zalo", "quen mat khau wifi"],
)
def test_out_of_domain_is_rejected(matcher, text):
    result = matcher.match(text)
    assert result.decision == "reject", result
    assert result.faq_id is None


@pytest.mark.parametrize("text", ["", "   ", "?!?", "ạ", "dạ vâng", "zzzz qqqq", "123", "\x00", "a" * 5000, None, 42])
def test_empty_or_garbage_is_rejected_without_error(matcher, text):
    result = matcher.match(text)
    assert result.decision == "reject" and result.faq_id is None
    assert 0.0 <= result.score <= 1.0


def test_result_shape(matcher, faq):
    result = matcher.match("tôi quên mật khẩu thì làm sao")
    assert isinstance(result, MatchResult) and result.decision == "answer" and result.faq_id == 9
    assert all(isinstance(c, Candidate) for c in result.candidates)
    ids = [c.faq_id for c in result.candidates]
    assert len(ids) == len(set(ids)), "one candidate per entry"
    assert set(ids) <= {e.id for e in faq.entries}
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert result.score == result.candidates[0].score


def test_the_source_questions_answer_themselves(matcher, faq):
    for e in faq.entries:
        result = matcher.match(e.question)
        assert (result.decision, result.faq_id) == ("answer", e.id), (e.id, result)


def test_thresholds_drive_the_decision(faq):
    text = "quên mật khẩu"
    strict = Matcher(faq, {"answer_threshold": 1.01, "confirm_threshold": 0.3, "margin": 0.0})
    assert strict.match(text).decision == "confirm" and strict.match(text).faq_id == 9
    none = Matcher(faq, {"answer_threshold": 1.01, "confirm_threshold": 1.01})
    assert none.match(text).decision == "reject" and none.match(text).faq_id is None
    loose = Matcher(faq, {"answer_threshold": 0.0, "confirm_threshold": 0.0, "margin": 0.0})
    assert loose.match(text).decision == "answer"


def two_entry_faq(first: str, second: str) -> Faq:
    """A two-entry FAQ whose questions are ``first`` and ``second`` (no paraphrases, no keywords)."""
    def entry(i: int, question: str) -> FaqEntry:
        return FaqEntry(id=i, topic="t", question=question, answer=f"Trả lời {i}.", paraphrases=(), keywords=(),
                        spoken=None, source=Path("test.yaml"))

    return Faq(topics=[Topic("t", "Chủ đề", "1")], entries=[entry(1, first), entry(2, second)])


def test_margin_turns_a_close_call_into_confirm():
    # the same question in two entries: both score the same, a margin of 0, so never answered outright
    twins = two_entry_faq("Quên mã PIN thì làm sao?", "Quên mã PIN thì làm sao?")
    result = Matcher(twins, {"answer_threshold": 0.0, "margin": 0.05}).match("quên mã PIN thì làm sao")
    assert [c.faq_id for c in result.candidates][:2] in ([1, 2], [2, 1])
    assert result.candidates[0].score == result.candidates[1].score
    assert result.decision == "confirm", result
    # the control: with no margin required, the same tie is answered
    assert Matcher(twins, {"answer_threshold": 0.0, "margin": 0.0}).match("quên mã PIN thì làm sao").decision == "answer"


def test_a_clear_leader_over_the_margin_is_answered():
    # the caller's words are one entry's question; the other shares none of them
    clear = Matcher(two_entry_faq("Quên mã PIN thì làm sao?", "Gia hạn chứng thư số ở đâu?"),
                    {"answer_threshold": 0.0, "margin": 0.05})
    result = clear.match("quên mã PIN thì làm sao")
    assert (result.decision, result.faq_id) == ("answer", 1), result


def test_a_clearly_leading_entry_is_confirmed_not_rejected(faq):
    # a long chatty sentence: many words the FAQ never uses, so a moderate score, but far ahead of the rest
    text = "dạ điện thoại cũ của em bị mất cắp rồi em mua máy mới thì kích hoạt lại tài khoản kiểu gì chị"
    # (scored without unmatched_cap, so that the sentence's length dilutes its score)
    m = Matcher(faq, {**config.load("match"), "confirm_threshold": 0.48, "lead_threshold": 0.3, "lead_ratio": 1.5,
                      "answer_lead_threshold": 1.01, "unmatched_cap": 0.0, **WORDS_ONLY})
    top, runner_up = m.scores(text)[:2]
    assert top.faq_id == 3 and top.score < m.confirm_threshold, top
    assert top.score >= m.lead_threshold and top.score >= m.lead_ratio * runner_up.score
    assert m.match(text).decision == "confirm" and m.match(text).faq_id == 3
    no_lead = Matcher(faq, {**m.settings, "lead_ratio": 1e9})
    assert no_lead.match(text).decision == "reject"


def test_a_long_chatty_question_is_scored_by_its_best_matching_content(faq):
    """The caller's words a phrasing leaves unexplained saturate (unmatched_cap): a rambling question keeps the
    score of what it asks, while a short question scores as before."""
    chatty = ("chị ơi cho em hỏi là hôm qua em mới đổi điện thoại mới xong giờ em không đăng nhập được vào cái "
              "app ký số nữa thì phải làm sao")
    short = "quên mã pin thì làm sao"
    settings = {**config.load("match"), **WORDS_ONLY}
    capped = Matcher(faq, {**settings, "unmatched_cap": 4.0})
    diluted = Matcher(faq, {**settings, "unmatched_cap": 0.0})
    top, runner_up = capped.scores(chatty)[:2]
    assert top.faq_id == 3 and top.score > 1.4 * runner_up.score, (top, runner_up)
    assert top.score > diluted.scores(chatty)[0].score + 0.1
    assert capped.match(chatty).decision != "reject" and capped.match(chatty).faq_id == 3
    assert abs(capped.scores(short)[0].score - diluted.scores(short)[0].score) < 0.05
    # an unrelated long question still shares too little with any entry to be taken
    unrelated = "alo chị ơi cho em hỏi là nhà em ở quận ba mấy hôm nay trời mưa to quá thì có sao không"
    assert capped.match(unrelated).decision == "reject"


TWO_ENTRIES = (
    "topics:\n  - id: t\n    label: T\nentries:\n"
    "  - {id: 1, topic: t, question: 'Quên mật khẩu?', answer: 'A'}\n"
    "  - {id: 2, topic: t, question: 'Đổi số điện thoại?', answer: 'B'}\n"
)


def _two_entries_and(tmp_path, phrasings: list[str], label: str = "Khác"):
    """The two-entry FAQ of the out-of-scope tests, with one out-of-scope group of ``phrasings``."""
    quoted = ", ".join(f"'{p}'" for p in phrasings)
    (tmp_path / "a.yaml").write_text(
        TWO_ENTRIES + f"out_of_scope:\n  - label: {label}\n    phrasings: [{quoted}]\n", encoding="utf-8")
    return load_faq(tmp_path)


def _halving_and_plain(faq) -> tuple[Matcher, Matcher]:
    """A matcher where naming another service halves every entry's score, and the same without the factor."""
    settings = {"out_of_scope_word_factor": 0.5, "out_of_scope_floor": 0.0, "out_of_scope_margin": -1.0}
    return Matcher(faq, settings), Matcher(faq, {**settings, "out_of_scope_word_factor": 1.0})


def test_out_of_scope_phrasings_reject_what_the_line_does_not_handle(tmp_path):
    """Out-of-scope groups are data in faq/: a question closer to them than to any entry is rejected."""
    (tmp_path / "a.yaml").write_text(TWO_ENTRIES, encoding="utf-8")
    plain = Matcher(load_faq(tmp_path))
    (tmp_path / "b.yaml").write_text(
        "out_of_scope:\n  - label: Wifi\n    phrasings: ['mật khẩu wifi nhà', 'wifi không vào được']\n",
        encoding="utf-8",
    )
    faq = load_faq(tmp_path)
    assert [g.label for g in faq.out_of_scope] == ["Wifi"]
    m = Matcher(faq)
    # the control: without the out-of-scope data the same question gets entry 1
    assert plain.match("quên mật khẩu wifi").faq_id == 1
    result = m.match("quên mật khẩu wifi")
    assert result.decision == "reject" and result.faq_id is None and result.out_of_scope, result
    assert result.candidates and result.candidates[0].faq_id == 1  # out-of-scope groups are never candidates
    ok = m.match("quên mật khẩu")
    assert (ok.decision, ok.faq_id, ok.out_of_scope) == ("answer", 1, False), ok


def test_the_out_of_scope_contest_weighs_the_n_gram_signal_too():
    """out_of_scope_ngram_share: a long question sharing its context words ("tháng", "công ty") with a short
    out-of-scope phrasing is not rejected as out of scope when the n-gram cosine, weighing the whole question,
    sees the entry it asks about; a caller naming another service still is."""
    faq = load_faq()
    settings = config.load("match")
    assert settings["out_of_scope_ngram_share"] > 0
    shipped = Matcher(faq, settings)
    words_only = Matcher(faq, {**settings, "out_of_scope_ngram_share": 0.0})
    story = "mỗi tháng công ty phải đổi mật khẩu theo quy định mà trong ứng dụng không thấy chỗ đổi"
    control = words_only.match(story)
    assert (control.decision, control.out_of_scope) == ("reject", True), control
    got = shipped.match(story)
    assert (got.decision, got.faq_id, got.out_of_scope) == ("confirm", 6, False), got
    for other in ("quên mã pin thẻ atm", "quên mật khẩu wifi", "đổi mã pin thẻ ngân hàng", "quên mật khẩu zalo"):
        r = shipped.match(other)
        assert (r.decision, r.out_of_scope) == ("reject", True), (other, r)


def test_naming_another_service_discounts_the_n_gram_cosine_in_the_out_of_scope_contest():
    """The n-gram cosine does not know which words name another service: when the caller names one (and an
    out-of-scope phrasing scores at least out_of_scope_floor), the entries' cosines take
    out_of_scope_word_factor, as the word matcher's scores do."""
    faq = two_entry_faq("Quên mật khẩu thì làm sao?", "Gia hạn chứng thư số ở đâu?")
    m = Matcher(faq, {"ngram_weight": 0.25, "out_of_scope_ngram_share": 0.5, "out_of_scope_word_factor": 0.5,
                      "out_of_scope_floor": 0.25})
    best, second = {1: 0.4, 2: 0.1, -1: 0.45}, {1: 0.8, 2: 0.2, -1: 0.5}
    top_in, top_out = m._out_of_scope_contest(0.4, 0.45, best, second, named=False)
    assert top_in == pytest.approx((0.4 * 0.8) ** 0.5) and top_out == pytest.approx((0.45 * 0.5) ** 0.5)
    assert top_in > top_out  # the n-gram cosine outweighs the word matcher's lead for the other service
    named_in, named_out = m._out_of_scope_contest(0.4, 0.45, best, second, named=True)
    assert named_in == pytest.approx((0.4 * 0.5 * 0.8) ** 0.5) and named_out == top_out
    assert named_in < named_out
    # below the floor the caller's word names nothing the out-of-scope data knows well: no factor
    assert m._out_of_scope_contest(0.4, 0.2, best, second, named=True)[0] == pytest.approx(top_in)
    # share 0: the word matcher alone
    alone = Matcher(faq, {"ngram_weight": 0.25, "out_of_scope_ngram_share": 0.0})
    assert alone._out_of_scope_contest(0.4, 0.45, best, second, named=False) == (0.4, 0.45)


def test_an_entry_nearly_as_close_to_another_service_is_confirmed_not_answered():
    """answer_out_of_scope_gap: a wrong answer read out is the costliest mistake, so a question that names
    another service and whose best out-of-scope phrasing scores within the gap of the best entry is confirmed,
    never answered outright. Without such a word the gap does not apply."""
    faq = two_entry_faq("Quên mật khẩu thì làm sao?", "Gia hạn chứng thư số ở đâu?")
    base = {"answer_threshold": 0.5, "margin": 0.2, "answer_lead_threshold": 0.35, "answer_lead_ratio": 2.5,
            "confirm_threshold": 0.3, "out_of_scope_margin": 0.0}
    cands = [Candidate(1, 0.7), Candidate(2, 0.1)]
    guarded = Matcher(faq, {**base, "answer_out_of_scope_gap": 0.2})
    named = guarded._decide(cands, 0.6, named=True)
    assert (named.decision, named.faq_id, named.names_other_service) == ("confirm", 1, True)
    assert guarded._decide(cands, 0.45, named=True).decision == "answer"
    assert guarded._decide(cands, 0.6, named=False).decision == "answer"
    narrow = Matcher(faq, {**base, "answer_out_of_scope_gap": 0.2, "answer_out_of_scope_gap_unnamed": 0.08})
    assert narrow._decide(cands, 0.6, named=False).decision == "answer"
    assert narrow._decide(cands, 0.65, named=False).decision == "confirm"
    assert guarded._decide(cands, 0.75, named=True).decision == "reject"  # closer to the other service
    # the far-leading rule is guarded too
    lead = [Candidate(1, 0.45), Candidate(2, 0.1)]
    assert guarded._decide(lead, 0.3).decision == "confirm" and guarded._decide(lead, 0.2).decision == "answer"
    unguarded = Matcher(faq, {**base, "answer_out_of_scope_gap": 0.0})
    assert unguarded._decide(cands, 0.6).decision == "answer"


def test_naming_another_service_is_reported(faq):
    m = Matcher(faq)
    assert m.match("quên mã pin usb token").names_other_service
    assert not m.match("quên mã pin thì làm sao").names_other_service


@pytest.mark.parametrize("text,faq_id", [("quên mật khẩu", 9), ("tôi quên mật khẩu thì làm sao", 9),
                                         ("đổi mật khẩu", 6), ("quên mã pin", 3)])
def test_plain_questions_near_an_out_of_scope_phrasing_are_still_answered(faq, text, faq_id):
    # "quên mật khẩu wifi nhà", "đổi mật khẩu wifi", "quên mã pin usb token" are out of scope; the plain
    # questions are not, and are answered with the shipped settings
    r = Matcher(faq).match(text)
    assert (r.decision, r.faq_id) == ("answer", faq_id), r


@pytest.mark.parametrize("text,faq_id", [
    # the PIN that authenticates a transaction is FAQ 3's PIN, not FAQ 7's "authenticate with a PIN instead"
    ("tôi quên mã pin xác thực giao dịch rồi", 3),
    # moving to another phone is FAQ 3 (its answer: reactivate the account), not FAQ 2 (reinstalling the app)
    ("mua máy khác rồi có phải kích hoạt lại tài khoản không", 3),
    # being logged out on one phone when signing in on another is FAQ 8's one-device rule
    ("cứ đăng nhập máy mới là máy cũ bị đăng xuất", 8),
    # a wrong name or date of birth is wrong identity information (FAQ 12)
    ("sai họ tên trên tài khoản chữ ký số thì sửa thế nào", 12),
])
def test_caller_wordings_of_the_faq_reach_their_entry(faq, text, faq_id):
    r = Matcher(faq).match(text)
    assert r.decision != "reject" and r.faq_id == faq_id, r


@pytest.mark.parametrize("text", [
    "ứng dụng vnpt money báo lỗi khi đăng nhập",  # the company's e-wallet, not SmartCA
    "gửi tiết kiệm có kỳ hạn lãi suất thế nào",  # a bank's savings ("kỳ hạn" is not a certificate's "thời hạn")
    "khiếu nại nhân viên làm việc không tốt",  # a complaint about staff
])
def test_other_services_callers_ask_this_line_about_are_out_of_scope(faq, text):
    r = Matcher(faq).match(text)
    assert (r.decision, r.out_of_scope) == ("reject", True), r


def test_a_word_only_out_of_scope_phrasings_use_lowers_every_entry(tmp_path):
    m, plain = _halving_and_plain(_two_entries_and(tmp_path, ["lấy lại tài khoản facebook"], label="Facebook"))
    assert "facebook" in m.oos_words and "mật" not in m.oos_words
    lowered, full = m.scores("quên mật khẩu facebook")[0], plain.scores("quên mật khẩu facebook")[0]
    assert lowered.faq_id == full.faq_id == 1
    assert lowered.score == pytest.approx(full.score * 0.5, abs=1e-3)
    assert m.scores("quên mật khẩu") == plain.scores("quên mật khẩu")  # no such word: no change


def test_an_ordinary_word_one_out_of_scope_phrasing_uses_only_hints_at_another_service(tmp_path):
    """A word only out-of-scope phrasings use names another service when it is a foreign name ("icloud") or
    two of them use it ("ngân"): every entry is lowered. A word only one of them uses ("nhà" of "wifi nhà")
    is that phrasing's wording, which callers say about the FAQ's questions too: it only keeps the wide
    out-of-scope gap for an answer outright, and lowers nothing."""
    faq = _two_entries_and(tmp_path, ["lấy lại mật khẩu icloud", "quên mật khẩu ứng dụng ngân hàng",
                                      "thẻ ngân hàng bị nuốt", "không nhớ pass wifi nhà"])
    m, plain = _halving_and_plain(faq)
    assert {"icloud", "ngân", "wifi"} <= m.oos_words and "nhà" in m.oos_hint_words and "nhà" not in m.oos_words
    assert m._naming("quên mật khẩu ở nhà".split(), "quen mat khau o nha".split()) == HINTS
    assert m._naming("quên mật khẩu ngan hang".split(), "quen mat khau ngan hang".split()) == NAMES
    assert m.scores("quên mật khẩu ở nhà") == plain.scores("quên mật khẩu ở nhà")
    assert not m.match("quên mật khẩu ở nhà").names_other_service
    for named in ("quên mật khẩu ngân hàng", "quên mật khẩu icloud"):
        lowered, full = m.scores(named)[0], plain.scores(named)[0]
        assert lowered.score == pytest.approx(full.score * 0.5, abs=1e-3)
        assert m.match(named).names_other_service
    # a hint keeps the wide gap: nearly as close to the other service, confirmed rather than answered
    guarded = Matcher(faq, {"answer_threshold": 0.5, "margin": 0.2, "answer_out_of_scope_gap": 0.2,
                            "answer_out_of_scope_gap_unnamed": 0.0, "out_of_scope_margin": 0.0})
    cands = [Candidate(1, 0.7), Candidate(2, 0.1)]
    assert guarded._decide(cands, 0.6, named=HINTS).decision == "confirm"
    assert guarded._decide(cands, 0.6, named=0.0).decision == "answer"


def test_a_word_that_only_goes_with_a_foreign_name_is_only_a_hint(tmp_path):
    """"ca" of "chữ ký số bkav ca" and "viettel ca": two out-of-scope phrasings use it, but both name their
    service already ("bkav", "viettel"). Left over from a misheard "xì mát ca", it must not lower every entry;
    "thuế", which two phrasings without a foreign name rely on, does."""
    m = Matcher(_two_entries_and(tmp_path, ["chữ ký số bkav ca", "số tổng đài viettel ca", "kê khai thuế qua mạng",
                                            "cổng thuế bị lỗi"]))
    assert {"bkav", "viettel", "thuế"} <= m.oos_words
    assert "ca" in m.oos_hint_words and "ca" not in m.oos_words
    assert m._naming("quên mật khẩu ca".split(), "quen mat khau ca".split()) == HINTS


def test_a_word_two_out_of_scope_groups_share_is_only_a_hint(tmp_path):
    """"màn hình" in a phone-repair phrasing and in a computer phrasing is how callers describe any screen,
    SmartCA's included ("màn hình hiện không có tài khoản"); it names no service. A word names one only when
    two phrasings of the same group rely on it ("thuế" of the tax group)."""
    (tmp_path / "a.yaml").write_text(
        TWO_ENTRIES + "out_of_scope:\n"
        "  - label: Điện thoại\n    phrasings: ['màn hình điện thoại bị sọc']\n"
        "  - label: Máy tính\n    phrasings: ['máy tính không lên màn hình']\n"
        "  - label: Thuế\n    phrasings: ['kê khai thuế qua mạng', 'cổng thuế bị lỗi']\n", encoding="utf-8")
    m = Matcher(load_faq(tmp_path))
    assert {"màn", "hình"} <= m.oos_hint_words and m.oos_words.isdisjoint({"màn", "hình"})
    assert "thuế" in m.oos_words
    assert m._naming("màn hình báo lỗi".split(), "man hinh bao loi".split()) == HINTS


def test_unknown_words_saturate_with_unknown_cap(faq):
    text = "quên mật khẩu " + " ".join(f"zz{i}" for i in range(12))
    capped = Matcher(faq, {"unknown_cap": 2.0}).scores(text)[0]
    uncapped = Matcher(faq, {"unknown_cap": 0.0}).scores(text)[0]
    assert capped.faq_id == uncapped.faq_id == 9
    assert capped.score > uncapped.score


def test_default_settings_come_from_config(faq):
    from ivr.content import config

    m = Matcher(faq)
    assert m.answer_threshold == config.load("match")["answer_threshold"]
    assert m.confirm_threshold == config.load("match")["confirm_threshold"]


def test_matcher_on_a_small_faq(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "topics:\n  - id: t\n    label: T\nentries:\n"
        "  - {id: 1, topic: t, question: 'Quên mật khẩu?', answer: 'A', paraphrases: ['mất mật khẩu']}\n"
        "  - {id: 2, topic: t, question: 'Đổi số điện thoại?', answer: 'B', keywords: ['đổi số']}\n",
        encoding="utf-8",
    )
    m = Matcher(load_faq(tmp_path))
    assert m.match("tôi quên mật khẩu").faq_id == 1
    assert m.match("muốn đổi số điện thoại").faq_id == 2
    assert m.match("thời tiết hôm nay").decision == "reject"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("có", "yes"), ("đúng", "yes"), ("đúng rồi", "yes"), ("phải", "yes"), ("vâng", "yes"), ("ừ", "yes"),
        ("dạ đúng rồi ạ", "yes"), ("vâng ạ", "yes"), ("Đúng rồi!", "yes"), ("dung roi", "yes"), ("ok", "yes"),
        ("không", "no"), ("không phải", "no"), ("sai", "no"), ("sai rồi", "no"), ("dạ không", "no"),
        ("không đúng", "no"), ("khong phai", "no"), ("không phải đâu ạ", "no"),
        ("", None), ("mật khẩu", None), ("tôi hỏi về mã pin", None), (None, None),
    ],
)
def test_yes_no(text, expected):
    assert yes_no(text) == expected


# --- held-out evaluation ----------------------------------------------------------------------------------


def _evaluate(matcher, path):
    items = yaml.safe_load(path.read_text(encoding="utf-8"))["questions"]
    in_domain = [q for q in items if q["faq_id"] is not None]
    ood = [q for q in items if q["faq_id"] is None]
    assert len(in_domain) >= 50 and len(ood) >= 10
    top1 = answered = wrong_answers = 0
    for q in in_domain:
        r = matcher.match(q["text"])
        if r.decision in ("answer", "confirm") and r.faq_id == q["faq_id"]:
            top1 += 1
            answered += r.decision == "answer"
        elif r.decision == "answer":
            wrong_answers += 1
    rejected = sum(matcher.match(q["text"]).decision == "reject" for q in ood)
    top1_rate, answer_rate, reject_rate = top1 / len(in_domain), answered / len(in_domain), rejected / len(ood)
    print(
        f"\n{path.name}: in-domain top-1 (answer or confirm) {top1}/{len(in_domain)} = {top1_rate:.3f}; "
        f"answered outright and right {answered}/{len(in_domain)} = {answer_rate:.3f}; "
        f"answered wrong {wrong_answers}; out-of-domain rejected {rejected}/{len(ood)} = {reject_rate:.3f}"
    )
    return top1_rate, answer_rate, reject_rate, wrong_answers


@pytest.mark.parametrize("path", [EVAL_FILE, FRESH_FILE], ids=["dev", "fresh"])
def test_evaluation_questions_are_not_copies_of_faq_phrasings(faq, path):
    """An evaluation question equal to a paraphrase, question or keyword of the FAQ (after normalisation)
    would measure recall, not understanding."""
    phrasings = {normalize(p) for e in faq.entries for p in (e.question, *e.paraphrases, *e.keywords)}
    items = yaml.safe_load(path.read_text(encoding="utf-8"))["questions"]
    copies = [q["text"] for q in items if normalize(q["text"]) in phrasings]
    assert copies == []


def test_dev_evaluation(matcher):
    top1_rate, answer_rate, reject_rate, wrong_answers = _evaluate(matcher, EVAL_FILE)
    # dev set: the settings were calibrated on it (and on the paraphrases left out one at a time).
    # measured 0.983 / 0.555 / 0.886 with 0 wrong answers (119 in-domain, 44 out-of-domain questions, after
    # removing the 12 that coincided with FAQ phrasings); asserted a little below to absorb FAQ edits
    assert top1_rate >= 0.95
    assert answer_rate >= 0.5
    assert reject_rate >= 0.85
    assert wrong_answers <= 1


def test_fresh_evaluation(matcher):
    """The fresh set was never used to choose a setting: this is how the matcher generalises."""
    top1_rate, answer_rate, reject_rate, wrong_answers = _evaluate(matcher, FRESH_FILE)
    # measured 0.848 / 0.181 / 0.933 with 0 wrong answers (105 in-domain, 30 out-of-domain questions); the
    # right entry is ranked first for 0.924 of them. Asserted a little below.
    assert top1_rate >= 0.82
    assert answer_rate >= 0.15
    assert reject_rate >= 0.9
    assert wrong_answers <= 1


@pytest.mark.parametrize(
    "settings,named",
    [
        ({"answer_threshold": "banana"}, "'answer_threshold' must be a number"),
        ({"confirm_threshold": [0.4]}, "'confirm_threshold' must be a number"),
        ({"answer_threshold": 5}, "outside 0..1.01"),
        ({"margin": -0.1}, "outside 0..1"),
        ({"answer_treshold": 0.7}, "unknown setting 'answer_treshold'"),
        ({"foreign_words": ["facebook"]}, "unknown setting 'foreign_words'"),
        ({"near_word_weight": 2}, "outside 0..1"),
    ],
)
def test_bad_settings_are_named(faq, settings, named):
    from ivr.errors import IvrError

    with pytest.raises(IvrError) as err:
        Matcher(faq, settings=settings)
    assert named in str(err.value) and "config/match.yaml" in str(err.value) and err.value.fix


def test_bad_settings_file_is_exit_2_not_a_traceback(tmp_path, monkeypatch, capsys):
    import shutil

    from ivr.cli import main
    from ivr.content import config

    home = tmp_path / "home"
    for d in ("faq", "prompts", "config"):
        shutil.copytree(paths.home() / d, home / d)
    text = (home / "config" / "match.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^answer_threshold: .*$", "answer_threshold: banana", text)
    (home / "config" / "match.yaml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("IVR_HOME", str(home))
    config.load.cache_clear()
    try:
        assert main(["ask", "quên mật khẩu"]) == 2
    finally:
        config.load.cache_clear()
    err = capsys.readouterr().err
    assert "'answer_threshold' must be a number" in err and "Traceback" not in err


def test_a_misheard_syllable_counts_weakly_as_the_near_word(faq):
    """'quên' heard 'quyên' is not an unknown word: with near_word_weight it counts as 'quên', weakly."""
    base = {"sound_factor": 0.0, "fold_factor": 0.0}
    near = Matcher(faq, {**base, "near_word_weight": 0.5}).scores("quyên mật khẩu")[0]
    none = Matcher(faq, {**base, "near_word_weight": 0.0}).scores("quyên mật khẩu")[0]
    exact = Matcher(faq, {**base, "near_word_weight": 0.5}).scores("quên mật khẩu")[0]
    assert near.faq_id == none.faq_id == exact.faq_id == 9
    assert none.score < near.score < exact.score


def test_sound_alike_form_forgives_recogniser_confusions(faq):
    heard = "máy không có xinh chắc học"  # sinh trắc học: s/x, n/nh, ch/tr
    shipped = {**config.load("match"), "near_word_weight": 0.0}
    with_sound = Matcher(faq, shipped).match(heard)
    without = Matcher(faq, {**shipped, "sound_factor": 0.0}).match(heard)
    assert with_sound.faq_id == 7 and with_sound.decision in ("answer", "confirm"), with_sound
    assert with_sound.score > (without.candidates[0].score if without.candidates else 0.0)


def test_nbest_hypotheses_are_weighed_together(faq):
    m = Matcher(faq)
    garbled = "quyên mà bin gì đó"
    alone = m.match(garbled)
    together = m.match_nbest([(garbled, 0.4), ("quên mã pin", 0.35), ("quên mã bin", 0.25)])
    assert together.faq_id == 3 and together.decision in ("answer", "confirm")
    assert together.score > (alone.candidates[0].score if alone.candidates else 0.0)
    # the weights count: the same list with all weight on an out-of-domain hypothesis is rejected
    assert m.match_nbest([("hôm nay trời mưa to quá", 0.98), ("quên mã pin", 0.02)]).decision == "reject"
    # one hypothesis is a plain match; an empty list a reject
    assert m.match_nbest([("quên mã pin", 1.0)]) == m.match("quên mã pin")
    assert m.match_nbest([]).decision == "reject" and m.match_nbest([("", 1.0)]).decision == "reject"


def test_doubtful_words_are_read_as_near_known_words(faq):
    """Word confidences: a doubtful known word counts weakly; a doubtful word one letter from a known word
    is read as it."""
    m = Matcher(faq)
    plain = m.match("quên mật khẩu")
    doubted = m.match("quên mật khẩu", word_conf=[0.2, 0.9, 0.9])
    assert plain.faq_id == doubted.faq_id == 9 and doubted.score < plain.score
    assert m.match("quên mật khẩu", word_conf=[0.9, 0.9, 0.9]) == plain
    assert m.match("quên mật khẩu", word_conf=[0.2]) == plain  # not one per word: ignored


def test_a_far_leading_entry_is_answered(faq):
    """answer_lead_*: a moderate score many times the runner-up's is answered outright."""
    text = "dạ điện thoại cũ của em bị mất cắp rồi em mua máy mới thì kích hoạt lại tài khoản kiểu gì chị"
    base = {**config.load("match"), "answer_threshold": 1.01, **WORDS_ONLY}
    top, runner_up = Matcher(faq, base).scores(text)[:2]
    on = Matcher(faq, {**base, "answer_lead_threshold": top.score - 0.01, "answer_lead_ratio": 2.0})
    off = Matcher(faq, {**base, "answer_lead_threshold": 1.01})
    assert top.score >= 2.0 * runner_up.score
    assert (on.match(text).decision, on.match(text).faq_id) == ("answer", 3)
    assert off.match(text).decision == "confirm"


@pytest.mark.parametrize("text", ["tôi cần hỗ trợ", "hỗ trợ", "em cần được hỗ trợ ạ", "tôi có vấn đề",
                                  "tôi cần tư vấn", "tôi có thắc mắc", "hướng dẫn giúp tôi"])
def test_a_request_for_help_that_names_nothing_is_not_answered(matcher, text):
    """A generic word ("hỗ trợ", "vấn đề", GENERIC_WORDS) is the only content: the caller is asked to say
    what it is about, not read FAQ 7 because FAQ 7 says "không hỗ trợ sinh trắc học"."""
    result = matcher.match(text)
    assert result.decision == "reject", result


def test_a_generic_word_beside_a_topic_is_not_its_own_evidence(matcher):
    """"hỗ trợ" next to "mật khẩu" does not pull the question to FAQ 7; beside the words of FAQ 7 it still
    counts ("máy không hỗ trợ sinh trắc học" is FAQ 7)."""
    result = matcher.match("tôi cần hỗ trợ về mật khẩu ứng dụng")
    assert result.decision != "answer" and result.faq_id != 7, result
    assert all(c.faq_id != 7 for c in result.candidates[:2]), result.candidates
    result = matcher.match("máy không hỗ trợ sinh trắc học")
    assert (result.decision, result.faq_id) == ("answer", 7)
    assert matcher.match("máy tôi không hỗ trợ").decision != "answer"  # support for what?


def test_generic_word_share_is_what_weakens_a_generic_request(faq):
    text = "tôi cần hỗ trợ"
    full = Matcher(faq, {**config.load("match"), "generic_word_share": 1.0, **WORDS_ONLY})
    assert (full.match(text).decision, full.match(text).faq_id) == ("answer", 7)  # the word's IDF alone
    weak = Matcher(faq, {**config.load("match"), "generic_word_share": 0.1, **WORDS_ONLY})
    assert weak.match(text).decision == "reject"
    assert weak.scores(text)[0].score < full.scores(text)[0].score / 3
    # a question without a generic word scores the same either way
    assert weak.scores("máy không có sinh trắc học") == full.scores("máy không có sinh trắc học")
