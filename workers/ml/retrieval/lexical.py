"""BM25 tokenisation: lower case, words of two or more letters or digits, English stop words
dropped, and a light suffix stemmer (plurals, -ing, -ed) so "refunds" finds "refund".

PyStemmer is not installed here; this stemmer is deliberately conservative (it only strips
a suffix when at least three letters remain) so it never merges unrelated short words.
"""

from __future__ import annotations

import re

from bm25s.stopwords import STOPWORDS_EN

_WORD = re.compile(r"(?u)\b\w\w+\b")
_STOP = frozenset(STOPWORDS_EN) | {
    "i", "me", "my", "we", "our", "you", "your", "he", "she", "its", "they", "them",
    "what", "which", "who", "whom", "how", "when", "where", "why", "do", "does", "did",
    "can", "could", "should", "would", "am", "have", "has", "had", "from", "about",
}  # fmt: skip


def stem(word: str) -> str:
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""),
                         ("s", "")):  # fmt: skip
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("ches", "shes", "xes", "zes")):
                continue
            return word[: -len(suffix)] + keep
    return word


def tokenize(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]
