"""The pieces a synthetic GSM8K problem is built from: a person, a worked step, the problem.

A problem is a question, its worked solution as GSM8K writes it (Cobbe et al. 2021, arXiv
2110.14168: one line per step with the calculator annotation ``<<expression=value>>``, then
``#### <integer>``) and the integer answer. :mod:`arpo.tasks.gsm8k_templates` draws them;
:mod:`arpo.tasks.gsm8k_sample` writes them as GSM8K rows.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable
from dataclasses import dataclass

NAMES = (
    ("Ana", "she"), ("Ben", "he"), ("Chloe", "she"), ("Dev", "he"), ("Elena", "she"), ("Farid", "he"),
    ("Grace", "she"), ("Hugo", "he"), ("Iris", "she"), ("Jamal", "he"), ("Kira", "she"), ("Leo", "he"),
    ("Maya", "she"), ("Noah", "he"), ("Olivia", "she"), ("Pablo", "he"), ("Rosa", "she"), ("Sam", "he"),
)  # fmt: skip

OPERATORS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.floordiv,  # exact: calc checks the remainder first
}


@dataclass(frozen=True)
class Person:
    """A named person and the pronouns the templates need."""

    name: str
    he: str

    @property
    def He(self) -> str:  # noqa: N802 - the capitalised pronoun, as templates write it
        return self.he.capitalize()

    @property
    def his(self) -> str:
        return "his" if self.he == "he" else "her"

    @property
    def him(self) -> str:
        return "him" if self.he == "he" else "her"


def person(rng: random.Random, other_than: Person | None = None) -> Person:
    """A person drawn from :data:`NAMES` (another one than ``other_than`` when given)."""
    while True:
        drawn = Person(*rng.choice(NAMES))
        if other_than is None or drawn.name != other_than.name:
            return drawn


@dataclass(frozen=True)
class Problem:
    """One word problem: the question, the solution's lines, the final integer answer and the
    name of the template that drew it (not part of the GSM8K row)."""

    question: str
    steps: tuple[str, ...]
    answer: int
    template: str = ""

    def row(self, idx: int) -> dict[str, object]:
        """The problem as a GSM8K row."""
        solution = "\n".join([*self.steps, f"#### {self.answer}"])
        return {"question": self.question, "answer": solution, "idx": idx}


def calc(*terms: int | str) -> tuple[str, int]:
    """A solution step as GSM8K writes it, ``a + b = <<a+b=c>>c``, and its value ``c``.

    ``terms`` alternate integers and operators (``+ - * /``) and are applied left to right, which
    is the usual reading for the expressions the templates build (``+``/``-`` or ``*``/``/``
    within one step, as Python reads it too). Raises ValueError for a step that mixes the two, an
    inexact division or a negative value: the templates pick operands so that none happens.
    """
    value = terms[0]
    assert isinstance(value, int)
    if {"+", "-"} & set(terms[1::2]) and {"*", "/"} & set(terms[1::2]):
        raise ValueError(f"{terms} mixes + or - with * or /: Python's precedence would read it otherwise")
    for op, operand in zip(terms[1::2], terms[2::2], strict=True):
        assert isinstance(op, str) and isinstance(operand, int)
        if op == "/" and value % operand:
            raise ValueError(f"{value} / {operand} is not an integer")
        value = OPERATORS[op](value, operand)
    if value < 0:
        raise ValueError(f"{terms} gives {value}; the templates must give non-negative integers")
    text = " ".join(str(t) for t in terms)
    return f"{text} = <<{text.replace(' ', '')}={value}>>{value}", value
