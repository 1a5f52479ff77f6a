"""Correctness metrics: math equivalence (with and without math-verify) and SQuAD EM / F1."""

from __future__ import annotations

import sys

import pytest

from arpo.core.math_equivalence import math_equal, parse_number
from arpo.core.qa_metrics import exact_match, normalize_answer, token_f1


@pytest.mark.parametrize(
    ("prediction", "gold", "equal"),
    [
        ("\\frac12", "0.5", 1.0),
        ("045", "45", 1.0),
        ("1,450,000", "1450000", 1.0),
        ("-6+3\\sqrt3", "3\\sqrt{3} - 6", 1.0),
        ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", 1.0),
        ("0.6", "0.5", 0.0),
        ("46", "45", 0.0),
        ("3\\sqrt{2}", "3\\sqrt{3}", 0.0),
    ],
)
def test_math_equal(prediction: str, gold: str, equal: float) -> None:
    pytest.importorskip("math_verify")
    assert math_equal(prediction, gold) == equal


@pytest.fixture
def without_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)  # makes `import math_verify` fail


@pytest.mark.parametrize(
    ("prediction", "gold", "equal"),
    [
        ("\\frac12", "0.5", 1.0),
        ("\\dfrac{1}{2}", "0.5", 1.0),
        ("045", "45", 1.0),
        ("3/4", "0.75", 1.0),
        ("-\\frac{3}{4}", "-0.75", 1.0),
        ("\\$1,000", "1000", 1.0),
        ("45", "46", 0.0),
        ("x + 1", "x+1", 1.0),  # string fallback ignores whitespace
        ("1 + x", "x+1", 0.0),  # ... but knows no algebra: math-verify would say equal
    ],
)
def test_math_equal_falls_back_without_math_verify(
    without_math_verify: None, prediction: str, gold: str, equal: float
) -> None:
    with pytest.warns(UserWarning, match="math-verify is not installed"):
        assert math_equal(prediction, gold) == equal


def test_math_equal_falls_back_when_math_verify_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    math_verify = pytest.importorskip("math_verify")

    def broken_parse(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("parser exploded")

    monkeypatch.setattr(math_verify, "parse", broken_parse)
    assert math_equal("\\frac12", "0.5") == 1.0
    assert math_equal("1 + x", "x+1") == 0.0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("045", 45.0),
        ("-1.5e3", -1500.0),
        ("\\frac{7}{2}", 3.5),
        ("\\tfrac34", 0.75),
        ("50\\%", 50.0),
        ("90^\\circ", 90.0),
        ("1/0", None),
        ("x", None),
        ("1,2", None),
    ],
)
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


def test_squad_normalisation() -> None:
    assert normalize_answer("The  Beatles!") == "beatles"
    assert normalize_answer("An apple, a day") == "apple day"


def test_token_f1_hand_checked() -> None:
    # pred tokens [eiffel, tower, in, paris], gold [eiffel, tower]: P = 2/4, R = 1, F1 = 2PR/(P+R) = 2/3
    assert token_f1("The Eiffel Tower in Paris", "Eiffel Tower") == pytest.approx(2 / 3)
    assert token_f1("Tower Eiffel", "the eiffel tower.") == 1.0
    assert token_f1("London", "Paris") == 0.0
    # repeated tokens count once per occurrence on both sides: same = 1, P = 1/2, R = 1
    assert token_f1("paris paris", "paris") == pytest.approx(2 / 3)


def test_token_f1_yes_no_guard() -> None:
    # without the guard "no" vs "no idea" would score 2/3
    assert token_f1("no", "no idea") == 0.0
    assert token_f1("yes it is", "yes") == 0.0
    assert token_f1("Yes.", "yes") == 1.0


def test_exact_match() -> None:
    assert exact_match("The Beatles", "beatles") == 1.0
    assert exact_match("Beatles band", "beatles") == 0.0
