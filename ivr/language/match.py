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

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from rapidfuzz import fuzz, process
from rapidfuzz.distance import LCSseq

from ivr.content.faq import Faq
from ivr.errors import IvrError
from ivr.language.normalize import fold, is_folded, normalize

Decision = Literal["answer", "confirm", "reject"]

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

DEFAULTS = {
    "answer_threshold": 0.70,
    "confirm_threshold": 0.48,
    "margin": 0.06,
    "lead_threshold": 1.01,  # a clearly leading entry scoring at least this is confirmed ...
    "lead_ratio": 1e9,  # ... when it scores at least lead_ratio times the runner-up
    "unknown_cap": 0.0,  # > 0: unknown caller words saturate at this many words (long chatty sentences)
    "foreign_words": [],  # words naming other services ("wifi", "facebook"): evidence of out of domain
    "foreign_factor": 1.0,  # score factor when the caller names one the FAQ never mentions
    "overlap_weight": 0.7,  # share of the weighted word overlap in a phrasing's score (rest: fuzzy)
    "caller_coverage_beta": 1.5,  # >1: covering what the caller said matters more than covering the phrasing
    "unknown_word_weight": 0.9,  # weight of a caller word the FAQ never uses (1.0 = a word unique to one entry)
    "fuzzy_gate": 1.0,  # the fuzzy score counts in proportion to (caller coverage) ** fuzzy_gate
    "evidence_scale": 1.33,  # matched weight at which evidence reaches 63 % (score factor 1 - exp(-w/scale))
    "pair_weight": 0.8,  # weight of a word pair relative to its IDF
    "weight_scale": 9,  # repeats per unit of weight in the encoded bags (resolution of the weights)
    "max_candidates": 400,  # phrasings rescored after the first pass (large FAQs)
}


# Allowed range of each numeric setting (inclusive). The decision thresholds are scores in [0, 1]; a
# threshold of 1.01 switches that decision off (as DEFAULTS do for lead_threshold, with lead_ratio 1e9).
_RANGES = {
    "answer_threshold": (0.0, 1.01), "confirm_threshold": (0.0, 1.01), "margin": (0.0, 1.0),
    "lead_threshold": (0.0, 1.01), "lead_ratio": (1.0, 1e9), "unknown_cap": (0.0, 100.0),
    "foreign_factor": (0.0, 1.0), "overlap_weight": (0.0, 1.0), "caller_coverage_beta": (0.01, 100.0),
    "unknown_word_weight": (0.0, 100.0), "fuzzy_gate": (0.0, 100.0), "evidence_scale": (0.01, 100.0),
    "pair_weight": (0.0, 100.0), "weight_scale": (1, 1000), "max_candidates": (1, 1_000_000),
}


def check_settings(settings: dict, source: str = "config/match.yaml") -> dict:
    """Validate matcher settings: unknown keys, non-numbers and values out of range are an ``IvrError``
    naming the file and the setting. Returns the settings merged over the defaults."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise IvrError(f"{source}: unknown setting {unknown[0]!r}",
                       f"remove it, or use one of: {', '.join(sorted(DEFAULTS))}")
    merged = {**DEFAULTS, **settings}
    for key, (low, high) in _RANGES.items():
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise IvrError(f"{source}: setting {key!r} must be a number, not {value!r}",
                           f"write a number between {low:g} and {high:g}")
        if not low <= value <= high:
            raise IvrError(f"{source}: setting {key!r} = {value:g} is outside {low:g}..{high:g}",
                           f"write a number between {low:g} and {high:g}")
    words = merged["foreign_words"]
    if words is None:
        merged["foreign_words"] = []
    elif not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise IvrError(f"{source}: setting 'foreign_words' must be a list of words",
                       "write it as [facebook, zalo, ...]")
    return merged


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


class _Corpus:
    """One form (canonical or folded) of every phrasing, with its weighted bag encoded for LCSseq."""

    def __init__(self, texts: list[str], owners: list[int], stopwords: frozenset[str], settings: dict):
        self.texts = texts
        self.stopwords = stopwords
        self.pair_weight = float(settings["pair_weight"])
        self.scale = float(settings["weight_scale"])
        self.unknown = float(settings["unknown_word_weight"])
        self.unknown_cap = float(settings["unknown_cap"])
        feats = [self.features(t) for t in texts]
        n_entries = len(set(owners))
        df: dict[str, set[int]] = {}
        for f, owner in zip(feats, owners, strict=True):
            for x in f:
                df.setdefault(x, set()).add(owner)
        # IDF in units of "a word only one entry uses" (= 1.0), so that the settings mean the same for an FAQ
        # of 3 entries or of 10,000
        unique = math.log((n_entries - 0.5) / 1.5 + 1.0)
        self.weight: dict[str, float] = {}
        for x, owners_of in df.items():
            d = len(owners_of)
            idf = math.log((n_entries - d + 0.5) / (d + 0.5) + 1.0) / unique
            self.weight[x] = idf * (self.pair_weight if " " in x else 1.0)
        self.code = {x: chr(0xF0000 + i) for i, x in enumerate(sorted(self.weight))}
        self.bags = [self.encode(f)[0] for f in feats]
        self.sizes = [len(b) for b in self.bags]

    def features(self, text: str) -> list[str]:
        words = text.split()
        content = [w for w in words if w not in self.stopwords]
        pairs = [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)
                 if a not in self.stopwords and b not in self.stopwords]
        return list(dict.fromkeys(content + pairs))

    def encode(self, feats: list[str]) -> tuple[str, float]:
        """The sorted multiset string of ``feats`` and the weight of the words the corpus has never seen."""
        parts = []
        unknown = 0.0
        for x in feats:
            c = self.code.get(x)
            if c is None:
                unknown += self.unknown * (self.pair_weight if " " in x else 1.0)
                continue
            parts.append(c * max(1, round(self.weight[x] * self.scale)))
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
        self.answer_threshold = float(s["answer_threshold"])
        self.confirm_threshold = float(s["confirm_threshold"])
        self.margin = float(s["margin"])
        self.lead_threshold = float(s["lead_threshold"])
        self.lead_ratio = float(s["lead_ratio"])
        self.foreign_factor = float(s["foreign_factor"])
        self.faq = faq
        owners: list[int] = []
        phrasings: list[str] = []
        for e in faq.entries:
            for text in (e.question, *e.paraphrases, *e.keywords):
                owners.append(e.id)
                phrasings.append(text)
        self.owners = owners
        normed = [normalize(t) for t in phrasings]
        self.norm = _Corpus(normed, owners, STOPWORDS, s)
        self.fold = _Corpus([fold(t) for t in normed], owners, _FOLDED_STOPWORDS, s)
        self.entry_ids = [e.id for e in faq.entries]
        # other services named by the caller, kept only when no FAQ phrasing mentions them
        vocab = " " + " ".join(normed) + " "
        foreign = {normalize(w) for w in s["foreign_words"] or []} - {""}
        foreign = {w for w in foreign if f" {w} " not in vocab}
        self._foreign_re = re.compile(
            r"(?<!\w)(?:" + "|".join(re.escape(w) for w in sorted(foreign, key=len, reverse=True)) + r")(?!\w)"
        ) if foreign else None
        self._folded_foreign_re = re.compile(
            r"(?<!\w)(?:" + "|".join(re.escape(fold(w)) for w in sorted(foreign, key=len, reverse=True)) + r")(?!\w)"
        ) if foreign else None

    # -- scoring -----------------------------------------------------------------------------------------

    def _phrasing_scores(self, corpus: _Corpus, text: str) -> dict[int, float]:
        """Score of every phrasing (index -> [0, 1]) that shares anything with ``text``."""
        s = self.settings
        bag, unknown = corpus.encode(corpus.features(text))
        q_size = len(bag) + unknown
        if q_size <= 0:
            return {}
        hits = process.extract(
            bag, corpus.bags, scorer=LCSseq.normalized_similarity, processor=None,
            limit=int(s["max_candidates"]), score_cutoff=1e-9,
        )
        if not hits:
            return {}
        idx = [h[2] for h in hits]
        sub = {i: corpus.texts[i] for i in idx}
        overlaps = {h[2]: h[1] for h in process.extract(bag, {i: corpus.bags[i] for i in idx},
                                                        scorer=LCSseq.similarity, processor=None, limit=None)}
        set_r = {h[2]: h[1] for h in process.extract(text, sub, scorer=fuzz.token_set_ratio, processor=None,
                                                      limit=None)}
        sort_r = {h[2]: h[1] for h in process.extract(text, sub, scorer=fuzz.token_sort_ratio, processor=None,
                                                       limit=None)}
        beta2 = float(s["caller_coverage_beta"]) ** 2
        w_overlap = float(s["overlap_weight"])
        gate = float(s["fuzzy_gate"])
        tau = float(s["evidence_scale"]) * corpus.scale
        out = {}
        for i in idx:
            inter = overlaps[i]
            cq = inter / q_size
            cp = inter / corpus.sizes[i] if corpus.sizes[i] else 0.0
            f = (1 + beta2) * cq * cp / (beta2 * cp + cq) if inter else 0.0
            fuzzy = (0.5 * set_r[i] + 0.5 * sort_r[i]) / 100.0
            # fuzzy similarity only vouches for as much as the caller's words are covered
            # little matched weight (one shared word) is weak evidence however well it covers the phrasing
            evidence = 1.0 - math.exp(-inter / tau) if tau > 0 else 1.0
            out[i] = (w_overlap * f + (1 - w_overlap) * fuzzy * cq ** gate) * evidence
        return out

    def scores(self, text: str) -> list[Candidate]:
        """Every entry that shares anything with ``text``, best first (one candidate per entry)."""
        norm = normalize(text)
        if not norm:
            return []
        folded_text = fold(norm)
        if is_folded(norm) or is_folded(text):
            per_phrasing = self._phrasing_scores(self.fold, folded_text)
        else:
            per_phrasing = self._phrasing_scores(self.norm, norm)
            folded = self._phrasing_scores(self.fold, folded_text)
            # the fold forgives missing or wrong marks but confuses "mất"/"mật": it counts at a discount
            for i, v in folded.items():
                v *= 0.9
                if v > per_phrasing.get(i, 0.0):
                    per_phrasing[i] = v
        factor = 1.0
        if self._foreign_re is not None and (
            self._foreign_re.search(norm) or self._folded_foreign_re.search(folded_text)
        ):
            factor = self.foreign_factor
        best: dict[int, float] = {}
        owners = self.owners
        for i, v in per_phrasing.items():
            o = owners[i]
            if v > best.get(o, 0.0):
                best[o] = v
        ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
        return [Candidate(faq_id=o, score=round(min(1.0, max(0.0, v * factor)), 4)) for o, v in ranked if v > 0]

    def match(self, text: str) -> MatchResult:
        """Decide what to do with ``text``. Never raises on odd input: it is rejected."""
        try:
            candidates = self.scores(text) if isinstance(text, str) else []
        except (ValueError, TypeError):
            candidates = []
        if not candidates:
            return MatchResult("reject", None, 0.0, [])
        top = candidates[0]
        runner_up = candidates[1].score if len(candidates) > 1 else 0.0
        if top.score >= self.answer_threshold and top.score - runner_up >= self.margin:
            return MatchResult("answer", top.faq_id, top.score, candidates)
        if top.score >= self.confirm_threshold:
            return MatchResult("confirm", top.faq_id, top.score, candidates)
        # a moderate score far ahead of every other entry: the ranking is trusted, the caller is asked
        if top.score >= self.lead_threshold and top.score >= self.lead_ratio * runner_up:
            return MatchResult("confirm", top.faq_id, top.score, candidates)
        return MatchResult("reject", None, top.score, candidates)


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
