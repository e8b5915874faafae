"""A second, independent similarity: TF-IDF weighted character n-grams, cosine against every phrasing.

The matcher's backbone (ivr/language/match.py) weighs whole words and word pairs; a recognition error that
changes one letter of a word makes that word a stranger to it. Character n-grams inside word boundaries
("kich" -> " k", "ki", "ich", "ch "...) keep most of a misheard word's evidence and weigh the parts of words
that tell entries apart. The two signals fail differently, so where they agree the ranking can be trusted
more (``Matcher`` answers outright on agreement and asks the caller to confirm otherwise).

Pure numpy at run time. The phrasings' L2-normalised TF-IDF vectors are stored by n-gram (compressed sparse
columns): a question's cosine with every phrasing touches only the columns of its own n-grams.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


def grams(text: str, low: int = 2, high: int = 4) -> Counter:
    """Character n-grams (``low``..``high`` long) of every word of ``text``, the word padded by a space on
    each side (scikit-learn's ``char_wb`` analyzer)."""
    out: Counter = Counter()
    for w in text.split():
        p = f" {w} "
        for n in range(low, min(high, len(p)) + 1):
            for i in range(len(p) - n + 1):
                out[p[i:i + n]] += 1
    return out


class NgramIndex:
    """TF-IDF (sublinear tf, smooth idf) character n-gram vectors of ``texts``; ``cosine(text)`` scores a
    text against every one of them."""

    def __init__(self, texts: list[str], low: int = 2, high: int = 4):
        self.low, self.high = low, high
        self.size = len(texts)
        counts = [grams(t, low, high) for t in texts]
        df: Counter = Counter()
        for c in counts:
            df.update(c.keys())
        vocab = sorted(df)
        self.vocab = {g: j for j, g in enumerate(vocab)}
        n = self.size
        self.idf = [math.log((1 + n) / (1 + df[g])) + 1.0 for g in vocab]
        # an n-gram no phrasing has still lengthens the question's vector, at the idf of a df-0 n-gram
        self.unseen_idf = math.log(1 + n) + 1.0
        rows: list[list[int]] = [[] for _ in vocab]
        vals: list[list[float]] = [[] for _ in vocab]
        for i, c in enumerate(counts):
            weights = {self.vocab[g]: (1.0 + math.log(k)) * self.idf[self.vocab[g]] for g, k in c.items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            for j, w in weights.items():
                rows[j].append(i)
                vals[j].append(w / norm)
        self.indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        self.indptr[1:] = np.cumsum([len(r) for r in rows])
        self.rows = np.fromiter((i for r in rows for i in r), dtype=np.int32, count=int(self.indptr[-1]))
        self.vals = np.fromiter((v for r in vals for v in r), dtype=np.float32, count=int(self.indptr[-1]))
        self.idf_array = np.asarray(self.idf, dtype=np.float64)
        # a word's n-grams: the column numbers and counts of those some phrasing has, and the others
        self._words: dict[str, tuple[np.ndarray, np.ndarray, tuple[tuple[str, int], ...]]] = {}

    def _word_grams(self, word: str) -> tuple[np.ndarray, np.ndarray, tuple[tuple[str, int], ...]]:
        got = self._words.get(word)
        if got is None:
            c = grams(word, self.low, self.high)
            seen = [(self.vocab[g], k) for g, k in c.items() if g in self.vocab]
            got = (np.array([j for j, _ in seen], dtype=np.int64), np.array([k for _, k in seen], dtype=np.float64),
                   tuple((g, k) for g, k in c.items() if g not in self.vocab))
            if len(self._words) < 100_000:
                self._words[word] = got
        return got

    def cosine(self, text: str) -> np.ndarray:
        """Cosine similarity of ``text`` with every indexed text (zeros where they share no n-gram)."""
        out = np.zeros(self.size, dtype=np.float64)
        parts = [self._word_grams(w) for w in text.split()]
        if not parts:
            return out
        unseen: dict[str, int] = {}
        for _, _, rest in parts:
            for g, k in rest:
                unseen[g] = unseen.get(g, 0) + k
        sq = sum(((1.0 + math.log(k)) * self.unseen_idf) ** 2 for k in unseen.values())
        cols = np.concatenate([c for c, _, _ in parts])
        if cols.size == 0:
            return out
        counts = np.bincount(cols, weights=np.concatenate([k for _, k, _ in parts]), minlength=len(self.idf))
        hit = np.flatnonzero(counts)
        w = (1.0 + np.log(counts[hit])) * self.idf_array[hit]
        sq += float(w @ w)
        starts = self.indptr[hit]
        lengths = self.indptr[hit + 1] - starts
        total = int(lengths.sum())
        if total == 0 or sq <= 0:
            return out
        # the positions of every hit column's entries, in one index array
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        pos = np.arange(total) + offsets
        weights = np.repeat(w / math.sqrt(sq), lengths)
        out += np.bincount(self.rows[pos], weights=self.vals[pos] * weights, minlength=self.size)
        return out
