"""A task's solution as a small program of tool steps, and every text the environment writes.

A program is a sequence of steps; each step's value can be used by later steps through a
:class:`Ref`:

- :class:`Lookup` ``(attribute, entity)``: one ``<search>`` call, query ``"<attribute> of <entity>"``;
- :class:`Calculate` ``(left, operation, right)``: one ``<python>`` call, code ``"<left><op><right>"``.

The task's answer is the value of the last step. From the program come the question ("What is
the birth year of the mayor of Vemo?"), the tool calls the scripted solver makes, and the ground
truth (evaluated on the knowledge base). All wording lives here, kept short because a tiny model
reads and writes it: the protocol costs tokens and names and numbers must be copied exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from arpo.core.answer_format import FormatSpec
from arpo.tasks.toolworld.knowledge import ATTRIBUTES, World

SEARCH, PYTHON = "search", "python"
"""Tags of the two tools (the protocol's defaults, :class:`~arpo.core.answer_format.FormatSpec`)."""
OPERATORS = {"plus": "+", "minus": "-", "times": "*"}
"""Operation words of the questions → Python operators of the code."""


@dataclass(frozen=True)
class Ref:
    """The value of an earlier step of the same program."""

    step: int


Operand = str | Ref
"""A literal (a decimal number or an entity name) or a reference to an earlier step's value."""


@dataclass(frozen=True)
class Lookup:
    attribute: str
    entity: Operand


@dataclass(frozen=True)
class Calculate:
    left: Operand
    operation: str
    right: Operand


Step = Lookup | Calculate
Program = tuple[Step, ...]


def system_prompt(spec: FormatSpec | None = None) -> str:
    """The compact system prompt: the two tools and the protocol tags of ``spec``."""
    spec = spec or FormatSpec()
    think, answer = spec.think_tag, spec.answer_tag
    return (
        f"Tools: <{SEARCH}>query</{SEARCH}> searches a wiki, <{PYTHON}>code</{PYTHON}> runs Python. "
        f"Think in <{think}></{think}>, answer in <{answer}></{answer}>."
    )


def question(program: Program) -> str:
    """``What is <phrase of the last step>?``"""
    return f"What is {_phrase(program, len(program) - 1)}?"


def _phrase(program: Program, index: int) -> str:
    step = program[index]
    if isinstance(step, Lookup):
        return f"the {step.attribute} of {_operand_phrase(program, step.entity)}"
    left, right = (_operand_phrase(program, operand) for operand in (step.left, step.right))
    return f"{left} {step.operation} {right}"


def _operand_phrase(program: Program, operand: Operand) -> str:
    return _phrase(program, operand.step) if isinstance(operand, Ref) else operand


def resolve(operand: Operand, values: list[str]) -> str:
    """A literal operand, or the value of the step it refers to."""
    return values[operand.step] if isinstance(operand, Ref) else operand


def query(attribute: str, entity: str) -> str:
    """The search query of a lookup: ``"mayor of Vemo"``."""
    return f"{attribute} of {entity}"


def code(left: str, operation: str, right: str) -> str:
    """The Python code of a calculation: ``"48213*37"``."""
    return f"{left}{OPERATORS[operation]}{right}"


def calculate(left: str, operation: str, right: str) -> str:
    """The exact value of a calculation on integers, as Python prints it."""
    a, b = int(left), int(right)
    return str({"plus": a + b, "minus": a - b, "times": a * b}[operation])


def plan(tags: list[str]) -> str:
    """The thought that opens a response: the tools it will call in order (``Plan: search, python.``)."""
    return f"Plan: {', '.join(tags) or 'answer'}."


def evaluate(program: Program, world: World) -> list[str]:
    """The value of every step, computed on the knowledge base (the last one is the answer)."""
    values: list[str] = []
    for step in program:
        if isinstance(step, Lookup):
            values.append(world.fact(resolve(step.entity, values), step.attribute))
        else:
            values.append(calculate(resolve(step.left, values), step.operation, resolve(step.right, values)))
    return values


def reserved_words() -> set[str]:
    """Words of the environment's own wording, which no invented name may be."""
    text = " ".join([system_prompt(), *ATTRIBUTES, *OPERATORS, "What is the of Page Plan town person"])
    return set(re.findall(r"[A-Za-z]+", text))


def program_to_json(program: Program) -> list[dict[str, Any]]:
    """JSON form: ``{"search": attribute, "of": x}`` or ``{"python": op, "left": x, "right": y}``,
    where an operand ``x`` is a string or ``{"ref": step}``."""

    def operand(value: Operand) -> Any:
        return {"ref": value.step} if isinstance(value, Ref) else value

    return [
        {SEARCH: step.attribute, "of": operand(step.entity)}
        if isinstance(step, Lookup)
        else {PYTHON: step.operation, "left": operand(step.left), "right": operand(step.right)}
        for step in program
    ]


def program_from_json(items: list[dict[str, Any]]) -> Program:
    """Inverse of :func:`program_to_json`; raises ValueError on an unknown step or a forward reference."""
    steps: list[Step] = []

    def operand(value: Any) -> Operand:
        if isinstance(value, dict):
            if not isinstance(value.get("ref"), int) or not 0 <= value["ref"] < len(steps):
                raise ValueError(f"step {len(steps)}: bad reference {value}; it must name an earlier step")
            return Ref(value["ref"])
        if not isinstance(value, str):
            raise ValueError(f"step {len(steps)}: operand {value!r} must be a string or {{'ref': step}}")
        return value

    for item in items:
        if SEARCH in item and item[SEARCH] in ATTRIBUTES:
            steps.append(Lookup(item[SEARCH], operand(item.get("of"))))
        elif PYTHON in item and item[PYTHON] in OPERATORS:
            steps.append(Calculate(operand(item.get("left")), item[PYTHON], operand(item.get("right"))))
        else:
            raise ValueError(
                f"step {len(steps)}: {item} is not a lookup {{'{SEARCH}': one of {list(ATTRIBUTES)}, 'of': ...}} "
                f"or a calculation {{'{PYTHON}': one of {list(OPERATORS)}, 'left': ..., 'right': ...}}"
            )
    if not steps:
        raise ValueError("a program needs at least one step")
    return tuple(steps)
