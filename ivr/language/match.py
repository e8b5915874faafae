"""Match what a caller said to one FAQ entry: answer it, ask to confirm it, or reject it.

Every phrasing of an entry (its question, paraphrases and keywords) is normalised once, at construction, into
three forms: the canonical text, its diacritic-free fold, and a weighted bag of words. A caller's text is
scored against all phrasings at once with rapidfuzz batch calls:

* **weighted word overlap** (the backbone): words and word pairs carry an IDF weight computed over the
  entries, so a word every entry shares ("tài khoản", "thiết bị") counts for little and a distinguishing one
  ("quên", "đổi", "pin", "48", "wifi") for much. Each bag is encoded as a sorted string of private-use
  characters, one feature repeated by its weight; the LCS of two sorted strings is the size of their multiset
  intersection, so ``rapidfuzz.distance.LCSseq`` gives the weighted overlap of the caller's words with every
  phrasing in one C call. Caller words the FAQ has never seen count against the match, which is what
  rejects "mật khẩu wifi".
* **fuzzy text similarity** (``token_set_ratio`` / ``token_sort_ratio``) over the canonical text (or the
  fold, for text without diacritics), which forgives recognition slips inside words.

A phrasing's score mixes both; an entry's score is the best of its phrasings. The decision uses the
thresholds in ``config/match.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import LCSseq, Levenshtein

from ivr.content.faq import Faq
from ivr.errors import IvrError
from ivr.language.ngram import NgramIndex
from ivr.language.normalize import fold, is_folded, normalize, strip_marks
from ivr.language.phonetic import key as sound_key
from ivr.language.phonetic import keys as sound_keys

Decision = Literal["answer", "confirm", "reject"]

# How strongly a caller's words point to another service (the ``named`` of the decision): NAMES, a word that
# names one ("wifi", "ngân"): every entry's score takes out_of_scope_word_factor and an answer outright needs
# the wide out-of-scope gaps; HINTS, an ordinary word only one out-of-scope phrasing happens to use ("nhà",
# "hướng dẫn"): only the wide gaps (a wrong answer read out is the costliest mistake, while lowering every
# entry for "hướng dẫn" or "kết nối" rejects callers asking about SmartCA). True is NAMES.
NAMES = 1.0
HINTS = 0.5

# Words that say nothing about which question is asked: pronouns, particles, auxiliaries. They are left out of
# the weighted overlap entirely (a caller's "em", "thì", "rồi" is neither evidence for nor against an entry).
STOPWORDS = frozenset(
    """
    tôi em mình anh chị bạn tớ cháu con chúng ta họ nó bác cô chú ông bà
    thì là mà của cho với và hay hoặc nhưng nên vì do để nếu khi lúc thế vậy nào gì sao đâu
    rồi nhé nhỉ nha chứ đã đang sẽ vừa cứ luôn cũng vẫn còn lại nữa đi ra vào lên xuống
    cái các những này đó kia ấy một số bị được ạ ơi dạ vâng ừ à ơ ờ giúp hộ giùm nhờ
    làm ai muốn cần phải có không hỏi xin vui lòng thưa ok giờ bây nay hôm
    thôi bên kiểu như nhá hả ha chút tí xíu
    """.split()
)
_FOLDED_STOPWORDS = frozenset(fold(w) or w for w in STOPWORDS)

# Words that ask for help without saying about what ("tôi cần hỗ trợ", "tôi có vấn đề", "cần tư vấn"). They
# keep their weight in the overlap (FAQ 7 is about phones that "không hỗ trợ sinh trắc học"), but on their
# own they are weak evidence: toward the evidence of a match they count at ``generic_word_share``, so that a
# question whose only content they are is never answered outright, and usually not even confirmed.
GENERIC_WORDS = (
    "hỗ trợ", "trợ giúp", "giúp đỡ", "vấn đề", "thắc mắc", "tư vấn", "câu hỏi", "hướng dẫn", "sự cố",
    "trục trặc",
)

DEFAULTS = {
    "answer_threshold": 0.70,
    "confirm_threshold": 0.48,
    "margin": 0.06,
    "lead_threshold": 1.01,  # a clearly leading entry scoring at least this is confirmed ...
    "lead_ratio": 1e9,  # ... when it scores at least lead_ratio times the runner-up
    "answer_lead_threshold": 1.01,  # a far-leading entry scoring at least this is answered outright ...
    "answer_lead_ratio": 1e9,  # ... when it scores at least this many times the runner-up
    "unknown_cap": 0.0,  # > 0: unknown caller words saturate at this many words (long chatty sentences)
    "unmatched_cap": 0.0,  # > 0: caller weight a phrasing leaves unmatched saturates at this many words
    "out_of_scope_margin": 0.0,  # rejected as out of scope when an out-of-scope phrasing scores >= top - this
    "answer_out_of_scope_gap": 0.0,  # answered outright only when the best out-of-scope phrasing scores <= top - this
    "answer_out_of_scope_gap_unnamed": 0.0,  # ... this, when the caller names no other service
    "out_of_scope_word_factor": 1.0,  # entry scores factor when the caller uses a word only out-of-scope
    "out_of_scope_floor": 0.25,  # ... phrasings use ("wifi", "token") and one of them scores at least this
    "overlap_weight": 0.7,  # share of the weighted word overlap in a phrasing's score (rest: fuzzy)
    "caller_coverage_beta": 1.5,  # >1: covering what the caller said matters more than covering the phrasing
    "unknown_word_weight": 0.9,  # weight of a caller word the FAQ never uses (1.0 = a word unique to one entry)
    "near_word_weight": 0.0,  # a misheard word one letter from a known word counts as it, at this share
    "fold_factor": 0.9,  # score factor of the diacritic-free form (it confuses "mất"/"mật")
    "sound_factor": 0.8,  # score factor of the sound-alike form (ivr/language/phonetic.py)
    "fuzzy_gate": 1.0,  # the fuzzy score counts in proportion to (caller coverage) ** fuzzy_gate
    "evidence_scale": 1.33,  # matched weight at which evidence reaches 63 % (score factor 1 - exp(-w/scale))
    "pair_weight": 0.8,  # weight of a word pair relative to its IDF
    "weight_scale": 9,  # repeats per unit of weight in the encoded bags (resolution of the weights)
    "max_candidates": 400,  # phrasings rescored after the first pass (large FAQs)
    "doubtful_word_conf": 0.0,  # recognised words below this confidence count as near words (weakly)
    "generic_word_share": 1.0,  # share of a generic word's weight (GENERIC_WORDS) in the evidence of a match
    # the second signal (ivr/language/ngram.py: TF-IDF character n-gram cosine over the diacritic-free form)
    "ngram_weight": 0.0,  # its share in an entry's score (rest: the word matcher's score)
    "answer_needs_agreement": 0,  # 1: answered outright only when both signals rank the same entry first
    "agree_answer_threshold": 1.01,  # both signals agree: answered outright at this score ...
    "agree_margin": 1.0,  # ... when it leads the runner-up by this
    "ngram_out_of_scope_gap": -1.0,  # answered outright only when the n-gram's best entry beats its best
                                     # out-of-scope phrasing by this (-1: no condition) ...
    "ngram_out_of_scope_gap_unnamed": -1.0,  # ... by this when the caller names no other service
    "out_of_scope_ngram_share": 0.0,  # the n-gram cosine's share when the best out-of-scope phrasing is
                                      # compared with the best entry (0: the word matcher alone)
}


# Allowed range of each numeric setting (inclusive). The decision thresholds are scores in [0, 1]; a
# threshold of 1.01 switches that decision off (as DEFAULTS do for lead_threshold, with lead_ratio 1e9).
_RANGES = {
    "answer_threshold": (0.0, 1.01), "confirm_threshold": (0.0, 1.01), "margin": (0.0, 1.0),
    "lead_threshold": (0.0, 1.01), "lead_ratio": (1.0, 1e9), "answer_lead_threshold": (0.0, 1.01),
    "answer_lead_ratio": (1.0, 1e9), "unknown_cap": (0.0, 100.0), "unmatched_cap": (0.0, 100.0),
    "out_of_scope_margin": (-1.0, 1.0), "answer_out_of_scope_gap": (0.0, 1.0),
    "answer_out_of_scope_gap_unnamed": (0.0, 1.0), "out_of_scope_word_factor": (0.0, 1.0), "out_of_scope_floor": (0.0, 1.0),
    "overlap_weight": (0.0, 1.0), "caller_coverage_beta": (0.01, 100.0),
    "unknown_word_weight": (0.0, 100.0), "near_word_weight": (0.0, 1.0), "fold_factor": (0.0, 1.0),
    "sound_factor": (0.0, 1.0), "fuzzy_gate": (0.0, 100.0), "evidence_scale": (0.01, 100.0),
    "pair_weight": (0.0, 100.0), "weight_scale": (1, 1000), "max_candidates": (1, 1_000_000),
    "doubtful_word_conf": (0.0, 1.0), "generic_word_share": (0.0, 1.0),
    "ngram_weight": (0.0, 1.0), "answer_needs_agreement": (0, 1), "agree_answer_threshold": (0.0, 1.01),
    "agree_margin": (0.0, 1.0), "ngram_out_of_scope_gap": (-1.0, 1.0), "ngram_out_of_scope_gap_unnamed": (-1.0, 1.0),
    "out_of_scope_ngram_share": (0.0, 1.0),
}


def check_settings(settings: dict, source: str = "config/match.yaml") -> dict:
    """Validate matcher settings: unknown keys, non-numbers and values out of range are an ``IvrError``
    naming the file and the setting. Returns the settings merged over the defaults."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        fix = f"remove it, or use one of: {', '.join(sorted(DEFAULTS))}"
        if unknown[0] in ("foreign_words", "foreign_factor"):
            fix = "remove it: other services are listed as out-of-scope phrasings in faq/out_of_scope.yaml"
        raise IvrError(f"{source}: unknown setting {unknown[0]!r}", fix)
    merged = {**DEFAULTS, **settings}
    for key, (low, high) in _RANGES.items():
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise IvrError(f"{source}: setting {key!r} must be a number, not {value!r}",
                           f"write a number between {low:g} and {high:g}")
        if not low <= value <= high:
            raise IvrError(f"{source}: setting {key!r} = {value:g} is outside {low:g}..{high:g}",
                           f"write a number between {low:g} and {high:g}")
    return merged


# a Vietnamese syllable (marks stripped): onset, vowels, final consonant
_SYLLABLE_RE = re.compile(r"(?:ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnprstvx])?[aeiouy]{1,3}(?:ch|ng|nh|[cmnpt])?")


def _foreign(word: str) -> bool:
    """True for a word not spelled as a Vietnamese syllable ("icloud", "wifi", "fpt"): a name."""
    return word.isalpha() and not _SYLLABLE_RE.fullmatch(strip_marks(word))


@dataclass(frozen=True)
class Candidate:
    faq_id: int
    score: float


@dataclass(frozen=True)
class MatchResult:
    decision: Decision
    faq_id: int | None
    score: float
    candidates: list[Candidate] = field(default_factory=list)
    out_of_scope: bool = False  # rejected because the question is closer to what the line does not handle
    out_of_scope_score: float = 0.0  # best score of an out-of-scope phrasing
    names_other_service: bool = False  # the caller named another service ("wifi", "token", "ngân hàng": NAMES)


class _Corpus:
    """One form (canonical, folded or sound-alike) of every phrasing, with its weighted bag encoded for
    LCSseq. Weights (IDF) are computed over the FAQ's entries; words only out-of-scope phrasings use weigh as
    a word unique to one entry."""

    def __init__(self, texts: list[str], owners: list[int], stopwords: frozenset[str], settings: dict,
                 generic: list[str] = ()):
        self.texts = texts
        self.stopwords = stopwords
        # GENERIC_WORDS in this corpus's form, longest first
        self.generic = sorted({tuple(g.split()) for g in generic if g.split()}, key=len, reverse=True)
        self.pair_weight = float(settings["pair_weight"])
        self.scale = float(settings["weight_scale"])
        self.unknown = float(settings["unknown_word_weight"])
        self.unknown_cap = float(settings["unknown_cap"])
        self.near_weight = float(settings["near_word_weight"])
        feats = [self.features(t.split()) for t in texts]
        n_entries = max(2, len({o for o in owners if o > 0}))
        df: dict[str, set[int]] = {}
        for f, owner in zip(feats, owners, strict=True):
            for x in f:
                d = df.setdefault(x, set())
                if owner > 0:
                    d.add(owner)
        # IDF in units of "a word only one entry uses" (= 1.0), so that the settings mean the same for an FAQ
        # of 3 entries or of 10,000
        unique = math.log((n_entries - 0.5) / 1.5 + 1.0)
        self.weight: dict[str, float] = {}
        for x, owners_of in df.items():
            d = max(1, len(owners_of))
            idf = math.log((n_entries - d + 0.5) / (d + 0.5) + 1.0) / unique
            self.weight[x] = idf * (self.pair_weight if " " in x else 1.0)
        self.code = {x: chr(0xF0000 + i) for i, x in enumerate(sorted(self.weight))}
        self.bags = [self.encode(f)[0] for f in feats]
        self.sizes = [len(b) for b in self.bags]
        self.vocabulary = sorted(x for x in self.weight if " " not in x and len(x) >= 3)
        self._near: dict[str, str | None] = {}

    def features(self, words: list[str]) -> list[str]:
        content = [w for w in words if w not in self.stopwords]
        pairs = [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)
                 if a not in self.stopwords and b not in self.stopwords]
        return list(dict.fromkeys(content + pairs))

    def generic_positions(self, words: list[str]) -> frozenset[int]:
        """Positions of ``words`` that belong to a generic word ("hỗ trợ", "vấn đề")."""
        found: set[int] = set()
        for g in self.generic:
            n = len(g)
            for i in range(len(words) - n + 1):
                if tuple(words[i:i + n]) == g:
                    found.update(range(i, i + n))
        return frozenset(found)

    def generic_features(self, words: list[str], positions: frozenset[int]) -> set[str]:
        """The features of ``words`` that rest on a word at ``positions``: those words (unless said elsewhere
        too) and every pair one of them is part of ("tôi có vấn đề": "vấn", "đề", "có vấn", "vấn đề")."""
        if not positions:
            return set()
        pairs = [(i, f"{a} {b}") for i, (a, b) in enumerate(zip(words, words[1:], strict=False))]
        inside = {words[i] for i in positions} | {x for i, x in pairs if i in positions or i + 1 in positions}
        outside = {w for i, w in enumerate(words) if i not in positions}
        outside |= {x for i, x in pairs if i not in positions and i + 1 not in positions}
        return inside - outside

    def near(self, word: str) -> str | None:
        """The known word one edit away from ``word`` (the heaviest if several), or None."""
        if word in self._near:
            return self._near[word]
        found = None
        if len(word) >= 3 and self.vocabulary:
            hits = process.extract(word, self.vocabulary, scorer=Levenshtein.distance, score_cutoff=1, limit=None)
            if hits:
                found = max(hits, key=lambda h: (self.weight[h[0]], h[0]))[0]
        if len(self._near) < 100_000:
            self._near[word] = found
        return found

    def correct(self, text: str, doubtful: frozenset[int] = frozenset()) -> tuple[list[str], set[str]]:
        """The words of ``text`` with unknown (or doubtful) words replaced by a known word one edit away, and
        the set of replaced words (they count weakly)."""
        words = text.split()
        weak: set[str] = set()
        if self.near_weight <= 0:
            return words, weak
        for i, w in enumerate(words):
            if w in self.stopwords or (w in self.weight and i not in doubtful):
                continue
            n = self.near(w) if w not in self.weight else w
            if n is not None:
                words[i] = n
                weak.add(n)
        return words, weak

    def encode(self, feats: list[str], weak: set[str] | None = None) -> tuple[str, float]:
        """The sorted multiset string of ``feats`` and the weight of the words the corpus has never seen.
        Features made of ``weak`` words (misheard, corrected) count at ``near_word_weight``."""
        parts = []
        unknown = 0.0
        for x in feats:
            c = self.code.get(x)
            if c is None:
                unknown += self.unknown * (self.pair_weight if " " in x else 1.0)
                continue
            w = self.weight[x]
            if weak and any(part in weak for part in x.split()):
                w *= self.near_weight
            parts.append(c * max(1, round(w * self.scale)))
        if self.unknown_cap > 0:
            # a long sentence carries many words the FAQ never uses: the first few count almost fully, the
            # rest less and less, so a chatty caller is not rejected for talking, only for not matching
            cap = self.unknown_cap * self.unknown
            unknown = cap * (1.0 - math.exp(-unknown / cap))
        return "".join(sorted("".join(parts))), unknown * self.scale


class Matcher:
    """Scores caller text against every FAQ entry. Build once (it precomputes); ``match`` is cheap."""

    def __init__(self, faq: Faq, settings: dict | None = None):
        if settings is None:
            from ivr.content import config

            settings = config.load("match")
            self.settings = check_settings(settings or {}, source=str(config.path("match")))
        else:
            self.settings = check_settings(settings or {})
        s = self.settings
        self.set_decision(s)
        self.fold_factor = float(s["fold_factor"])
        self.sound_factor = float(s["sound_factor"])
        self.doubtful_conf = float(s["doubtful_word_conf"])
        self.faq = faq
        owners: list[int] = []
        phrasings: list[str] = []
        for e in faq.entries:
            for text in (e.question, *e.paraphrases, *e.keywords):
                owners.append(e.id)
                phrasings.append(text)
        # what the line does not handle: phrasings owned by negative ids (never a candidate)
        for k, group in enumerate(getattr(faq, "out_of_scope", None) or []):
            for text in group.phrasings:
                owners.append(-(k + 1))
                phrasings.append(text)
        self.owners = owners
        normed = [normalize(t) for t in phrasings]
        generic = [normalize(g) for g in GENERIC_WORDS]
        self.norm = _Corpus(normed, owners, STOPWORDS, s, generic)
        self.fold = _Corpus([fold(t) for t in normed], owners, _FOLDED_STOPWORDS, s, [fold(g) for g in generic])
        content_keys = {sound_key(w) for t in normed for w in t.split() if w not in STOPWORDS}
        sound_stop = frozenset(sound_key(w) for w in STOPWORDS) - content_keys
        self.sound = _Corpus([sound_keys(t) for t in normed], owners, sound_stop, s, [sound_keys(g) for g in generic])
        self.entry_ids = [e.id for e in faq.entries]
        self.oos_word_factor = float(s["out_of_scope_word_factor"])
        self.oos_floor = float(s["out_of_scope_floor"])
        # words that only out-of-scope phrasings use. A foreign name or a word several of them rely on names
        # another service ("wifi", "zalo", "icloud", "ngân"); any other is incidental wording ("nhà", "hướng
        # dẫn", "kết nối", the "ca" of "bkav ca"), said by callers about SmartCA too: a hint
        self.oos_words, self.oos_hint_words = self._naming_terms(self.norm)
        # the same without diacritics, unless the FAQ uses that spelling
        folded_inside = {x for t, o in zip(self.fold.texts, owners, strict=True) if o > 0 for x in t.split()}
        self.oos_folded_words = frozenset(f for w in self.oos_words if (f := strip_marks(w)) not in folded_inside)
        self.oos_folded_hint_words = frozenset(
            f for w in self.oos_hint_words if (f := strip_marks(w)) not in folded_inside) - self.oos_folded_words
        # the second signal: character n-grams of the diacritic-free form (forgives the marks a recogniser
        # gets wrong, and a wrong letter keeps the rest of its word's n-grams)
        self.ngram: NgramIndex | None = None
        if (self.ngram_weight > 0 or self.needs_agreement or self.agree_threshold <= 1.0
                or self.ngram_oos_gap > -1.0 or self.ngram_oos_gap_unnamed > -1.0 or self.oos_ngram_share > 0):
            self.ngram = NgramIndex(self.fold.texts)
            self._owner_keys = sorted(set(owners))
            slot = {o: k for k, o in enumerate(self._owner_keys)}
            self._owner_slots = np.array([slot[o] for o in owners], dtype=np.int64)

    def set_decision(self, settings: dict) -> None:
        """Take the decision settings (thresholds, margins, the second signal's share and vetoes) from
        ``settings`` (checked ones, as ``check_settings`` returns them). Scoring settings are fixed at
        construction; scripts/tune_matcher.py sweeps these on one matcher."""
        s = settings
        self.answer_threshold = float(s["answer_threshold"])
        self.confirm_threshold = float(s["confirm_threshold"])
        self.margin = float(s["margin"])
        self.lead_threshold = float(s["lead_threshold"])
        self.lead_ratio = float(s["lead_ratio"])
        self.answer_lead_threshold = float(s["answer_lead_threshold"])
        self.answer_lead_ratio = float(s["answer_lead_ratio"])
        self.oos_margin = float(s["out_of_scope_margin"])
        self.answer_oos_gap = float(s["answer_out_of_scope_gap"])
        self.answer_oos_gap_unnamed = float(s["answer_out_of_scope_gap_unnamed"])
        self.ngram_weight = float(s["ngram_weight"])
        self.needs_agreement = bool(s["answer_needs_agreement"])
        self.agree_threshold = float(s["agree_answer_threshold"])
        self.agree_margin = float(s["agree_margin"])
        self.ngram_oos_gap = float(s["ngram_out_of_scope_gap"])
        self.ngram_oos_gap_unnamed = float(s["ngram_out_of_scope_gap_unnamed"])
        self.oos_ngram_share = float(s["out_of_scope_ngram_share"])

    def _naming_terms(self, corpus: _Corpus) -> tuple[frozenset[str], frozenset[str]]:
        """(names, hints) in ``corpus``'s form: the words only out-of-scope phrasings use that name another
        service (a foreign name, or a word two or more phrasings of one group use without a foreign name), and
        the rest: a word phrasings of different groups share ("màn hình" of a phone's and a computer's screen)
        is how callers describe anything, SmartCA included."""
        inside = {x for t, o in zip(corpus.texts, self.owners, strict=True) if o > 0
                  for x in corpus.features(t.split()) if " " not in x}
        # (group, the words of one of its phrasings that no entry uses)
        outside = [(o, set(t.split()) - inside - corpus.stopwords)
                   for t, o in zip(corpus.texts, self.owners, strict=True) if o < 0]
        words = set().union(*(ws for _, ws in outside))
        foreign = {w for w in words if _foreign(w)}
        # how many phrasings of each out-of-scope group use each such word where no foreign name names the
        # service already ("ca" of "chữ ký số bkav ca", "hình" of "truyền hình mytv" add nothing to "bkav", "mytv")
        uses: dict[tuple[int, str], int] = {}
        for group, ws in outside:
            if ws.isdisjoint(foreign):
                for w in ws:
                    uses[group, w] = uses.get((group, w), 0) + 1
        names = frozenset(foreign | {w for (_, w), n in uses.items() if n >= 2})
        return names, frozenset(words - names)

    def _naming(self, words: list[str], folded: list[str]) -> float:
        """NAMES when the caller's ``words`` (``folded``: the same without diacritics) name another service,
        HINTS when they only use another word that only out-of-scope phrasings use, else 0."""
        if not self.oos_words.isdisjoint(words) or not self.oos_folded_words.isdisjoint(folded):
            return NAMES
        if not self.oos_hint_words.isdisjoint(words) or not self.oos_folded_hint_words.isdisjoint(folded):
            return HINTS
        return 0.0

    # -- scoring -----------------------------------------------------------------------------------------

    def _phrasing_scores(self, corpus: _Corpus, text: str, doubtful: frozenset[int] = frozenset(),
                         among: list[int] | None = None) -> dict[int, float]:
        """Score of every phrasing (index -> [0, 1]) that shares anything with ``text`` (only the phrasings
        ``among`` when given: the candidates another form of the text found)."""
        s = self.settings
        generic_at = corpus.generic_positions(text.split())
        words, weak = corpus.correct(text, doubtful)
        text = " ".join(words)
        feats = corpus.features(words)
        bag, unknown = corpus.encode(feats, weak)
        q_size = len(bag) + unknown
        if q_size <= 0:
            return {}
        if among is None:
            hits = process.extract(
                bag, corpus.bags, scorer=LCSseq.normalized_similarity, processor=None,
                limit=int(s["max_candidates"]), score_cutoff=1e-9,
            )
            idx = [h[2] for h in hits]
        else:
            idx = among
        if not idx:
            return {}
        sub = {i: corpus.texts[i] for i in idx}
        bags = {i: corpus.bags[i] for i in idx}
        overlaps = {h[2]: h[1] for h in process.extract(bag, bags, scorer=LCSseq.similarity, processor=None,
                                                        limit=None)}
        # the overlap without the generic words: they count at generic_share toward the evidence
        generic = corpus.generic_features(words, generic_at)
        share = float(s["generic_word_share"])
        specific = overlaps
        if generic and share < 1.0:
            spec_bag = corpus.encode([f for f in feats if f not in generic], weak)[0]
            specific = {h[2]: h[1] for h in process.extract(spec_bag, bags, scorer=LCSseq.similarity,
                                                            processor=None, limit=None)}
        set_r = {h[2]: h[1] for h in process.extract(text, sub, scorer=fuzz.token_set_ratio, processor=None,
                                                      limit=None)}
        sort_r = {h[2]: h[1] for h in process.extract(text, sub, scorer=fuzz.token_sort_ratio, processor=None,
                                                       limit=None)}
        beta2 = float(s["caller_coverage_beta"]) ** 2
        w_overlap = float(s["overlap_weight"])
        gate = float(s["fuzzy_gate"])
        tau = float(s["evidence_scale"]) * corpus.scale
        # the caller's words a phrasing does not explain count against it, but a long chatty question is not
        # scored by its length: the unexplained weight saturates (cap * (1 - exp(-unexplained / cap)))
        cap = float(s["unmatched_cap"]) * corpus.scale
        out = {}
        for i in idx:
            inter = overlaps[i]
            if cap > 0:
                rest = max(0.0, q_size - inter)
                cq = inter / (inter + cap * (1.0 - math.exp(-rest / cap))) if inter else 0.0
            else:
                cq = inter / q_size
            cp = inter / corpus.sizes[i] if corpus.sizes[i] else 0.0
            f = (1 + beta2) * cq * cp / (beta2 * cp + cq) if inter else 0.0
            fuzzy = (0.5 * set_r[i] + 0.5 * sort_r[i]) / 100.0
            # fuzzy similarity only vouches for as much as the caller's words are covered
            # little matched weight (one shared word) is weak evidence however well it covers the phrasing
            sure = specific[i] + share * (inter - specific[i])
            evidence = 1.0 - math.exp(-sure / tau) if tau > 0 else 1.0
            out[i] = (w_overlap * f + (1 - w_overlap) * fuzzy * cq ** gate) * evidence
        return out

    def _owner_scores(self, text: str, word_conf: list[float] | None = None,
                      norm: str | None = None) -> tuple[dict[int, float], float]:
        """Best phrasing score per owner (entry id, or a negative id for an out-of-scope group), and how strongly
        the caller's words point to another service (NAMES, HINTS or 0). ``norm``: ``normalize(text)``, when
        known."""
        norm = normalize(text) if norm is None else norm
        if not norm:
            return {}, 0.0
        doubtful: frozenset[int] = frozenset()
        if word_conf and self.doubtful_conf > 0 and len(word_conf) == len(norm.split()):
            doubtful = frozenset(i for i, c in enumerate(word_conf) if c < self.doubtful_conf)
        folded_text = strip_marks(norm)  # norm is already normalised: fold() would normalise it again
        per_phrasing: dict[int, float] = {}

        def merge(scores: dict[int, float], factor: float) -> None:
            for i, v in scores.items():
                v *= factor
                if v > per_phrasing.get(i, 0.0):
                    per_phrasing[i] = v

        # the sound-alike form is the most forgiving: the phrasings it finds are the candidates of all forms
        # (one full pass instead of three)
        among = None
        if self.sound_factor > 0:
            sound = self._phrasing_scores(self.sound, sound_keys(norm), doubtful)
            merge(sound, self.sound_factor)
            among = list(sound)
        if is_folded(norm) or is_folded(text):
            merge(self._phrasing_scores(self.fold, folded_text, doubtful, among), 1.0)
        else:
            merge(self._phrasing_scores(self.norm, norm, doubtful, among), 1.0)
            # the fold forgives missing or wrong marks but confuses "mất"/"mật": it counts at a discount
            merge(self._phrasing_scores(self.fold, folded_text, doubtful, among), self.fold_factor)
        best: dict[int, float] = {}
        owners = self.owners
        for i, v in per_phrasing.items():
            o = owners[i]
            if v > best.get(o, 0.0):
                best[o] = v
        named = self._naming(norm.split(), folded_text.split())
        top_oos = max((v for o, v in best.items() if o < 0), default=0.0)
        if named >= NAMES and self.oos_word_factor < 1.0 and top_oos >= self.oos_floor:
            best = {o: (v * self.oos_word_factor if o > 0 else v) for o, v in best.items()}
        return best, named

    @staticmethod
    def _ranked(best: dict[int, float]) -> tuple[list[Candidate], float]:
        ranked = sorted(((o, v) for o, v in best.items() if o > 0), key=lambda kv: (-kv[1], kv[0]))
        cands = [Candidate(faq_id=o, score=round(min(1.0, max(0.0, v)), 4)) for o, v in ranked if v > 0]
        oos = max((v for o, v in best.items() if o < 0), default=0.0)
        return cands, round(min(1.0, max(0.0, oos)), 4)

    def _ngram_scores(self, text: str, norm: str | None = None) -> dict[int, float]:
        """Best character n-gram cosine per owner (entry id, or a negative id for an out-of-scope group).
        ``norm``: ``normalize(text)`` when the caller has it already."""
        if self.ngram is None:
            return {}
        folded = strip_marks(normalize(text) if norm is None else norm)
        if not folded:
            return {}
        best = np.zeros(len(self._owner_keys))
        np.maximum.at(best, self._owner_slots, self.ngram.cosine(folded))
        return {o: float(v) for o, v in zip(self._owner_keys, best.tolist(), strict=True) if v > 0}

    def _blend(self, best: dict[int, float], second: dict[int, float]) -> dict[int, float]:
        """The word matcher's scores with the n-gram cosine mixed in at ``ngram_weight``, for the entries (and
        out-of-scope groups) the word matcher found: a weighted geometric mean, so that both must vouch for an
        entry (the n-gram cosine knows nothing of generic words: "hỗ trợ" alone stays weak)."""
        w = self.ngram_weight
        if self.ngram is None or w <= 0:
            return best
        return {o: v ** (1 - w) * second.get(o, 0.0) ** w for o, v in best.items()}

    def scores(self, text: str) -> list[Candidate]:
        """Every entry that shares anything with ``text``, best first (one candidate per entry)."""
        best = self._owner_scores(text)[0]
        if self.ngram is not None and best:
            best = self._blend(best, self._ngram_scores(text))
        return self._ranked(best)[0]

    def _judge(self, best: dict[int, float], named: float, second: dict[int, float]) -> MatchResult:
        """Decide on the word matcher's owner scores ``best`` and the n-gram cosines ``second``.

        Out of scope is the word matcher's judgement (it knows which words name other services); the blend of
        both signals ranks the entries; an answer outright needs both signals to rank the same entry first
        (``answer_needs_agreement``) and the n-gram's best entry clear of its best out-of-scope phrasing."""
        cands, oos = self._ranked(best)
        if self.ngram is None or not cands:
            return self._decide(cands, oos, named)
        top = cands[0]
        inside = {o: v for o, v in second.items() if o > 0}
        second_top = max(inside, key=lambda o: (inside[o], -o)) if inside else None
        second_oos = max((v for o, v in second.items() if o < 0), default=0.0)
        blended, blended_oos = self._ranked(self._blend(best, second))
        # out of scope: the best out-of-scope phrasing against the best entry, both signals mixed (weighted
        # geometric mean) at out_of_scope_ngram_share (0: the word matcher alone). A long question shares its
        # context words ("công ty", "ngân hàng") with some short out-of-scope phrasing; the n-gram cosine weighs
        # the whole question. It does not know which words name another service: when the caller names one,
        # its entries' cosines take the same factor as the word matcher's scores (out_of_scope_word_factor).
        top_in, top_out = self._out_of_scope_contest(top.score, oos, best, second, named)
        if top_out > 0 and top_out >= top_in - self.oos_margin:
            return MatchResult("reject", None, top.score, cands, out_of_scope=True, out_of_scope_score=oos,
                               names_other_service=named >= NAMES)
        agree = second_top == top.faq_id == blended[0].faq_id
        # "quên mật khẩu" shares most of its n-grams with "quên mật khẩu zalo": the n-gram's out-of-scope
        # veto is wide when the caller names another service, narrow (or off) otherwise
        gap = self.ngram_oos_gap if named else self.ngram_oos_gap_unnamed
        sure = (agree or not self.needs_agreement) and inside.get(second_top, 0.0) - second_oos >= gap
        own = best.get(blended[0].faq_id, 0.0)
        result = self._decide_in_scope(blended, blended_oos, named, sure=sure, agree=agree, own_score=own)
        return dataclasses.replace(result, names_other_service=True) if named >= NAMES else result

    def _out_of_scope_contest(self, top: float, oos: float, best: dict[int, float], second: dict[int, float],
                              named: float) -> tuple[float, float]:
        """(best entry, best out-of-scope group) as the out-of-scope decision weighs them: the word matcher's
        scores ``best`` (``top``, ``oos``) mixed with the n-gram cosines ``second`` at
        ``out_of_scope_ngram_share``."""
        w = self.oos_ngram_share
        if w <= 0 or not second:
            return top, oos
        # the word matcher's scores already carry the factor (Matcher._owner_scores)
        f = self.oos_word_factor if named >= NAMES and oos >= self.oos_floor else 1.0
        top_in = max((v ** (1 - w) * (f * second.get(o, 0.0)) ** w for o, v in best.items() if o > 0), default=0.0)
        top_out = max((v ** (1 - w) * second.get(o, 0.0) ** w for o, v in best.items() if o < 0), default=0.0)
        return top_in, top_out

    def _decide(self, candidates: list[Candidate], oos: float, named: float = NAMES) -> MatchResult:
        """``named``: how strongly the caller's words point to another service (NAMES, HINTS or 0)."""
        if not candidates:
            return MatchResult("reject", None, 0.0, [], out_of_scope=oos > 0, out_of_scope_score=oos,
                               names_other_service=named >= NAMES)
        top = candidates[0]
        if oos > 0 and oos >= top.score - self.oos_margin:
            return MatchResult("reject", None, top.score, candidates, out_of_scope=True, out_of_scope_score=oos,
                               names_other_service=named >= NAMES)
        result = self._decide_in_scope(candidates, oos, named)
        return dataclasses.replace(result, names_other_service=True) if named >= NAMES else result

    def _decide_in_scope(self, candidates: list[Candidate], oos: float, named: float, sure: bool = True,
                         agree: bool = False, own_score: float | None = None) -> MatchResult:
        """``sure``: nothing the second signal says vetoes an answer outright; ``agree``: both signals rank
        the top candidate first (it may be answered at ``agree_answer_threshold`` / ``agree_margin``).
        ``own_score``: the word matcher's own score of the top candidate. The rules for low scores (agreement,
        a far or clear lead) need it to reach their threshold too: the n-gram cosine alone does not know
        that "hỗ trợ" says nothing, nor lifts "trời hôm nay đẹp quá" into a confirmation."""
        top = candidates[0]
        runner_up = candidates[1].score if len(candidates) > 1 else 0.0
        # an answer read out to a caller asking about another service is the costliest mistake: a question
        # nearly as close to what the line does not handle is confirmed, never answered outright. The gap is
        # wide when the caller names another service ("token", "zalo"), narrow otherwise: then what an
        # out-of-scope phrasing shares with the question is what the entries say too ("quên mật khẩu" is close
        # to "quên mật khẩu wifi nhà" and still answered), unless the naming word was misheard.
        gap = self.answer_oos_gap if named else self.answer_oos_gap_unnamed
        clear_of_oos = oos <= top.score - gap and sure
        own = top.score if own_score is None else min(top.score, own_score)
        if clear_of_oos and agree and own >= self.agree_threshold and top.score - runner_up >= self.agree_margin:
            return MatchResult("answer", top.faq_id, top.score, candidates, out_of_scope_score=oos)
        if clear_of_oos and top.score >= self.answer_threshold and top.score - runner_up >= self.margin:
            return MatchResult("answer", top.faq_id, top.score, candidates, out_of_scope_score=oos)
        # far ahead of every other entry (a long chatty sentence scores low while its ranking is sure)
        if (clear_of_oos and own >= self.answer_lead_threshold
                and top.score >= self.answer_lead_ratio * runner_up):
            return MatchResult("answer", top.faq_id, top.score, candidates, out_of_scope_score=oos)
        if top.score >= self.confirm_threshold:
            return MatchResult("confirm", top.faq_id, top.score, candidates, out_of_scope_score=oos)
        # a moderate score far ahead of every other entry: the ranking is trusted, the caller is asked
        if own >= self.lead_threshold and top.score >= self.lead_ratio * runner_up:
            return MatchResult("confirm", top.faq_id, top.score, candidates, out_of_scope_score=oos)
        return MatchResult("reject", None, top.score, candidates, out_of_scope_score=oos)

    def match(self, text: str, word_conf: list[float] | None = None) -> MatchResult:
        """Decide what to do with ``text``. Never raises on odd input: it is rejected.

        ``word_conf``: the recogniser's confidence of each word of ``text`` (in order); words below
        ``doubtful_word_conf`` may be read as a known word one letter away."""
        try:
            norm = normalize(text) if isinstance(text, str) else ""
            best, named = self._owner_scores(text, word_conf, norm) if norm else ({}, 0.0)
            second = self._ngram_scores(text, norm) if best and self.ngram is not None else {}
        except (ValueError, TypeError):
            best, named, second = {}, 0.0, {}
        return self._judge(best, named, second)

    def match_nbest(self, hypotheses: list[tuple[str, float]]) -> MatchResult:
        """Decide on a recogniser's n-best list: (text, weight) pairs, weights >= 0 (normalised here).

        Each entry's score is the weighted mean of its scores over the hypotheses, so an entry that several
        likely hypotheses point to wins over one that a single hypothesis matches."""
        hyps = [(t, max(0.0, float(w))) for t, w in hypotheses if isinstance(t, str) and t.strip()]
        total = sum(w for _, w in hyps)
        if not hyps:
            return MatchResult("reject", None, 0.0, [])
        if total <= 0:
            hyps = [(t, 1.0) for t, _ in hyps]
            total = float(len(hyps))
        if len(hyps) == 1:
            return self.match(hyps[0][0])
        combined: dict[int, float] = {}
        combined_second: dict[int, float] = {}
        named = 0.0  # the strongest naming of a hypothesis with weight
        for text, w in hyps:
            try:
                norm = normalize(text)
                best, naming = self._owner_scores(text, norm=norm)
                second = self._ngram_scores(text, norm) if self.ngram is not None else {}
            except (ValueError, TypeError):
                best, naming, second = {}, 0.0, {}
            if w > 0:
                named = max(named, naming)
            for o, v in best.items():
                combined[o] = combined.get(o, 0.0) + v * w / total
            for o, v in second.items():
                combined_second[o] = combined_second.get(o, 0.0) + v * w / total
        return self._judge(combined, named, combined_second)


# -- yes / no for confirmations ---------------------------------------------------------------------------

_NO = ("khong phai", "khong dung", "khong co", "chua dung", "chua phai", "khong", "ko", "khong ", "hong",
       "khum", "sai roi", "sai", "chua", "nham roi", "nham", "no", "nope")
_YES = ("dung roi", "dung vay", "dung the", "dung", "phai roi", "phai", "chinh xac", "co", "duoc", "ok",
        "okay", "o ke", "oke", "yes", "uh", "uhm", "vang", "u", "da", "a", "um", "ung")
_WEAK_YES = frozenset({"vang", "u", "da", "a", "um", "uh", "uhm", "ung"})
_YES_NO_RE = re.compile(
    r"(?<!\w)(" + "|".join(sorted({*_NO, *_YES}, key=len, reverse=True)) + r")(?!\w)"
)
_NO_SET = frozenset(x.strip() for x in _NO)


def yes_no(text: str) -> Literal["yes", "no"] | None:
    """"yes", "no" or None for a caller's reply to "Có phải bạn hỏi về ...?".

    The first decisive word wins ("không phải" -> no, "đúng rồi" -> yes); "dạ", "vâng", "ừ" alone are a yes
    but give way to a decisive word after them ("dạ không" -> no).
    """
    if not isinstance(text, str):
        return None
    folded = _strip(text)
    weak = False
    for m in _YES_NO_RE.finditer(folded):
        word = m.group(1)
        if word in _NO_SET:
            return "no"
        if word in _WEAK_YES:
            weak = True
            continue
        return "yes"
    return "yes" if weak else None


def _strip(text: str) -> str:
    import unicodedata

    t = unicodedata.normalize("NFD", unicodedata.normalize("NFC", text).lower().replace("đ", "d"))
    t = re.sub(r"[\u0300-\u036f]", "", t)
    return re.sub(r"[\W_]+", " ", t).strip()
