"""Stand-in classifier: rubric overlap plus a sentiment lexicon, softmax over labels, no model.

Each label's rubric (and name) is read for (a) its content words, matched against the text, and
(b) its polarity: a rubric asking about praise is helped by positive words in the text, one asking
about complaints by negative words. The raw scores go through a softmax, so the scores of one text
sum to 1 like the API's single-label output, and the reasoning names the words that decided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from airflow_batch_provider.emulator.engines.text import content_words, stem

POSITIVE = frozenset(stem(w) for w in """good great excellent amazing fantastic love loved lovely
    perfect happy pleased satisfied recommend recommended best awesome wonderful superb fast quick
    easy reliable sturdy comfortable beautiful impressive brilliant delighted helpful friendly
    praise approve approval satisfaction like enjoy enjoyed worth quality nice solid smooth
    flawless outstanding glad thrilled exceeded favourite favorite bargain""".split())
NEGATIVE = frozenset(stem(w) for w in """bad poor terrible awful horrible hate hated broken broke
    slow late delay delayed disappointing disappointed disappoint refund return returned defective
    faulty worst useless cheap flimsy noisy leak leaked crack cracked damaged missing wrong rude
    complaint complain complained problem issue issues error fail failed failure dissatisfied
    dissatisfaction criticism unhappy annoying waste overpriced stopped died rip scam never""".split())
NEGATIONS = frozenset("not no never hardly barely don't didn't doesn't isn't wasn't won't".split())
TEMPERATURE = 1.5


def _sentiment(words: list[str]) -> tuple[float, list[str], list[str]]:
    positive: list[str] = []
    negative: list[str] = []
    for index, word in enumerate(words):
        negated = index > 0 and words[index - 1] in NEGATIONS
        if word in POSITIVE:
            (negative if negated else positive).append(word)
        elif word in NEGATIVE:
            (positive if negated else negative).append(word)
    return float(len(positive) - len(negative)), positive, negative


def _polarity(rubric_words: set[str]) -> int:
    return (len(rubric_words & POSITIVE) > 0) - (len(rubric_words & NEGATIVE) > 0)


def classify(text: str, labels: Sequence[dict[str, str]], system_prompt: str | None = None) -> dict[str, Any]:
    """A deterministic classification: each rubric scored by the words it shares with the text and their sentiment."""
    lowered = [w for w in text.lower().replace("n't", " not").split()]
    words = [stem(w.strip(".,!?;:()\"'")) for w in lowered]
    sentiment, positive, negative = _sentiment(words)
    text_words = set(content_words(text))
    raw: dict[str, float] = {}
    why: dict[str, list[str]] = {}
    for label in labels:
        rubric_words = set(content_words(f"{label['name']} {label['rubric']}"))
        overlap = sorted(text_words & rubric_words)
        polarity = _polarity(rubric_words)
        raw[label["name"]] = len(overlap) + polarity * sentiment * 1.5
        why[label["name"]] = overlap + (positive if polarity > 0 else negative if polarity < 0 else [])
    top = max(raw, key=lambda name: (raw[name], -list(raw).index(name)))
    peak = max(raw.values())
    exp = {name: math.exp((value - peak) / TEMPERATURE) for name, value in raw.items()}
    total = sum(exp.values())
    scores = {name: round(value / total, 4) for name, value in exp.items()}
    evidence = ", ".join(f"'{w}'" for w in dict.fromkeys(why[top])) or "no direct evidence"
    rubric = next(label["rubric"] for label in labels if label["name"] == top)
    return {
        "top_label": top,
        "scores": scores,
        "reasoning": f"{top}: {evidence} in the text bear on the rubric \"{rubric}\"",
        "labels": [{"label": label["name"], "score": scores[label["name"]], "rubric": label["rubric"]}
                   for label in labels],
    }
