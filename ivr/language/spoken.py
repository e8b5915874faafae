"""The spoken form of a text: what the speech synthesiser is given instead of what is displayed.

``spoken_form("Có thể dùng 2 thiết bị cho 1 tài khoản? Quá 48h")`` ->
``"Có thể dùng hai thiết bị cho một tài khoản? Quá bốn mươi tám giờ."``

The displayed text (FAQ answers, prompts) is never changed; this runs just before synthesis. Steps:

1. NFC; a run of special characters (the password rule of the FAQ) becomes one listenable phrase.
2. Lines and bullets become sentences; "(1)." at the start of a line becomes "Cách 1.".
3. ``RULES``: a table of (regex, replacement), applied in order: product names, abbreviations, English
   menu labels and app names as a Vietnamese speaker says them (written so that espeak-ng's Vietnamese
   voice reads them with Vietnamese sounds), arrows, hours.
4. Numbers in words (num2words, lang="vi"); long digit strings (phone numbers) digit by digit.
5. Any remaining all-capital Latin abbreviation is spelled with Vietnamese letter names.
6. Clean-up: only letters, spaces and . , ? ! : ; remain; each sentence ends with a full stop.

An FAQ entry may carry an explicit ``spoken`` field; ``spoken_answer(entry)`` prefers it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

# What a caller hears instead of the thirty characters of the password rule.
SPECIAL_CHARACTERS = ("ký tự đặc biệt, ví dụ như chấm than, a còng, dấu thăng, đô la, "
                      "phần trăm hoặc dấu sao")

_SYMBOLS = r"""~!@#$%^&*_\-+=`|(){}\[\]:;"'<>,.?/\\"""
_SYMBOL_RUN = re.compile(rf"(?:ký tự đặc biệt\s*:?\s*)?[{_SYMBOLS}]{{8,}}", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[•·▪◦●\-–*+]\s*)+")
_LINE_NUMBER = re.compile(r"^\((\d+)\)\s*[.:]?\s*")

Replacement = str | Callable[[re.Match], str]


def _lower_verb(m: re.Match) -> str:
    return f"rồi {m.group(1).lower()}"


# (pattern, replacement), applied in this order. Patterns are case-sensitive unless they say (?i).
RULES: list[tuple[str, Replacement]] = [
    # Two labels glued together in the source page: "Google Play servicesGoogle services framework".
    (r"(?<=[a-z])(?=Google\b)", " và "),
    # English glosses in brackets after the Vietnamese label: "Cài đặt(Settings)" -> "Cài đặt".
    (r"\s*\((?:[A-Za-z][A-Za-z ]*)\)", ""),
    # "(1),(2)" -> "1 và 2"; any other "(1)" -> "1".
    (r"\((\d+)\)\s*,\s*\((\d+)\)", r"\1 và \2"),
    (r"\((\d+)\)", r"\1"),
    # Menu paths: "Settings -> Applications -> All" -> "Cài đặt, rồi chọn Ứng dụng, rồi chọn Tất cả".
    (r"\s*(?:->|→|=>|»)\s*", ", rồi chọn "),
    (r"rồi chọn (Tìm|Chọn|Nhấn|Bấm|Vào|Mở)\b", _lower_verb),
    (r"\bSettings\b", "Cài đặt"),
    (r"\bApplications\b", "Ứng dụng"),
    (r"\bAll\b", "Tất cả"),
    # Product and service names.
    (r"\bVNPT\b", "vê en pê tê"),
    (r"\bSmart\s?CA\b", "Xờ mát xê a"),
    (r"\bVSmart\b", "vi Xờ mát"),
    (r"\bGoogle Play services\b", "gu gồ pờ lây xơ vít"),
    (r"\bGoogle services framework\b", "gu gồ xơ vít phờ rêm guốc"),
    (r"(?i)\bgoogle\b", "gu gồ"),
    (r"\bSuperSU\b", "su pơ ét u"),
    (r"\bRoot Checker\b", "rút chéc cơ"),
    (r"\bES File Explorer\b", "i ét phai ích xờ pờ lo rơ"),
    (r"\bCLONE DETECTION\b", "cờ lôn đi téc sần"),
    (r"\bFace Recognize\b", "phây rê cơ nai"),
    (r"\bFace ?ID\b", "phây ai đi"),
    (r"\biOS\b", "ai ô ét"),
    (r"(?i)\bandroid\b", "an đờ roi"),
    (r"(?i)\bunroot\b", "an rút"),
    (r"(?i)\broot\b", "rút"),
    (r"(?i)\bwebsite\b", "oép sai"),
    (r"(?i)\bweb\b", "oép"),
    (r"(?i)\bmenu\b", "mê nu"),
    (r"(?i)\bapps?\b", "ứng dụng"),
    # Abbreviations of the domain.
    (r"\bCKS\b", "chữ ký số"),
    (r"\bCTS\b", "chứng thư số"),
    (r"\bĐHSXKD\b", "điều hành sản xuất kinh doanh"),
    (r"\bCCCD\b", "căn cước công dân"),
    (r"\bCMND\b", "chứng minh nhân dân"),
    (r"\bOTP\b", "ô tê pê"),
    (r"\bSMS\b", "ét em ét"),
    (r"\bPIN\b", "pin"),
    # "Email" and "mail" stay as they are: espeak-ng's Vietnamese voice reads them as the English word.
    # Hours and keys.
    (r"\b(\d+)\s?h\b", r"\1 giờ"),
    (r"(?<![\w*])\*(?![\w*])", "sao"),
    (r"(?<![\w#])#(?![\w#])", "thăng"),
    (r"%", " phần trăm"),
    # Separators that are not pauses of their own.
    (r"\s+[-–—]\s+", ", "),
    (r",\s*(?:\.{2,}|…)", ","),
    (r"\.{2,}|…", "."),
]
_COMPILED = [(re.compile(p), r) for p, r in RULES]

LETTERS = {
    "A": "a", "B": "bê", "C": "xê", "D": "đê", "Đ": "đê", "E": "e", "F": "ép", "G": "giê", "H": "hát",
    "I": "i", "J": "gi", "K": "ca", "L": "e lờ", "M": "em", "N": "en", "O": "ô", "P": "pê", "Q": "quy",
    "R": "e rờ", "S": "ét", "T": "tê", "U": "u", "V": "vê", "W": "vê kép", "X": "ích", "Y": "i dài", "Z": "dét",
}
_ACRONYM = re.compile(r"\b[A-ZĐ]{2,6}\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NOT_SPOKEN = re.compile(r"[^\w\s.,?!:;]|_")
_DIGITS = "không một hai ba bốn năm sáu bảy tám chín".split()


def _number(m: re.Match) -> str:
    from num2words import num2words

    text = m.group(0)
    if "," in text or "." in text:
        whole, _, frac = re.split(r"([.,])", text)
        if len(frac) == 3 and "." in text:  # 1.000 is a thousands separator in Vietnamese
            return num2words(int(whole + frac), lang="vi")
        return f"{num2words(int(whole), lang='vi')} phẩy {' '.join(_DIGITS[int(d)] for d in frac)}"
    if len(text) >= 5 or (len(text) > 1 and text.startswith("0")):  # phone numbers, codes
        return " ".join(_DIGITS[int(d)] for d in text)
    return num2words(int(text), lang="vi")


def _spell(m: re.Match) -> str:
    return " ".join(LETTERS.get(c, c) for c in m.group(0))


def _sentences(text: str) -> str:
    """Lines and bullets -> sentences; '(1).' at the start of a line -> 'Cách 1.'."""
    out = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip()
        line = _LINE_NUMBER.sub(lambda m: f"Cách {m.group(1)}. ", line).strip()
        if not line:
            continue
        if line[-1] not in ".?!:;,":
            line += "."
        out.append(line)
    return " ".join(out)


def _clean(text: str) -> str:
    text = _NOT_SPOKEN.sub(" ", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([.,?!:;])", r"\1", text)
    text = re.sub(r"([.,?!:;])(?=[^\s.,?!:;])", r"\1 ", text)
    # A run of punctuation keeps its strongest mark: ". ," -> ".", ", ." -> ".".
    text = re.sub(r"[.,?!:;](?:\s*[.,?!:;])+",
                  lambda m: next((c for c in "?!.:;," if c in m.group(0)), "."), text)
    text = text.strip(" ,;:")
    if text and text[-1] not in ".?!":
        text += "."
    return text


def spoken_form(text: str) -> str:
    """The text as the synthesiser should say it (NFC, no digits, no symbols, abbreviations expanded)."""
    text = unicodedata.normalize("NFC", text or "")
    if not text.strip():
        return ""
    text = _SYMBOL_RUN.sub(SPECIAL_CHARACTERS, text)
    text = _sentences(text)
    for pattern, replacement in _COMPILED:
        text = pattern.sub(replacement, text)
    text = _NUMBER.sub(_number, text)
    text = _ACRONYM.sub(_spell, text)
    return unicodedata.normalize("NFC", _clean(text))


def spoken_answer(entry) -> str:
    """The spoken form of an FAQ answer: the entry's own ``spoken`` text when it has one.

    ``entry`` is an ``ivr.content.faq.FaqEntry`` or a mapping with 'answer' and optional 'spoken'.
    """
    get = entry.get if isinstance(entry, dict) else lambda k: getattr(entry, k, None)
    explicit = get("spoken")
    if explicit and str(explicit).strip():
        return spoken_form(str(explicit))
    return spoken_form(str(get("answer") or ""))
