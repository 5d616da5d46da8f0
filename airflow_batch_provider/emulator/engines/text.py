"""Small text utilities the stand-in engines share: sentences, words, stop words."""

from __future__ import annotations

import re
from functools import lru_cache

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9•\-])|\n+")
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves also this text does express any""".split()
)


def sentences(text: str) -> list[str]:
    """The text's sentences, stripped."""
    return [part.strip() for part in SENTENCE_END.split(text) if part and part.strip()]


def content_words(text: str) -> list[str]:
    """Lower-cased words without stop words, lightly stemmed so 'complains' meets 'complaint'."""
    return [stem(word) for word in WORD.findall(text.lower()) if word not in STOP_WORDS]


@lru_cache(maxsize=65536)  # the vocabulary of a batch is small; stemming it once pays
def stem(word: str) -> str:
    """A crude stem: the word without a common suffix."""
    for suffix in ("ations", "ation", "ings", "ing", "ness", "ies", "ied", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word
