"""The Vosk-style noise channel used to evaluate the matcher on recognition errors."""

import unicodedata

import pytest

from ivr.language.noise import NoiseChannel, vosk_style
from ivr.language.phonetic import key


def test_vosk_style_spells_numbers_and_loanwords_as_syllables():
    out = vosk_style("Quên Pass app SmartCA trên iPhone, quá 48h!")
    assert out == unicodedata.normalize("NFC", out)
    assert out == out.lower() and not any(c in out for c in ",!?.")
    assert "bốn mươi tám" in out and "48" not in out
    assert "pass" not in out.split() and "app" not in out.split() and "smartca" not in out.split()
    assert "iphone" not in out.split()


def test_error_free_channel_changes_nothing_but_the_spelling():
    text = "tôi quên mật khẩu đăng nhập"
    assert NoiseChannel(0.0, seed=3).corrupt(text) == vosk_style(text)


def test_same_seed_same_errors_other_seed_other_errors():
    texts = ["gỡ ứng dụng rồi cài lại có phải kích hoạt lại không", "chữ ký số còn hạn không"] * 5
    a = [NoiseChannel(0.3, seed=7).corrupt(t) for t in texts]
    b = [NoiseChannel(0.3, seed=7).corrupt(t) for t in texts]
    c = [NoiseChannel(0.3, seed=8).corrupt(t) for t in texts]
    assert a == b and a != c


@pytest.mark.parametrize("ser", [0.1, 0.2, 0.3])
def test_syllable_error_rate_is_about_the_parameter(ser):
    """Counted as the share of syllables of the error-free transcript that do not come through unchanged in
    place (an alignment-free lower bound on SER would undercount deletions; this counts each position)."""
    from rapidfuzz.distance import Levenshtein

    text = "tôi muốn hỏi là quên mật khẩu đăng nhập ứng dụng thì phải làm thế nào để lấy lại được"
    ref = vosk_style(text).split()
    channel = NoiseChannel(ser, seed=11)
    errors = total = 0
    for _ in range(300):
        hyp = channel.corrupt(text).split()
        errors += Levenshtein.distance(ref, hyp)
        total += len(ref)
    assert ser * 0.7 <= errors / total <= ser * 1.3


def test_sound_alike_errors_are_recogniser_confusions():
    """Most changed syllables keep their sound-alike key (tone, d/gi/r/v, s/x, ch/tr, n/l, n/ng, t/c)."""
    channel = NoiseChannel(0.5, seed=5)
    words = "mật khẩu quên thiết bị đăng nhập chữ ký số sinh trắc học giờ dùng lại".split()
    changed = same_key = 0
    for _ in range(50):
        for w in words:
            new = channel.sound_alike(w)
            if new != w:
                changed += 1
                same_key += key(new) == key(w)
                assert new == unicodedata.normalize("NFC", new) and " " not in new
    assert changed > 0.9 * 50 * len(words)
    assert same_key / changed > 0.5


def test_bad_rate_is_refused():
    with pytest.raises(ValueError):
        NoiseChannel(1.5)
