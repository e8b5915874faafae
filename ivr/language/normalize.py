"""Vietnamese-aware text normalisation for matching what a caller says against the FAQ.

``normalize(text)`` gives the canonical form (with diacritics) and ``fold(text)`` the same form without
diacritics. Both sides of a comparison (caller text and FAQ phrasings) go through the same steps:

1. NFC, lower case, old-style tone placement moved to the modern one ("hoà" -> "hòa", "huỷ" -> "hủy");
2. punctuation removed, digits split from letters ("48h" -> "48 h"), whitespace collapsed;
3. i/y spelling variants canonicalised to "y" ("kí" -> "ký", "lí" -> "lý", "mĩ" -> "mỹ");
4. abbreviations and spoken forms mapped to one canonical form (see ``CANONICAL``): "cks" -> "chữ ký số",
   "cts" -> "chứng thư số", "app"/"áp" -> "ứng dụng", "mk"/"pass" -> "mật khẩu", "xì mát ca" -> "smartca",
   "không nhớ" -> "quên", "mã bin" -> "mã pin", "pin code" -> "pin";
5. fillers dropped ("alo", "cho em hỏi", "ạ", "dạ", "ơi", "vâng", ...);
6. spoken numbers turned into digits ("bốn mươi tám" -> "48", "hai" -> "2"); "không" alone stays a word;
   "bốn tám tiếng" (two digits said one after the other before a time unit) -> "48 giờ", but "hai ba ngày"
   (consecutive digits: a range) is left alone.

Text typed or recognised without any diacritics ("quen mat khau") is recognised as such: the rules then also
match the diacritic-free spellings of their phrases, so that its folded form meets the folded FAQ.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

# --- 1. tone placement --------------------------------------------------------------------------------------

_TONES = "\u0300\u0301\u0309\u0303\u0323"  # grave, acute, hook above, tilde, dot below


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def _tone_moves() -> dict[str, str]:
    moves = {}
    for first, second in (("o", "a"), ("o", "e"), ("u", "y")):
        for tone in _TONES:
            moves[first + _nfc(second + tone)] = _nfc(first + tone) + second
    return moves


_TONE_MOVES = _tone_moves()
# only at the end of a syllable ("hoàn" is already right) and not after "q" ("quý" keeps its tone on y)
_TONE_RE = re.compile(r"(?<!q)(" + "|".join(_TONE_MOVES) + r")(?!\w)")

# --- 2. punctuation and spacing -----------------------------------------------------------------------------

_NON_WORD_RE = re.compile(r"[\W_]+")
_DIGIT_LETTER_RE = re.compile(r"(?<=\d)(?=[^\W\d_])|(?<=[^\W\d_])(?=\d)")
_SPACES_RE = re.compile(r"\s+")

# --- 3. i / y -----------------------------------------------------------------------------------------------

_I_TO_Y = dict(zip("iíìỉĩị", "yýỳỷỹỵ", strict=True))
# a syllable made of one of these consonants and i/y only: kí/ký, lí/lý, mĩ/mỹ, sĩ/sỹ, tí/tý, hi/hy
_IY_RE = re.compile(r"(?<!\w)([hklmst])([iíìỉĩị])(?!\w)")

# --- 4. canonical forms -------------------------------------------------------------------------------------

# canonical form -> spoken or written variants (all lower case, NFC). The canonical form is what both the
# caller's text and the FAQ turn into; it is itself listed implicitly.
CANONICAL: dict[str, tuple[str, ...]] = {
    "chữ ký số": ("cks", "chữ ký điện tử", "xê ca ét", "xê ka ét", "xê kê ét"),
    "chứng thư số": ("cts", "chứng thư", "chứng chỉ số", "xê tê ét"),
    "mật khẩu": ("mk", "pass", "password", "pass word", "mật mã", "pát", "pát guốt", "pát xuốt", "pát quốt",
                 "pas guốt", "pass guốt", "mật khẩu pass"),
    "quên": ("không nhớ", "ko nhớ", "k nhớ", "hông nhớ", "hổng nhớ", "chẳng nhớ", "chả nhớ", "quên mất"),
    "mã pin": ("mã bin", "mã pín", "mã pinh", "mã pin code", "mã binh", "mã bín", "mã pin cốt"),
    "pin": ("pin code", "pincode", "pin cốt"),
    "smartca": ("smart ca", "smart c a", "smartcard", "smart card", "xì mát ca", "xờ mát ca", "sờ mát ca",
                "smát ca", "xmart ca", "mát ca", "vnpt ca", "sờ mát xê a", "xờ mát xê a", "xì mát xê a",
                "mát xê a", "smart xê a", "sờ mác xê a", "sờ mát xê ca", "vê en pê tê smartca", "xim mát ca",
                "vê en pê tê sờ mát xê a", "vnpt smartca"),
    "vnpt": ("vê en pê tê", "vê nờ pê tê", "vi en pi ti", "vê en pê"),
    "email": ("e mail", "mail", "gmail", "i meo", "i mêu", "e meo", "thư điện tử", "y meo", "gờ meo", "ghi meo",
              "meo", "mêu", "i mêu"),
    "ios": ("iphone", "i phone", "ai phôn", "ai phone", "ipad", "ai ô ét", "ai ốt", "i ô ét", "ai ô ếch",
            "ai pát", "ai pad", "ai phôn"),
    "android": ("an đờ roi", "an droi", "adroid", "androi", "andoid", "anh đờ roi", "an roi", "en roi",
                "ăn roi", "an rôi", "an đroi"),
    "faceid": ("face id", "phây ai đi", "phây id", "phết ai đi", "phê ai đi", "phây ai di"),
    "face recognize": ("phây rê cờ nai", "phây re co nai", "phây rê cô nai", "face nhận diện"),
    "wifi": ("wi fi", "oai phai", "wai phai", "quai phai", "wiffi"),
    "root": ("rút", "rốt", "rut"),
    "unroot": ("an rút", "ăn rút", "un root", "hủy rút"),
    "jailbreak": ("jail break", "dên bờ rếch", "gien brếch", "giên bờ rây", "dên brếch", "giêu bờ rếch",
                  "gian bờ rếch", "dên bờ rết", "bẻ khóa"),
    "menu": ("mê nu", "me nu", "mê niu", "mơ nu"),
    "link": ("đường lính", "đường linh", "lính kích hoạt", "linh kích hoạt", "lin kích hoạt"),
    "otp": ("ô tê pê", "o tê pê", "ô tê bê"),
    "usb token": ("usb tô ken", "u ét bê tô ken", "u xờ bê tô ken", "u ét bê token", "tô ken usb", "usb",
                  "u ét bê"),
    "token": ("tô ken", "tô kần", "tô kên"),
    "google": ("gu gồ", "gú gồ", "gu gờ", "gồ gồ", "gu gồ", "gúc gồ"),
    "play": ("pờ lây", "plây"),
    "services": ("sơ vít", "xơ vi sờ", "sơ vi sét", "service"),
    "internet": ("in tơ nét", "in tờ nét", "in ter net"),
    # other services callers confuse with SmartCA, as a recogniser spells them (faq/out_of_scope.yaml)
    "vneid": ("vê en e i đi", "vi nét ai đi", "vê nờ e i đi", "vi en ai đi", "vn eid"),
    "atm": ("a tê mờ", "ây ti em", "a tê em"),
    "vinaphone": ("vi na phôn", "vina phôn", "vi na phone"),
    "sim": ("xim", "sim card", "xim card"),
    "zalo": ("da lô", "gia lô", "za lô"),
    "facebook": ("phây búc", "phết búc", "phây bút", "face book"),
    "mytv": ("mai ti vi", "mai tivi", "my tv"),
    "modem": ("mô đem", "mô đêm"),
    "supersu": ("super su", "su pờ su", "xu pơ xu", "su pơ su"),
    "vsmart": ("v smart", "vê sờ mát", "vi mát", "vê mát", "vê smart"),
    "clone detection": ("cờ lôn đi tếch sần", "clôn đi téc sừn", "cờ lôn đi téc sần", "clone đi tếch sần"),
    "reset": ("ri sét", "rì sét", "ri xét"),
    "thiết bị": ("điện thoại", "máy điện thoại", "đt", "đtdđ", "smartphone", "điện thoại di động"),
    "kích hoạt": ("active", "activate", "kick hoạt", "ác tị", "ác típ"),
    "website": ("web", "trang web", "trang mạng", "oép", "uép", "oép sai", "guép sai", "web sai", "wép",
                "guép", "oép xai"),
}
# Multi-syllable spellings matched fuzzily (by sound-alike key, one syllable may be missing) would also catch
# ordinary words: these are matched exactly only.
EXACT_ONLY = frozenset({"mật mã", "trang mạng", "chứng thư", "quên mất", "thư điện tử", "bẻ khóa", "hủy rút",
                        "face nhận diện", "mật khẩu pass", "mát ca", "ác tị", "ác típ", "ko nhớ", "k nhớ"})
# "áp" is "app" only when it is not part of áp dụng, áp lực, điện áp, huyết áp, ...
_APP_RE = re.compile(
    r"(?<!điện )(?<!huyết )(?<!cao )(?<!hạ )(?<!dien )(?<!huyet )(?<!\w)(?:apps?|áp|ap|ắp|ép|éb|app)"
    r"(?! (?:dụng|lực|suất|đặt|giải|sát|chót|tải|dung|luc|suat|dat|buộc|giá|cân|uổng|lòng)(?!\w))(?!\w)"
)
# "máy" alone is the caller's phone; not "máy tính", "máy in", ...
_MAY_RE = re.compile(
    r"(?<!\w)(?:máy|may)(?! (?:tính|in|chủ|bay|móc|lạnh|giặt|ảnh|quay|chiếu|atm|pos|fax|tinh|chu|bán|ban|scan)"
    r"(?!\w))(?!\w)"
)

# --- 5. fillers ---------------------------------------------------------------------------------------------

_PRONOUNS = "em|mình|tôi|tớ|chị|anh|cháu|con|tao|bác|cô|chú"
_FILLER_PHRASES = (
    rf"(?:cho|để|cho phép|xin phép) (?:{_PRONOUNS}) (?:được )?(?:hỏi|hỏi chút|hỏi tí|hỏi xíu)(?: là)?",
    rf"(?:{_PRONOUNS}) (?:muốn|cần|định|xin) hỏi(?: là)?",
    r"xin hỏi(?: là)?",
    r"(?:xin )?chào(?: (?:bạn|em|anh|chị|tổng đài|cả nhà|buổi sáng|buổi chiều|mọi người))?",
    r"(?:bạn|em|anh|chị|tổng đài|tổng đài viên|chị gái|anh trai|bạn gì) ơi",
    r"(?:a lô|a lo|alô|alo|a lố|a-lô)",
    r"ơi|ạ|dạ(?! dày)|vâng|ừ|ừm|ưm|ờ|à|ơ|ờm|nhé|nhá|nha|nhỉ|hả|hử|ấy nhỉ|thưa",
)
_FILLER_RE = re.compile(r"(?<!\w)(?:" + "|".join(_FILLER_PHRASES) + r")(?!\w)")
_FOLDED_FILLER_RE = re.compile(
    r"(?<!\w)(?:(?:cho|de) (?:em|minh|toi|to|chi|anh|chau|con) (?:duoc )?hoi(?: la)?|xin hoi(?: la)?"
    r"|(?:em|minh|toi) muon hoi(?: la)?|(?:xin )?chao(?: (?:ban|em|anh|chi|tong dai))?"
    r"|(?:ban|em|anh|chi|tong dai) oi|a lo|alo|oi|a|nhe|nha|nhi|vang|uhm|um)(?!\w)"
)

# --- 6. numbers ---------------------------------------------------------------------------------------------


def fold(text: str) -> str:
    """The diacritic-free form of ``normalize(text)``: "Mật khẩu" -> "mat khau", "đ" -> "d"."""
    return _strip_marks(normalize(text))


def _strip_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return _COMBINING_RE.sub("", decomposed)


_COMBINING_RE = re.compile(r"[\u0300-\u036f]")


def strip_marks(text: str) -> str:
    """``text`` without diacritics ("đ" -> "d"), nothing else changed (``fold`` = normalise, then this)."""
    return _strip_marks(text)


def is_folded(text: str) -> bool:
    """True when ``text`` has letters but no Vietnamese diacritics at all (typed or recognised without them)."""
    return text.isascii() and any(c.isalpha() for c in text)


@cache
def _number_tables():
    """Word -> number tables, built once from num2words (imported here: it is slow to import)."""
    from num2words import num2words

    words: dict[str, int] = {}
    for n in range(1, 100):
        words[num2words(n, lang="vi")] = n
    # spoken variants: 21 "hai mươi mốt"/"hai mươi một", 25 "hai lăm", 24 "hai mươi tư", 20 "hai chục"
    for tens in range(2, 10):
        t = num2words(tens, lang="vi")
        words[f"{t} mươi một"] = tens * 10 + 1
        words[f"{t} mươi tư"] = tens * 10 + 4
        words[f"{t} mươi năm"] = tens * 10 + 5
        words[f"{t} chục"] = tens * 10
        words[f"{t} mươi lăm"] = tens * 10 + 5
        words[f"{t} lăm"] = tens * 10 + 5
        words[f"{t} mốt"] = tens * 10 + 1
    words["mười lăm"] = 15
    words["mười năm"] = 15
    words["một chục"] = 10
    words["chục"] = 10
    # "không" alone means "no"/"not" far more often than zero: only digits say zero
    folded = {}
    for phrase, n in words.items():
        key = _strip_marks(phrase)
        if " " in key or key in {"mot", "hai", "bon", "chin", "muoi"}:
            folded.setdefault(key, n)  # "sau", "nam", "bay", "tam", "ba" alone are words when unmarked
    units = {num2words(n, lang="vi"): n for n in range(1, 10)}
    units["mốt"] = 1
    units["tư"] = 4
    units["lăm"] = 5
    return words, folded, units


def _alternation(phrases) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


@cache
def _number_regexes():
    words, folded, _ = _number_tables()
    word_units = "một|hai|ba|bốn|năm|sáu|bảy|tám|chín"
    two = _alternation(words)
    hundreds = re.compile(
        rf"(?<!\w)({word_units}) trăm(?: (?:linh|lẻ) ({word_units}|mốt|tư|lăm)| ({two}))?(?!\w)"
    )
    plain = re.compile(rf"(?<!\w)({two})(?!\w)")
    folded_units = "mot|hai|ba|bon|nam|sau|bay|tam|chin"
    folded_two = _alternation(folded)
    folded_hundreds = re.compile(
        rf"(?<!\w)({folded_units}) tram(?: (?:linh|le) ({folded_units}|mot|tu|lam)| ({folded_two}))?(?!\w)"
    )
    folded_plain = re.compile(rf"(?<!\w)({folded_two})(?!\w)")
    return hundreds, plain, folded_hundreds, folded_plain


def spoken_number_to_digits(text: str, unmarked: bool | None = None) -> str:
    """Replace spoken Vietnamese numbers (0 < n < 1000) in lower-case ``text`` by digits.

    "bốn mươi tám giờ" -> "48 giờ", "hai mươi mốt" -> "21", "một trăm lẻ năm" -> "105".
    "không" alone is left as a word (it usually means "no"). Diacritic-free text is handled too, except
    for the words that are ambiguous once unmarked ("sau", "nam", "bay", "tam", "ba"). ``unmarked`` says
    whether the text was written without diacritics (found out from the text when None).
    """
    words, folded, units = _number_tables()
    hundreds, plain, f_hundreds, f_plain = _number_regexes()
    folded_units = {_strip_marks(k): v for k, v in units.items()}

    def sub_hundreds(table, unit_table):
        def repl(m: re.Match) -> str:
            value = unit_table[m.group(1)] * 100
            if m.group(2):
                value += unit_table[m.group(2)]
            elif m.group(3):
                value += table[m.group(3)]
            return str(value)

        return repl

    text = hundreds.sub(sub_hundreds(words, units), text)
    text = plain.sub(lambda m: str(words[m.group(1)]), text)
    if is_folded(text) if unmarked is None else unmarked:
        text = f_hundreds.sub(sub_hundreds(folded, folded_units), text)
        text = f_plain.sub(lambda m: str(folded[m.group(1)]), text)
    return text


_DIGITS_RE = re.compile(r"\d+")


def digits_to_words(text: str) -> str:
    """Replace each run of digits by its Vietnamese words: "48h" -> "bốn mươi tám h"."""
    from num2words import num2words

    return _DIGITS_RE.sub(lambda m: f" {num2words(int(m.group(0)), lang='vi')} ", text).strip().replace("  ", " ")


# "48 h", "48 tiếng" -> "48 giờ"
_HOURS_RE = re.compile(r"(?<=\d) (?:h|tiếng|tieng|giờ|gio|hours?)(?!\w)")
# "bốn tám tiếng" (said for 48) -> "4 8 giờ" -> "48 giờ"; two consecutive digits ("hai ba ngày") are a range
_TWO_DIGITS_RE = re.compile(r"(?<!\w)([2-9]) ([1-9]) (?=(?:giờ|ngày|tháng|phút|gio|ngay|thang|phut)(?!\w))")


def _join_digits(m: re.Match) -> str:
    a, b = int(m.group(1)), int(m.group(2))
    return m.group(0) if b == a + 1 else f"{a}{b} "


# --- the rules compiled once ---------------------------------------------------------------------------------


def _canonical_regex(folded: bool) -> tuple[re.Pattern, dict[str, str]]:
    table = {}
    for canon, variants in CANONICAL.items():
        for v in (canon, *variants):
            table.setdefault(_strip_marks(v) if folded else v, canon)
    return re.compile(r"(?<!\w)(" + _alternation(table) + r")(?!\w)"), table


_CANON_RE, _CANON_TABLE = _canonical_regex(folded=False)
_FOLDED_CANON_RE, _FOLDED_CANON_TABLE = _canonical_regex(folded=True)


# Grammatical words a caller says all the time. A sound-alike match of a two-syllable form never takes one of
# them for a slip of the form's own spelling: "về mật khẩu", "vì mất máy" and "về mặt" sound like "vê mát"
# (vsmart) and are ordinary speech. (A form that spells such a word itself, as "không nhớ" does, still matches.)
_FUNCTION_WORDS = frozenset(
    """
    về vì và với là thì mà của cho có không để nên hay hoặc nhưng đã sẽ đang bị được này đó kia ấy các những
    một cũng vẫn còn rồi ở từ tới đến lại ra vào lên xuống đi khi nếu sao nào gì ai tôi em anh chị mình
    """.split()
)


@cache
def _fuzzy_table() -> tuple[dict[tuple[str, ...], str], int, dict[tuple[str, ...], frozenset[tuple[str, ...]]]]:
    """Sound-alike keys of every multi-syllable form of ``CANONICAL`` -> its canonical form. A form of four
    syllables or more also matches with one inner syllable missing ("sờ mát xê a" heard "sờ mát a").

    Also the spellings of each two-syllable form, by key (see ``_FUNCTION_WORDS``)."""
    from ivr.language.phonetic import key

    exact: dict[tuple[str, ...], str] = {}
    dropped: dict[tuple[str, ...], str] = {}
    spelled: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
    for canon, variants in CANONICAL.items():
        for v in (canon, *variants):
            words = v.split()
            if len(words) < 2 or v in EXACT_ONLY or not all(w.isalpha() for w in words):
                continue
            k = tuple(key(w) for w in words)
            exact.setdefault(k, canon)
            if len(words) == 2:
                spelled.setdefault(k, set()).add(tuple(words))
            if len(words) >= 4:
                for i in range(1, len(words) - 1):
                    dropped.setdefault(k[:i] + k[i + 1:], canon)
    table = {**dropped, **exact}
    return table, max(len(k) for k in table), {k: frozenset(v) for k, v in spelled.items()}


def _takes_a_function_word(heard: list[str], forms: frozenset[tuple[str, ...]]) -> bool:
    """True when every spelling in ``forms`` would read a grammatical word of ``heard`` as a slip."""
    return all(any(h != f and h in _FUNCTION_WORDS for h, f in zip(heard, form, strict=True)) for form in forms)


def fuzzy_canonical(text: str) -> str:
    """Multi-syllable spellings of ``CANONICAL`` recognised by sound: "pát guốc" -> "mật khẩu", "sờ mát sê
    a" -> "smartca", "khôn nhớ" -> "quên" (tones, d/gi/r/v, s/x, ch/tr, n/l, n/ng, t/c confused), but not
    through a grammatical word of a two-syllable form: "về mật khẩu" stays."""
    from ivr.language.phonetic import key

    table, longest, spelled = _fuzzy_table()
    words = text.split()
    keys = [key(w) for w in words]
    out = []
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 1, -1):
            k = tuple(keys[i:i + n])
            canon = table.get(k)
            if canon is not None and n == 2 and _takes_a_function_word(words[i:i + 2], spelled[k]):
                canon = None
            if canon is not None:
                out.append(canon)
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


_CKS_FOLDED_RE = re.compile(r"(?<!\w)chu (?:ky|ki) so(?!\w)")


def normalize(text: str) -> str:
    """The canonical form of ``text`` used for matching (lower case, with diacritics, NFC).

    Never raises on odd input: ``None`` or non-text gives "".
    """
    if not isinstance(text, str) or not text:
        return ""
    text = unicodedata.normalize("NFC", text).lower()
    text = _TONE_RE.sub(lambda m: _TONE_MOVES[m.group(1)], text)
    text = _NON_WORD_RE.sub(" ", text)
    text = _DIGIT_LETTER_RE.sub(" ", text)
    text = _SPACES_RE.sub(" ", text).strip()
    if not text:
        return ""
    unmarked = is_folded(text)
    text = _IY_RE.sub(lambda m: m.group(1) + _I_TO_Y[m.group(2)], text)
    text = _FILLER_RE.sub(" ", text)
    if unmarked:
        text = _FOLDED_FILLER_RE.sub(" ", text)
    text = _SPACES_RE.sub(" ", text).strip()
    text = _APP_RE.sub("ứng dụng", text)
    text = _MAY_RE.sub("thiết bị", text)
    text = fuzzy_canonical(text)
    text = _CANON_RE.sub(lambda m: _CANON_TABLE[m.group(1)], text)
    if unmarked:
        text = _FOLDED_CANON_RE.sub(lambda m: _FOLDED_CANON_TABLE[m.group(1)], text)
    text = spoken_number_to_digits(text, unmarked)
    text = _HOURS_RE.sub(" giờ", text)
    text = _TWO_DIGITS_RE.sub(_join_digits, text)
    return _SPACES_RE.sub(" ", text).strip()
