"""A seeded Vosk-style noise channel: what a Vietnamese recogniser writes when a caller says ``text``.

Used to evaluate the matcher on recognition errors (``ivr eval --noise SER``), never at run time.

``vosk_style(text)`` gives the error-free transcript form: lower case, no punctuation, numbers said as words
("48h" -> "bốn mươi tám giờ"), loanwords and brands spelled as the Vietnamese syllables the recogniser knows
("app" -> "áp"/"ép", "root" -> "rút", "SmartCA" -> "sờ mát xê a", "menu" -> "mê nu").

``NoiseChannel(ser, seed).corrupt(text)`` then changes about ``ser`` of the syllables the way recognisers and
regional accents do: a tone confused (hỏi/ngã, sắc/nặng, or dropped), an initial (d/gi/r/v, s/x, ch/tr, n/l),
a final (n/ng, t/c), a vowel slip (ô/o/ơ, ê/e, ă/â/a, u/ư), a syllable dropped or inserted, or a syllable
heard as another word. The same seed gives the same output.
"""

from __future__ import annotations

import random
import re
import unicodedata

# loanword / brand (as written, lower case) -> how a Vietnamese recogniser spells it
LOANWORDS: dict[str, tuple[str, ...]] = {
    "smartca": ("sờ mát xê a", "mát xê a", "xì mát ca", "sờ mát ca"),
    "smart ca": ("sờ mát xê a", "mát xê a", "sờ mát ca"),
    "vnpt": ("vê en pê tê", "vê nờ pê tê"),
    "password": ("pát guốt", "pát xuốt"),
    "pass": ("pát", "pas"),
    "unroot": ("an rút",),
    "root": ("rút", "rốt"),
    "jailbreak": ("dên bờ rếch", "gien brếch", "giên bờ rây"),
    "android": ("an roi", "an đờ roi", "en roi"),
    "ios": ("ai ô ét", "i ô ét"),
    "iphone": ("ai phôn", "ai phone"),
    "ipad": ("ai pát", "ai pad"),
    "face id": ("phây ai đi", "phết ai đi"),
    "faceid": ("phây ai đi",),
    "face recognize": ("phây rê cờ nai", "phây re co nai"),
    "face": ("phây", "phết"),
    "email": ("i meo", "y meo", "e meo"),
    "gmail": ("gờ meo", "ghi meo"),
    "mail": ("meo", "mêu"),
    "menu": ("mê nu", "me nu"),
    "link": ("lính", "linh", "lin"),
    "otp": ("ô tê pê",),
    "pin": ("pin", "bin", "pin"),
    "usb": ("u ét bê", "u xờ bê"),
    "token": ("tô ken", "tô kần"),
    "website": ("oép sai", "guép sai", "web sai"),
    "web": ("oép", "guép", "wép"),
    "google": ("gu gồ", "gú gồ", "gu gồ"),
    "play": ("pờ lây", "lây"),
    "services": ("sơ vít", "xơ vi sờ"),
    "wifi": ("oai phai", "quai phai"),
    "internet": ("in tơ nét",),
    "internet banking": ("in tơ nét banh king",),
    "app": ("áp", "ép", "áp"),
    "apps": ("áp", "ép"),
    "cks": ("xê ca ét", "xê ka ét"),
    "cts": ("xê tê ét",),
    "supersu": ("su pờ su", "xu pơ xu"),
    "vsmart": ("vê sờ mát", "vi mát"),
    "clone detection": ("cờ lôn đi tếch sần", "clôn đi téc sừn"),
    "clone": ("cờ lôn",),
    "reset": ("ri sét", "rì sét"),
    "data": ("đa ta", "đa tà"),
    "vneid": ("vê en e i đi", "vi nét ai đi"),
    "atm": ("a tê mờ", "ây ti em"),
    "sim": ("sim", "xim"),
    "vinaphone": ("vi na phôn",),
    "modem": ("mô đem",),
    "camera": ("ca mê ra",),
    "website dịch vụ": ("oép sai dịch vụ",),
    "h": ("giờ", "tiếng"),
    "g": ("gờ", "giê"),
    "ok": ("ô kê",),
}

_TONE_MARKS = "\u0300\u0301\u0309\u0303\u0323"  # huyền, sắc, hỏi, ngã, nặng
_QUALITY = "\u0302\u0306\u031b"  # circumflex, breve, horn
# confusable tones (recogniser and accents): hỏi/ngã, sắc/nặng, and a tone heard as level or vice versa
_TONE_SWAPS = {
    "\u0309": ("\u0303", "\u0303", ""), "\u0303": ("\u0309", "\u0309", ""),
    "\u0301": ("\u0323", "\u0323", ""), "\u0323": ("\u0301", "\u0301", ""),
    "\u0300": ("", "\u0323"), "": ("\u0300", "\u0301"),
}
_INITIALS = (("gi", ("d", "r", "v")), ("d", ("gi", "r", "v")), ("r", ("d", "gi")), ("v", ("d", "gi")),
             ("s", ("x",)), ("x", ("s",)), ("ch", ("tr",)), ("tr", ("ch",)), ("n", ("l",)), ("l", ("n",)),
             ("qu", ("w", "g")), ("h", ("",)), ("b", ("p", "v")), ("p", ("b",)), ("đ", ("d",)), ("k", ("c",)))
_FINALS = (("ng", "n"), ("nh", "n"), ("n", "ng"), ("t", "c"), ("c", "t"), ("ch", "t"), ("i", "y"), ("y", "i"))
_NON_WORD_RE = re.compile(r"[\W_]+")
_DIGIT_LETTER_RE = re.compile(r"(?<=\d)(?=[^\W\d_])|(?<=[^\W\d_])(?=\d)")
_FILLERS = ("à", "thì", "là", "ờ", "cái", "mà", "ạ", "nó", "ừ", "á")


def _loan_re():
    keys = sorted(LOANWORDS, key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(k) for k in keys) + r")(?!\w)")


_LOAN_RE = _loan_re()


def vosk_style(text: str, rng: random.Random | None = None) -> str:
    """The transcript a perfect Vietnamese recogniser would write for ``text`` (see the module notes)."""
    from ivr.language.normalize import digits_to_words

    rng = rng or random.Random(0)
    text = unicodedata.normalize("NFC", text or "").lower()
    text = _NON_WORD_RE.sub(" ", text)
    text = _DIGIT_LETTER_RE.sub(" ", text)
    text = _LOAN_RE.sub(lambda m: rng.choice(LOANWORDS[m.group(1)]), text)
    text = digits_to_words(text)
    return " ".join(text.split())


def _split_tone(syllable: str) -> tuple[str, str]:
    """(the syllable without its tone mark, NFD; the tone mark or "")."""
    d = unicodedata.normalize("NFD", syllable)
    tone = next((c for c in d if c in _TONE_MARKS), "")
    return d.replace(tone, "") if tone else d, tone


def _with_tone(base_nfd: str, tone: str) -> str:
    """Put ``tone`` on the main vowel of a toneless NFD syllable (modern placement, close enough)."""
    if not tone:
        return unicodedata.normalize("NFC", base_nfd)
    chars = list(base_nfd)
    vowels = [i for i, c in enumerate(chars) if c in "aeiouy"]
    if not vowels:
        return unicodedata.normalize("NFC", base_nfd)
    # a vowel carrying a quality mark wins; else the second of two vowels when a final consonant follows,
    # else the first of a pair ("hòa", "múa", "tìm")
    marked = [i for i in vowels if i + 1 < len(chars) and chars[i + 1] in _QUALITY]
    if marked:
        pos = marked[-1] + 1
    else:
        ends_consonant = chars[-1] not in "aeiouy" and chars[-1] not in _QUALITY
        if len(vowels) >= 2 and (ends_consonant or base_nfd.startswith(("qu", "gi"))):
            pos = vowels[1]
        else:
            pos = vowels[0]
    chars.insert(pos + 1, tone)
    return unicodedata.normalize("NFC", "".join(chars))


class NoiseChannel:
    """Seeded recognition errors at a syllable error rate ``ser`` (0..1)."""

    def __init__(self, ser: float, seed: int = 0, vocabulary: list[str] | None = None):
        if not 0.0 <= ser <= 1.0:
            raise ValueError(f"syllable error rate {ser} is outside 0..1")
        self.ser = ser
        self.rng = random.Random(seed)
        self.vocabulary = sorted(set(vocabulary or ())) or list(_FILLERS)

    def corrupt(self, text: str) -> str:
        """``text`` as the recogniser wrote it, with errors."""
        words = vosk_style(text, self.rng).split()
        out: list[str] = []
        for w in words:
            if self.rng.random() >= self.ser:
                out.append(w)
                continue
            kind = self.rng.random()
            if kind < 0.55:
                out.append(self.sound_alike(w))
            elif kind < 0.70:
                out.append(self.rng.choice(self.vocabulary))  # heard as another word
            elif kind < 0.85:
                continue  # dropped
            else:
                out.append(w)  # an inserted syllable (a filler or a split word)
                out.append(self.rng.choice(_FILLERS) if self.rng.random() < 0.6 else self.sound_alike(w))
        return " ".join(out)

    def sound_alike(self, word: str) -> str:
        """One syllable changed the way a recogniser or an accent changes it (tone, initial, final, vowel)."""
        rng = self.rng
        for _ in range(4):
            base, tone = _split_tone(word)
            choice = rng.random()
            if choice < 0.35:
                options = _TONE_SWAPS.get(tone, ("",))
                new = _with_tone(base, rng.choice(options))
            elif choice < 0.6:
                new = self._initial(base, tone)
            elif choice < 0.8:
                new = self._final(base, tone)
            else:
                new = self._vowel(base, tone)
            if new and new != word:
                return new
        return word

    def _initial(self, base: str, tone: str) -> str | None:
        for old, news in _INITIALS:
            if base.startswith(old) and len(base) > len(old) and base[len(old)] in "aeiouy":
                return _with_tone(self.rng.choice(news) + base[len(old):], tone)
        return None

    def _final(self, base: str, tone: str) -> str | None:
        for old, new in _FINALS:
            if base.endswith(old) and len(base) > len(old):
                stem = base[: -len(old)]
                if stem and (stem[-1] in "aeiouy" or stem[-1] in _QUALITY):
                    return _with_tone(stem + new, tone)
        return None

    def _vowel(self, base: str, tone: str) -> str | None:
        chars = list(base)
        marks = [i for i, c in enumerate(chars) if c in _QUALITY]
        if marks and self.rng.random() < 0.6:
            i = self.rng.choice(marks)
            chars[i] = self.rng.choice([m for m in ("", *_QUALITY) if m != chars[i]])
            if chars[i] == "\u0306" and chars[i - 1] != "a":
                chars[i] = ""
            if chars[i] == "\u031b" and chars[i - 1] not in "ou":
                chars[i] = ""
            if chars[i] == "\u0302" and chars[i - 1] not in "aeo":
                chars[i] = ""
            return _with_tone("".join(chars), tone)
        vowels = [i for i, c in enumerate(chars) if c in "aeo"]
        if not vowels:
            return None
        i = self.rng.choice(vowels)
        chars.insert(i + 1, "\u0302")
        return _with_tone("".join(chars), tone)
