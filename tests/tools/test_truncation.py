"""Truncation to character and token budgets: the cut is the longest prefix that fits."""

from __future__ import annotations

import pytest

from arpo.tools.truncation import TRUNCATION_MARKER, token_counter, truncate, truncate_text


def words(text: str) -> int:
    return len(text.split())


def test_text_within_budget_is_untouched() -> None:
    assert truncate("short", 100) == ("short", False)
    assert truncate("a b c", 100, 3, words) == ("a b c", False)


def test_character_cut_is_exactly_the_budget() -> None:
    text, cut = truncate_text("abcdefghij" * 10, 40)
    assert cut and len(text) == 40 and text.endswith(TRUNCATION_MARKER)


@pytest.mark.parametrize("budget", [5, 6, 17, 50])
def test_token_cut_is_the_longest_prefix_that_fits(budget: int) -> None:
    source = " ".join(f"token{i}" for i in range(200))
    text, cut = truncate(source, 100_000, budget, words)
    assert cut and words(text) <= budget
    prefix = text[: -len(TRUNCATION_MARKER)]
    longer = source[: len(prefix) + 1] + TRUNCATION_MARKER
    assert words(longer) > budget  # one more character would not fit


def test_both_budgets_apply() -> None:
    source = "a " * 1000
    text, cut = truncate(source, 60, 10, words)
    assert cut and len(text) <= 60 and words(text) <= 10


def test_budget_too_small_for_the_marker_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot hold the truncation marker"):
        truncate("x " * 100, 100_000, 2, words)


def test_token_counter_accepts_functions_and_tokenizers() -> None:
    class NoKeywordTokenizer:
        def encode(self, text: str) -> list[str]:
            return list(text)

    assert token_counter(words)("a b") == 2
    assert token_counter(NoKeywordTokenizer())("abc") == 3
    with pytest.raises(TypeError, match="count_tokens must be"):
        token_counter(42)
