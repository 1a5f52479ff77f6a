"""The scripted solver: follows the protocol with real tools, perfectly or with a chosen flaw.

A :class:`Behaviour` says what a scripted run does with a task's program; :func:`run_behaviours`
executes many at once, sending every round's tool calls through one
:meth:`~arpo.tools.ToolBox.run_many` call, and returns :class:`~arpo.tasks.toolworld.demos.Demo`
records. Values are read from the tools' actual output (the search result's page for the entity,
the number Python printed), never from the knowledge base, so a perfect run scores 1 only if the
corpus, the search tool and the Python tool really deliver the answer.

A run writes ``<think>Plan: search, python.</think>`` (the tools it will call), then one call per
step, then ``<answer>value</answer>``. Flaws (:data:`~arpo.tasks.toolworld.config.IMPERFECT_KINDS`)
are chosen with the knowledge base so that the flawed answer is certainly wrong:

- ``no_tool``: answer at once with a guess (a same-length number, an estimate of a calculation
  rounded to 2 significant digits, or another entity's name);
- ``wrong_entity``: look up another entity of the same kind in the first step, then go on;
- ``stop_early``: answer with the first step's value;
- ``skip_python``: run the lookups, then answer an estimate instead of calling Python;
- ``wrong_operand``: mistype one digit of the calculation's first operand.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass

from arpo.core.answer_format import FormatSpec
from arpo.tasks.toolworld.corpus import read_fact
from arpo.tasks.toolworld.demos import Demo, Segment
from arpo.tasks.toolworld.families import ToolworldTask
from arpo.tasks.toolworld.knowledge import ATTRIBUTES, World, draw_number
from arpo.tasks.toolworld.program import (
    PYTHON,
    SEARCH,
    Calculate,
    Lookup,
    Program,
    code,
    evaluate,
    plan,
    query,
    resolve,
)
from arpo.tools import ToolBox, ToolResult

UNREADABLE = "unknown"
"""What a run answers when it cannot read the value it needs from a tool's output."""


@dataclass(frozen=True)
class Behaviour:
    """What a scripted run does: run ``program`` (possibly altered), mistype per ``typo``, answer
    ``answer`` if set, else the last step's value."""

    kind: str
    program: Program
    typo: tuple[int, str] | None = None
    """(digit position, new digit) applied to the first operand of the calculation."""
    answer: str | None = None


def perfect(record: ToolworldTask) -> Behaviour:
    return Behaviour("perfect", record.program)


def flawed(record: ToolworldTask, kind: str, world: World, rng: random.Random) -> Behaviour | None:
    """A run of ``kind`` whose answer is certainly wrong, or None if ``kind`` cannot apply to the task."""
    program = record.program
    values = evaluate(program, world)
    truth = values[-1]
    calculation = program[-1] if isinstance(program[-1], Calculate) else None
    if kind == "no_tool":
        return Behaviour(kind, (), answer=_guess(record, values, world, rng))
    if kind == "wrong_entity":
        return _wrong_entity(record, world, rng)
    if kind == "stop_early":
        return Behaviour(kind, program[:1]) if len(program) > 1 and values[0] != truth else None
    if calculation is None:
        return None
    if kind == "skip_python":
        guess = estimate(truth)
        return Behaviour(kind, program[:-1], answer=guess) if guess != truth else None
    if kind == "wrong_operand":
        left = resolve(calculation.left, values)
        position = rng.randrange(len(left))
        digits = [d for d in "0123456789" if d != left[position] and (position or d != "0")]
        return Behaviour(kind, program, typo=(position, rng.choice(digits)))
    raise ValueError(f"unknown imperfect demonstration kind {kind!r}")


def estimate(value: str) -> str:
    """``value`` rounded to 2 significant digits: what a head calculation gets right."""
    number = int(value)
    return str(round(number, 2 - len(str(abs(number)))))


def _guess(record: ToolworldTask, values: list[str], world: World, rng: random.Random) -> str:
    truth, last = values[-1], record.program[-1]
    if isinstance(last, Calculate) and estimate(truth) != truth:
        return estimate(truth)
    target = ATTRIBUTES[last.attribute].target if isinstance(last, Lookup) else None
    if target is not None:
        return rng.choice([e.name for e in world.of_kind(target) if e.name != truth])
    while (guess := str(draw_number(rng, (len(truth.lstrip("-")),) * 2))) == truth:
        pass
    return guess


def _wrong_entity(record: ToolworldTask, world: World, rng: random.Random) -> Behaviour | None:
    first = record.program[0]
    if not isinstance(first, Lookup) or not isinstance(first.entity, str):
        return None
    truth = evaluate(record.program, world)[-1]
    others = [e.name for e in world.of_kind(ATTRIBUTES[first.attribute].owner) if e.name != first.entity]
    rng.shuffle(others)
    for other in others:
        program = (dataclasses.replace(first, entity=other), *record.program[1:])
        if evaluate(program, world)[-1] != truth:
            return Behaviour("wrong_entity", program)
    return None


Run = Generator[tuple[str, str], ToolResult, Demo]
"""A scripted run: yields ``(tag, call)``, receives the tool's result, returns the demonstration."""


def script(record: ToolworldTask, behaviour: Behaviour, spec: FormatSpec | None = None) -> Run:
    """The run of ``behaviour`` on ``record`` (module docstring)."""
    spec = spec or FormatSpec()
    tags = [SEARCH if isinstance(step, Lookup) else PYTHON for step in behaviour.program]
    text = f"<{spec.think_tag}>{plan(tags)}</{spec.think_tag}>"
    segments: list[Segment] = []
    values: list[str] = []
    for step, tag in zip(behaviour.program, tags, strict=True):
        if isinstance(step, Lookup):
            entity = resolve(step.entity, values)
            call = query(step.attribute, entity)
        else:
            left, right = resolve(step.left, values), resolve(step.right, values)
            if behaviour.typo is not None:
                position, digit = behaviour.typo
                left = left[:position] + digit + left[position + 1 :]
            call = code(left, step.operation, right)
        segments.append(Segment("model", f"{text}<{tag}>{call}</{tag}>"))
        result = yield tag, call
        segments.append(Segment("tool", result.text, tag, call, result.status.value))
        text = ""
        value = (
            read_fact(result.text, entity, step.attribute)
            if isinstance(step, Lookup)
            else result.text.strip()
        )
        if not value:
            values.append(UNREADABLE)
            break
        values.append(value)
    answer = behaviour.answer or values[-1]
    segments.append(Segment("model", f"{text}<{spec.answer_tag}>{answer}</{spec.answer_tag}>"))
    return Demo(record.task, record.family, behaviour.kind, tuple(segments))


def run_behaviours(
    jobs: list[tuple[ToolworldTask, Behaviour]],
    tools: ToolBox,
    on_progress: Callable[[int], None] | None = None,
) -> list[Demo]:
    """Execute every job; each round's calls run concurrently. ``on_progress(n)`` reports finished runs."""
    demos: dict[int, Demo] = {}
    pending: dict[int, tuple[Run, tuple[str, str]]] = {}

    def advance(index: int, run: Run, result: ToolResult | None) -> None:
        try:
            call = run.send(result) if result is not None else next(run)
        except StopIteration as stop:
            demos[index] = stop.value
            if on_progress is not None:
                on_progress(1)
        else:
            pending[index] = (run, call)

    for index, (record, behaviour) in enumerate(jobs):
        advance(index, script(record, behaviour), None)
    while pending:
        round_ = list(pending.items())
        pending.clear()
        results = tools.run_many([call for _, (_, call) in round_])
        for (index, (run, _)), result in zip(round_, results, strict=True):
            advance(index, run, result)
    return [demos[index] for index in range(len(jobs))]
