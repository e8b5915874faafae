"""A sound-alike key per Vietnamese syllable: two syllables a recogniser or a regional accent confuses get the
same key.

``key("mật")`` == ``key("mất")`` == ``key("mặc")`` == "mat": the key drops the tone (hỏi/ngã, sắc/nặng...)
and the vowel marks (ô/o/ơ, ê/e, ă/â/a, ư/u), and merges the initials d/gi/r/v, s/x, ch/tr, n/l, c/k/q, and
the finals n/ng/nh, t/c/ch, and i/y. It is used beside the exact and the diacritic-free forms, at a discount:
it forgives the confusions, not the meaning.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_COMBINING_RE = re.compile(r"[\u0300-\u036f]")
# initial consonants, longest first -> class
_INITIALS = (  # on the mapped spelling: "d" is already "z" and "đ" is "d"
    ("ngh", "N"), ("ng", "N"), ("gh", "g"), ("gi", "z"), ("qu", "kw"), ("ch", "c"), ("tr", "c"), ("ph", "f"),
    ("th", "T"), ("kh", "x"), ("nh", "J"), ("z", "z"), ("r", "z"), ("v", "z"), ("j", "z"), ("s", "s"),
    ("x", "s"), ("n", "n"), ("l", "n"), ("k", "k"), ("c", "k"), ("q", "k"), ("w", "kw"), ("d", "d"),
    ("b", "b"), ("p", "b"), ("g", "g"), ("h", "h"), ("m", "m"), ("t", "t"), ("f", "f"),
)
_FINALS = (("ng", "n"), ("nh", "n"), ("ch", "t"), ("n", "n"), ("c", "t"), ("t", "t"), ("m", "m"), ("p", "p"))


@lru_cache(maxsize=65536)
def key(syllable: str) -> str:
    """The sound-alike key of one syllable (lower case; any text without spaces)."""
    s = syllable.lower().replace("đ", "\x01")
    s = _COMBINING_RE.sub("", unicodedata.normalize("NFD", s)).replace("d", "z").replace("\x01", "d")
    if not s.isalpha():
        return s
    s = s.replace("y", "i")
    head = ""
    for old, new in _INITIALS:
        if s.startswith(old) and len(s) > len(old):
            head, s = new, s[len(old):]
            break
    tail = ""
    for old, new in _FINALS:
        if s.endswith(old) and len(s) > len(old):
            tail, s = new, s[: -len(old)]
            break
    return head + s + tail


def keys(text: str) -> str:
    """The key of every word of ``text``, space separated."""
    return " ".join(key(w) for w in text.split())
