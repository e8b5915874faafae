from ivr.language.phonetic import key, keys


def test_confusable_syllables_share_a_key():
    groups = [
        ("mật", "mất", "mặt", "mặc"),  # tones, t/c
        ("giờ", "dờ", "rờ", "vờ"),  # d/gi/r/v
        ("sinh", "xinh", "xin"),  # s/x, n/nh
        ("chữ", "trữ", "trử"),  # ch/tr, hỏi/ngã
        ("nào", "lào"),  # n/l
        ("dùng", "dùn", "rùng"),  # n/ng
        ("khẩu", "khấu", "khẫu"),
        ("ký", "kí", "kỹ"),
    ]
    for group in groups:
        assert len({key(w) for w in group}) == 1, (group, [key(w) for w in group])


def test_different_sounds_keep_different_keys():
    assert len({key(w) for w in ("mật", "quên", "đổi", "thiết", "bị", "khẩu", "pin")}) == 7
    assert key("đăng") != key("dăng")  # đ is not d
    assert key("thì") != key("tì")


def test_keys_of_a_text_and_odd_input():
    assert keys("quên mật khẩu") == " ".join(key(w) for w in ("quên", "mật", "khẩu"))
    assert key("48") == "48" and key("") == ""
