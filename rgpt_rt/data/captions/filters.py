"""Quality filters of generated region captions. Each answer gets the first reason that rejects it, or None.

empty       no text at all
truncated   the generation stopped at its token limit (finish reason "length"), mid-sentence
repetition  a loop: one n-gram (1..8 words) repeated 3+ times in a row, or under half of the 3-grams
            distinct in an answer of 12+ words
class       a class name was given in the prompt but the answer does not mention it (the full name, or its
            last word, singular or plural, case-insensitive)
length      fewer than min_words or more than max_words words
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

FILTERS = ("empty", "truncated", "repetition", "class", "length")
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class FilterConfig:
    enabled: tuple[str, ...] = FILTERS
    min_words: int = 3
    max_words: int = 150
    loop_repeats: int = 3  # an n-gram this many times in a row is a loop
    distinct_3grams: float = 0.5  # below this share of distinct 3-grams (12+ words) is a loop

    def __post_init__(self):
        unknown = sorted(set(self.enabled) - set(FILTERS))
        if unknown:
            raise ValueError(f"unknown filter(s) {', '.join(unknown)}; the filters are {', '.join(FILTERS)}")
        if not 0 <= self.min_words <= self.max_words:
            raise ValueError(f"need 0 <= min_words <= max_words, got {self.min_words} and {self.max_words}")

    def to_dict(self) -> dict:
        return {
            "enabled": list(self.enabled),
            "min_words": self.min_words,
            "max_words": self.max_words,
            "loop_repeats": self.loop_repeats,
            "distinct_3grams": self.distinct_3grams,
        }


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def is_loop(w: list[str], repeats: int = 3, distinct: float = 0.5) -> bool:
    for n in range(1, 9):
        for i in range(0, len(w) - n * repeats + 1):
            gram = w[i : i + n]
            if all(w[i + k * n : i + (k + 1) * n] == gram for k in range(1, repeats)):
                return True
    if len(w) >= 12:
        grams = [tuple(w[i : i + 3]) for i in range(len(w) - 2)]
        if len(set(grams)) < distinct * len(grams):
            return True
    return False


def _forms(word: str) -> set[str]:
    base = {word}
    if word.endswith("y") and len(word) > 2:
        base.add(word[:-1] + "ies")
    return base | {word + "s", word + "es"}


def mentions(text: str, name: str) -> bool:
    """Whether `text` names the class `name`: the whole name (any plural of its last word) or its last word."""
    w, n = words(text), words(name)
    if not n:
        return True
    joined = " " + " ".join(w) + " "
    head = n[-1]
    for form in _forms(head):
        if f" {' '.join(n[:-1] + [form])} " in joined or f" {form} " in joined:
            return True
    return False


def reject_reason(text: str, finish_reason: str, class_name: str | None, cfg: FilterConfig) -> str | None:
    on = set(cfg.enabled)
    w = words(text)
    if "empty" in on and not text.strip():
        return "empty"
    if "truncated" in on and finish_reason == "length":
        return "truncated"
    if "repetition" in on and is_loop(w, cfg.loop_repeats, cfg.distinct_3grams):
        return "repetition"
    if "class" in on and class_name and not mentions(text, class_name):
        return "class"
    if "length" in on and not cfg.min_words <= len(w) <= cfg.max_words:
        return "length"
    return None


@dataclass
class FilterCounts:
    checked: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {k: 0 for k in FILTERS})

    def add(self, reason: str | None) -> None:
        self.checked += 1
        if reason is None:
            self.kept += 1
        else:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
