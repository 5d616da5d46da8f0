"""Stand-in summariser: extractive, deterministic, no model.

Picks the sentences whose content words are most frequent in the whole text (a classic frequency
summariser), keeps them in their original order, and trims to ``max_tokens`` (about 4/3 tokens per
word). Instructions mentioning bullets turn the sentences into "• " lines.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from airflow_batch_provider.emulator.engines.text import content_words, sentences

DEFAULT_MAX_TOKENS = 2048
TOKENS_PER_WORD = 4 / 3


def summarize(text: str, instructions: str | None = None, max_tokens: int | None = None) -> dict[str, Any]:
    """A deterministic extractive summary: the sentences whose words recur most."""
    parts = sentences(text) or [text.strip()]
    words_of = [content_words(part) for part in parts]
    frequencies = Counter(word for words in words_of for word in words)

    def score(index: int) -> float:
        words = words_of[index]
        if not words:
            return 0.0
        lead_bonus = 1.25 if index == 0 else 1.0
        return lead_bonus * sum(frequencies[w] for w in words) / math.sqrt(len(words))

    wanted = 1 if _asks_for_one_sentence(instructions) else max(1, min(5, math.ceil(len(parts) * 0.3)))
    scores = [score(i) for i in range(len(parts))]
    chosen = sorted(sorted(range(len(parts)), key=lambda i: (-scores[i], i))[:wanted])
    picked = _trim([parts[i] for i in chosen], max_tokens or DEFAULT_MAX_TOKENS)
    if instructions and "bullet" in instructions.lower():
        summary = "\n".join(f"• {sentence}" for sentence in picked)
    else:
        summary = " ".join(picked)
    return {"summary": summary, "input_chars": len(text), "output_chars": len(summary)}


def _asks_for_one_sentence(instructions: str | None) -> bool:
    lowered = (instructions or "").lower()
    return "one sentence" in lowered or "single sentence" in lowered or "one line" in lowered


def _trim(picked: list[str], max_tokens: int) -> list[str]:
    budget = max(1, int(max_tokens / TOKENS_PER_WORD))
    kept: list[str] = []
    for sentence in picked:
        words = sentence.split()
        if len(words) <= budget:
            kept.append(sentence)
            budget -= len(words)
        else:
            if budget > 0:
                kept.append(" ".join(words[:budget]) + "…")
            break
    return kept
