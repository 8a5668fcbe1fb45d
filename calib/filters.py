"""Filters and similarity measures for calibration data (paper §3.4, §4, §6.3, §6.4)."""
from __future__ import annotations

import re
from typing import Iterable

_WORD = re.compile(r"\S+")


def word_ngrams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """Whitespace-word n-grams, lower-cased: the unit of the paper's MinHash Jaccard."""
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def corpus_ngrams(texts: Iterable[str], n: int = 3) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for t in texts:
        out |= word_ngrams(t, n)
    return out


def exact_jaccard(a: Iterable[str], b: Iterable[str], n: int = 3) -> float:
    """Exact Jaccard similarity of two corpora's word n-gram sets."""
    sa, sb = corpus_ngrams(a, n), corpus_ngrams(b, n)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
