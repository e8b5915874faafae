"""The spoken form: rule by rule, then on every answer of the FAQ, checked against espeak-ng itself."""

from __future__ import annotations

import re
import subprocess
import unicodedata

import pytest
import yaml

from ivr.content import paths
from ivr.language.spoken import SPECIAL_CHARACTERS, spoken_answer, spoken_form

# Only Vietnamese letters (any Unicode letter), spaces and sentence punctuation may reach the synthesiser.
SPEAKABLE = re.compile(r"^[^\W\d_]+(?:[ .,?!:;]+[^\W\d_]+)*[.?!]$")


def _answers() -> list[dict]:
    data = yaml.safe_load((paths.faq_dir() / "smartca.yaml").read_text(encoding="utf-8"))
    return data["entries"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Để quá 48h thì làm thế nào?", "Để quá bốn mươi tám giờ thì làm thế nào?"),
        ("Dùng 2 thiết bị cho 1 tài khoản", "Dùng hai thiết bị cho một tài khoản."),
        ("Có thể sử dụng CKS", "Có thể sử dụng chữ ký số."),
        ("nếu đã có CTS.", "nếu đã có chứng thư số."),
        ("khai báo trên ĐHSXKD.", "khai báo trên điều hành sản xuất kinh doanh."),
        ("Mở app VNPT SmartCA", "Mở ứng dụng vê en pê tê Xờ mát xê a."),
        ("Gỡ app cài đặt lại", "Gỡ ứng dụng cài đặt lại."),
        ("app iOS: Không cần.", "ứng dụng ai ô ét: Không cần."),
        ("app Android", "ứng dụng an đờ roi."),
        ("như: FaceID, Vân tay.", "như: phây ai đi, Vân tay."),
        ("Vào Settings -> Applications -> All -> Tìm Google Play services",
         "Vào Cài đặt, rồi chọn Ứng dụng, rồi chọn Tất cả, rồi tìm gu gồ pờ lây xơ vít."),
        ("Google Play servicesGoogle services framework",
         "gu gồ pờ lây xơ vít và gu gồ xơ vít phờ rêm guốc."),
        ("chọn Cài đặt(Settings) -> Hủy root", "chọn Cài đặt, rồi chọn Hủy rút."),
        ("(1). Vào cài đặt", "Cách một. Vào cài đặt."),
        ("(2). Trường hợp (1) không được", "Cách hai. Trường hợp một không được."),
        ("Trường hợp cả (1),(2) không được", "Trường hợp cả một và hai không được."),
        ("Cách 1: Mở menu Chứng thư số.", "Cách một: Mở mê nu Chứng thư số."),
        ("Ở các thiết bị Android như VSmart,... đó không phải",
         "Ở các thiết bị an đờ roi như vi Xờ mát, đó không phải."),
        ("Quên mật khẩu trên web hoặc app", "Quên mật khẩu trên oép hoặc ứng dụng."),
        ("Email kích hoạt và mail kích hoạt", "Email kích hoạt và mail kích hoạt."),
        ("mã PIN", "mã pin."),
        ("bấm phím * hoặc phím #", "bấm phím sao hoặc phím thăng."),
        ("Gọi 18001260", "Gọi một tám không không một hai sáu không."),
        ("Mã ABC", "Mã a bê xê."),
        ("app SuperSU - Root Checker, chọn", "ứng dụng su pơ ét u, rút chéc cơ, chọn."),
        ("", ""),
    ],
)
def test_rule(text, expected):
    assert spoken_form(text) == expected


def test_bullets_and_line_breaks_become_sentences():
    text = " • Trường hợp một: Không cần\n • Trường hợp hai: Cần phải kích hoạt lại\n  Lưu ý"
    assert spoken_form(text) == "Trường hợp một: Không cần. Trường hợp hai: Cần phải kích hoạt lại. Lưu ý."


def test_special_characters_become_a_short_sentence():
    answer = next(e["answer"] for e in _answers() if e["id"] == 6)
    spoken = spoken_form(answer)
    assert SPECIAL_CHARACTERS in spoken
    assert "ký tự đặc biệt, ví dụ như chấm than" in spoken
    assert spoken.count("ký tự đặc biệt") == 1
    assert not re.search(r"[~!@#$%^&*_+=`|(){}\[\]<>/\\\"']", spoken)


def test_nfc_in_and_out():
    decomposed = unicodedata.normalize("NFD", "Mật khẩu phải chứa 8 ký tự")
    spoken = spoken_form(decomposed)
    assert spoken == unicodedata.normalize("NFC", spoken) == "Mật khẩu phải chứa tám ký tự."


@pytest.mark.parametrize("entry", _answers(), ids=lambda e: f"entry{e['id']}")
def test_every_faq_answer_is_speakable(entry):
    spoken = spoken_answer(entry)
    assert spoken, "empty spoken form"
    assert unicodedata.is_normalized("NFC", spoken)
    assert not re.search(r"\d", spoken), spoken
    assert SPEAKABLE.match(spoken), spoken
    assert not re.search(r"\b[A-Z]{2,}\b", spoken), f"abbreviation left: {spoken}"
    assert spoken_form(spoken) == spoken, "the spoken form is not stable"
    # Every word of the answer is kept in some form: the spoken form is not much shorter in words.
    assert len(spoken.split()) >= 0.8 * len(re.findall(r"\w+", entry["answer"]))


@pytest.mark.parametrize("entry", _answers(), ids=lambda e: f"entry{e['id']}")
def test_espeak_reads_every_answer_with_vietnamese_sounds(entry):
    """espeak-ng's vi voice switches to English for words it does not know as Vietnamese: '(en)' in its
    phoneme output. Only 'email'/'mail', kept as the English word on purpose, may do that."""
    spoken = spoken_answer(entry)
    phonemes = subprocess.run(["espeak-ng", "-v", "vi", "-q", "-x", spoken],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    kept_english = len(re.findall(r"(?i)\b(?:e-?)?mail\b", spoken))
    assert phonemes.count("(en)") == kept_english, phonemes


def test_explicit_spoken_field_is_preferred():
    entry = {"answer": "• Dùng app VNPT SmartCA", "spoken": "Quý khách dùng ứng dụng Xờ mát xê a"}
    assert spoken_answer(entry) == "Quý khách dùng ứng dụng Xờ mát xê a."
    assert spoken_answer({"answer": "• Dùng app", "spoken": "  "}) == "Dùng ứng dụng."


def test_spoken_answer_takes_faq_entries(faq):
    entry = faq.by_id(8)
    assert spoken_answer(entry) == spoken_form(entry.answer)
    assert "hai thiết bị cho một tài khoản" in spoken_answer(entry)


def test_displayed_text_is_unchanged(faq):
    before = [e.answer for e in faq.entries]
    for e in faq.entries:
        spoken_answer(e)
    assert [e.answer for e in faq.entries] == before
