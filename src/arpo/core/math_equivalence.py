"""Math answer equivalence: symbolic with math-verify, numeric and string fallbacks.

The reference implementation scores math with token F1, so ``045`` vs ``45`` or ``\\frac12`` vs
``0.5`` score 0 (ARPO_REFERENCE.md §3, §9.8). We decide equivalence in three steps and stop at
the first that can decide:

1. **Symbolic** (``math-verify``): both strings are parsed as LaTeX (wrapped in ``$…$``) into
   sympy objects and compared with ``math_verify.verify(gold, prediction)`` (numeric values
   rounded to 6 decimals, intervals, sets, equations, matrices). Undecided when the package is
   not installed, either side fails to parse, or it raises.
2. **Numeric**: both sides reduced to a float, after dropping ``$``, spacing commands,
   ``\\left``/``\\right``, degree and percent signs and thousands separators (``1,000``); accepted
   forms are decimals (``045``, ``-1.5e3``), ``a/b`` and ``\\frac{a}{b}``/``\\frac12``/``\\dfrac``.
   Equal iff ``|p − g| ≤ max(1e-6·max(|p|, |g|), 1e-9)``. Undecided when either side is not a
   number.
3. **String**: equal iff the two strings match after removing all whitespace, ``$`` and
   ``\\left``/``\\right``.

math-verify times out with ``signal.alarm``, which works only in the main thread; elsewhere it
runs without a time limit.
"""

from __future__ import annotations

import math
import re
import threading
import warnings

MATH_VERIFY_TIMEOUT_S = 5
"""Per-call parse/verify time limit for math-verify (main thread only)."""

_DECORATIONS = re.compile(r"\\left|\\right|\\[!,;: ]|\\\$|\$|~|\^\{?\\circ\}?|\\%|%|\s")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_LATEX_FRACTION = re.compile(r"([+-]?)\\[dt]?frac(?:\{([^{}]*)\}|(\d))(?:\{([^{}]*)\}|(\d))")
_SLASH_FRACTION = re.compile(r"([^/]+)/([^/]+)")


def math_equal(prediction: str, gold: str) -> float:
    """1.0 if ``prediction`` and ``gold`` are mathematically equivalent, else 0.0 (module docstring)."""
    for decide in (_symbolic_equal, _numeric_equal):
        verdict = decide(prediction, gold)
        if verdict is not None:
            return float(verdict)
    return float(_plain(prediction) == _plain(gold))


def parse_number(text: str) -> float | None:
    """The value of a plain number, ``a/b`` or ``\\frac{a}{b}`` written in ``text``, else None."""
    text = _THOUSANDS.sub("", _DECORATIONS.sub("", text))
    if _DECIMAL.fullmatch(text):
        return float(text)
    parts = _fraction_parts(text)
    if parts is None:
        return None
    sign, numerator, denominator = parts
    num, den = _DECIMAL.fullmatch(numerator), _DECIMAL.fullmatch(denominator)
    if not (num and den) or float(denominator) == 0:
        return None
    value = float(numerator) / float(denominator)
    return -value if sign == "-" else value


def _fraction_parts(text: str) -> tuple[str, str, str] | None:
    latex = _LATEX_FRACTION.fullmatch(text)
    if latex:
        return latex.group(1), latex.group(2) or latex.group(3), latex.group(4) or latex.group(5)
    slash = _SLASH_FRACTION.fullmatch(text)
    if slash:
        return "", slash.group(1), slash.group(2)
    return None


def _symbolic_equal(prediction: str, gold: str) -> bool | None:
    try:
        import math_verify
    except ImportError:
        warnings.warn(
            "math-verify is not installed: math answers are compared numerically only "
            "(pip install math-verify)",
            stacklevel=3,
        )
        return None
    timeout = MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = math_verify.parse(f"${gold}$", parsing_timeout=timeout)
        prediction_parsed = math_verify.parse(f"${prediction}$", parsing_timeout=timeout)
        if not gold_parsed or not prediction_parsed:
            return None
        return bool(math_verify.verify(gold_parsed, prediction_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify surfaces sympy, antlr and timeout errors alike: undecided
        return None


def _numeric_equal(prediction: str, gold: str) -> bool | None:
    pred_value, gold_value = parse_number(prediction), parse_number(gold)
    if pred_value is None or gold_value is None:
        return None
    return math.isclose(pred_value, gold_value, rel_tol=1e-6, abs_tol=1e-9)


def _plain(text: str) -> str:
    return re.sub(r"\\left|\\right|\$|\s", "", text)
