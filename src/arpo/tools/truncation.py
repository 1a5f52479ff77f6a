"""Cutting tool results to a budget of characters and, optionally, tokens.

A cut result keeps its beginning and ends with :data:`TRUNCATION_MARKER`, so the model sees that
something is missing; the marker counts against the budget. Token budgets use a counting
function (``str -> int``) or a tokenizer with ``encode`` (Hugging Face tokenizers are counted
without special tokens); the longest prefix that fits is found by bisection, so a cut costs
O(log n) counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TRUNCATION_MARKER = "\n[... truncated ...]"

TokenCounter = Callable[[str], int]


def token_counter(counter_or_tokenizer: TokenCounter | Any) -> TokenCounter:
    """A ``str -> int`` counter from a counting function or an object with ``encode``."""
    encode = getattr(counter_or_tokenizer, "encode", None)
    if callable(encode):
        try:
            encode("probe", add_special_tokens=False)
        except TypeError:  # a tokenizer without that keyword (tiktoken, sentencepiece...)
            return lambda text: len(encode(text))
        return lambda text: len(encode(text, add_special_tokens=False))
    if callable(counter_or_tokenizer):
        return counter_or_tokenizer
    raise TypeError(
        f"count_tokens must be a function str -> int or a tokenizer with .encode, got {type(counter_or_tokenizer).__name__}"
    )


def truncate(
    text: str, max_chars: int, max_tokens: int | None = None, count: TokenCounter | None = None
) -> tuple[str, bool]:
    """The longest prefix of ``text`` that fits both budgets, marker included; (text, was cut)."""
    if (max_tokens is None) != (count is None):
        raise ValueError("a token budget needs both max_tokens and a token counter")

    def fits(candidate: str) -> bool:
        return max_tokens is None or count(candidate) <= max_tokens  # type: ignore[misc]

    if len(text) <= max_chars and fits(text):
        return text, False
    keep = min(len(text), max_chars - len(TRUNCATION_MARKER))
    if keep < 0 or not fits(TRUNCATION_MARKER):
        raise ValueError(
            f"a budget of {max_chars} characters / {max_tokens} tokens cannot hold the truncation marker"
        )
    if not fits(text[:keep] + TRUNCATION_MARKER):
        low, high = 0, keep  # invariant: the prefix of length low fits, that of length high does not
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(text[:middle] + TRUNCATION_MARKER) else (low, middle)
        keep = low
    return text[:keep] + TRUNCATION_MARKER, True


def truncate_text(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_chars`` characters, marker included; (text, was cut)."""
    return truncate(text, max_chars)
