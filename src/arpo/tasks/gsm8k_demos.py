"""Cold-start tool-use demonstrations from GSM8K-format solutions, without a teacher model.

``arpo data gsm8k-demos`` turns rows ``{"question", "answer": "… <<48/2=24>>24 …\\n#### 72",
"idx"?}`` (the GSM8K files, or the output of ``arpo data gsm8k-sample``) into demonstration rows
(:class:`~arpo.tasks.toolworld.demos.Demo`) in the rollout protocol, for SFT. The rules
(docs/gsm8k.md shows an example):

- each calculator annotation ``<<expression=value>>`` becomes a ``python`` call
  ``print(expression)`` run in the sandboxed python tool, and the result segment is what the tool
  printed, as printed (``print(48/2)`` gives ``24.0``). In the code ``$`` and thousands commas
  are dropped and ``N%`` becomes ``(N/100)``. A later step refers to a result by its value, as
  the solution writes it: every call is a fresh process, nothing is kept between calls;
- the solution's text becomes the thoughts. Each annotation ends a ``<think>`` block holding the
  text since the previous annotation, with ``= <<…>>value`` cut out: the expression written
  before ``=`` stays (an annotation with no ``=`` before it is replaced by its expression). The
  rest of an annotation's line joins its thought; lines after the last annotation make a last
  thought before ``<answer>n</answer>``, ``n`` being the number after ``####``, commas removed;
- a row is skipped and counted by reason (:data:`SKIP_REASONS`) when it has no annotation
  (``no_annotation``), an annotation is not ``expression=number`` (``annotation_value``), a call
  fails or prints no number (``expression_error``), or a printed number disagrees with the
  annotation's value (``value_mismatch``; agreeing means equal within 1e-6 relative, or equal
  once rounded to the value's decimal places, as GSM8K writes ``<<10/3=3.33>>``);
- a malformed row (not a JSON object, no question, no ``####``) stops the conversion with a
  :class:`~arpo.tasks.errors.TaskLoadError` naming the file, the row and the field.

A seeded ``flawed_share`` of the converted rows get a flaw (:data:`FLAW_KINDS`, drawn uniformly
among those that apply), each making the answer certainly wrong: RL's headroom over SFT.

- ``no_tool``: the first thought, then at once a plausible wrong number (the answer rounded to two
  significant digits, else off by 1 up to 20 % of it);
- ``wrong_arithmetic``: every step with the tool but the last, which it does in its head and gets
  wrong (a plausible wrong number as above);
- ``skip_last_step``: stops one step early and answers that intermediate result;
- ``wrong_operand``: mistypes one digit of the last calculation and answers what the tool prints.

Every demonstration is checked with the GSM8K example's reward (:data:`GSM8K_REWARD`): a perfect
one must score 1, a flawed one pass the format gate and score 0.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from rich.console import Console

from arpo.core.answer_format import FormatSpec
from arpo.core.rewards import HierarchicalReward, RewardConfig
from arpo.io import atomic_write_text
from arpo.progress import ProgressBar
from arpo.tasks.errors import TaskLoadError
from arpo.tasks.layouts import BUILTIN_LAYOUTS, dataset_name
from arpo.tasks.readers import read_rows, resolve_format
from arpo.tasks.record import Task
from arpo.tasks.toolworld.demos import Demo, Segment, check_demos
from arpo.tools import ToolBox, ToolResult
from arpo.tools.registry import build_toolbox

PYTHON = "python"
FAMILY = "gsm8k"
FlawKind = Literal["no_tool", "wrong_arithmetic", "skip_last_step", "wrong_operand"]
FLAW_KINDS: tuple[str, ...] = get_args(FlawKind)
SKIP_REASONS = ("no_annotation", "annotation_value", "expression_error", "value_mismatch")
GSM8K_REWARD = RewardConfig(format=FormatSpec(tool_tags=(PYTHON,)))
"""The reward of configs/gsm8k_smollm2_arpo.yaml: the format gate with the python tool only, math
equivalence of the answer."""

ANNOTATION = re.compile(r"<<([^<>]*)>>")
REPEATED_VALUE = re.compile(r"\$?-?\d[\d,]*(?:\.\d+)?%?")
"""The value GSM8K repeats after an annotation: ``<<80000+50000=130000>>130,000``."""
PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
CALLS_PER_BATCH = 256
"""Calls handed to the ToolBox at once (it runs them concurrently); the progress bar moves per batch."""


class Skip(Exception):
    """A row that cannot become a demonstration; ``reason`` is one of :data:`SKIP_REASONS`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Step:
    """One annotation: the thought before the call, the code, the annotation's value (digits)."""

    thought: str
    code: str
    value: str


@dataclass(frozen=True)
class Solution:
    """A worked solution as steps, and the thought after the last step (may be empty)."""

    steps: tuple[Step, ...]
    closing: str


@dataclass(frozen=True)
class Worked:
    """A task, its solution and the sandbox's result of every step."""

    task: Task
    solution: Solution
    results: tuple[ToolResult, ...]

    @property
    def answer(self) -> str:
        """The number after ``####``, commas removed."""
        return self.task.ground_truths[0].replace(",", "")

    def calls(self) -> list[tuple[str, str, ToolResult]]:
        """``(thought, code, result)`` of every step."""
        return [(s.thought, s.code, r) for s, r in zip(self.solution.steps, self.results, strict=True)]

    def demo(self, kind: str, calls: Sequence[tuple[str, str, ToolResult]], ending: str) -> Demo:
        """The demonstration making ``calls``, then writing ``ending`` (which holds the answer)."""
        segments: list[Segment] = []
        for thought, code, result in calls:
            segments.append(Segment("model", f"{think(thought)}<{PYTHON}>{code}</{PYTHON}>"))
            segments.append(Segment("tool", result.text, PYTHON, code, result.status.value))
        segments.append(Segment("model", ending))
        return Demo(self.task, FAMILY, kind, tuple(segments))

    def perfect(self) -> Demo:
        return self.demo("perfect", self.calls(), think(self.solution.closing) + answer(self.answer))


@dataclass
class Conversion:
    """What a conversion made: the demonstrations in input order, and the rows it skipped by reason."""

    rows: int
    demos: list[Demo]
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def kinds(self) -> Counter[str]:
        return Counter(demo.kind for demo in self.demos)

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.kinds.items()))
        skipped = ", ".join(
            f"{reason} {self.skipped[reason]}" for reason in SKIP_REASONS if self.skipped[reason]
        )
        return f"{len(self.demos)} demonstrations of {self.rows} rows ({kinds}); skipped: {skipped or 'none'}"


def think(text: str) -> str:
    return f"<{GSM8K_REWARD.format.think_tag}>{text}</{GSM8K_REWARD.format.think_tag}>" if text else ""


def answer(text: str) -> str:
    return f"<{GSM8K_REWARD.format.answer_tag}>{text}</{GSM8K_REWARD.format.answer_tag}>"


def parse_solution(text: str) -> Solution:
    """The steps of a GSM8K solution (the text before ``####``; module docstring); raises Skip."""
    steps: list[Step] = []
    carried: list[str] = []
    for line in text.rpartition("####")[0].splitlines():
        matches = list(ANNOTATION.finditer(line))
        position = 0
        for index, match in enumerate(matches):
            expression, value = _annotation(match.group(1))
            head = line[position : match.start()]
            before = head.rstrip(" $=")  # "… 48/2 = $" → "… 48/2"
            written = head.rstrip(" $").endswith("=") and bool(before.strip())
            carried.append(before if written else f"{before} {expression}")
            repeated = REPEATED_VALUE.match(line, match.end())
            position = repeated.end() if repeated else match.end()
            if index == len(matches) - 1:
                carried.append(line[position:])
            steps.append(Step(_words("".join(carried)), python_code(expression), value))
            carried = []
        if not matches:
            carried.append(line + "\n")
    if not steps:
        raise Skip("no_annotation")
    return Solution(tuple(steps), _words("".join(carried)))


def python_code(expression: str) -> str:
    """``print(expression)`` with ``$`` and thousands commas dropped and ``N%`` as ``(N/100)``."""
    cleaned = PERCENT.sub(r"(\1/100)", THOUSANDS.sub("", expression.replace("$", "")))
    return f"print({cleaned.strip()})"


def agrees(printed: float, value: str) -> bool:
    """Whether the printed number is the annotation's ``value`` (module docstring)."""
    expected = float(value)
    if math.isclose(printed, expected, rel_tol=1e-6, abs_tol=1e-9):
        return True
    decimals = len(value.partition(".")[2])
    return decimals > 0 and round(printed, decimals) == expected


def printed_number(result: ToolResult) -> float | None:
    """The number a successful call printed, or None."""
    try:
        return float(result.text.strip()) if result.ok else None
    except ValueError:
        return None


def number_text(value: float) -> str:
    """``24.0`` as ``24``; other numbers as Python writes them."""
    return str(int(value)) if value.is_integer() else repr(value)


def plausible_wrong(truth: str, rng: random.Random) -> str | None:
    """A number near ``truth`` that is not it: rounded to 2 significant digits, else off by 1 up to
    20 % of it (never below zero for a non-negative truth); None if ``truth`` is not a number."""
    try:
        value = float(truth)
    except ValueError:
        return None
    rounded = float(f"{value:.2g}")
    if rounded != value:
        return number_text(rounded)
    offset = rng.randint(1, max(1, round(abs(value) * 0.2)))
    up = rng.random() < 0.5 or 0 <= value < offset
    return number_text(value + offset if up else value - offset)


def mistype(code: str, rng: random.Random) -> str | None:
    """``code`` with one digit of one of its numbers changed (no new leading zero), or None."""
    numbers = list(NUMBER.finditer(code))
    if not numbers:
        return None
    number = rng.choice(numbers)
    position = rng.choice([i for i in range(number.start(), number.end()) if code[i].isdigit()])
    digits = [d for d in "0123456789" if d != code[position] and (position != number.start() or d != "0")]
    return code[:position] + rng.choice(digits) + code[position + 1 :]


def flawed_demo(
    worked: Worked, kind: str, rng: random.Random, tools: ToolBox, reward: HierarchicalReward
) -> Demo | None:
    """A demonstration of ``kind`` (module docstring) whose answer scores 0, or None if the kind
    does not apply to this row."""
    steps, calls, closing = worked.solution.steps, worked.calls(), worked.solution.closing
    if kind in ("no_tool", "wrong_arithmetic"):
        guess = plausible_wrong(worked.answer, rng)
        if guess is None:
            return None
        if kind == "no_tool":
            demo = worked.demo(kind, [], think(steps[0].thought) + answer(guess))
        else:
            demo = worked.demo(
                kind, calls[:-1], think(_words(f"{steps[-1].thought} {closing}")) + answer(guess)
            )
    elif kind == "skip_last_step":
        if len(steps) < 2 or (value := printed_number(worked.results[-2])) is None:
            return None
        demo = worked.demo(kind, calls[:-1], answer(number_text(value)))
    elif kind == "wrong_operand":
        code = mistype(steps[-1].code, rng)
        result = tools.run(PYTHON, code) if code is not None else None
        if result is None or (value := printed_number(result)) is None:
            return None
        last = (steps[-1].thought, code, result)
        demo = worked.demo(kind, [*calls[:-1], last], think(closing) + answer(number_text(value)))
    else:
        raise ValueError(f"unknown flawed demonstration kind {kind!r}; known: {list(FLAW_KINDS)}")
    scored = reward(demo.reward_input())
    return demo if scored.format_ok and scored.correctness == 0 else None


def choose_flaws(
    worked: list[Worked],
    share: float,
    kinds: Sequence[str],
    rng: random.Random,
    tools: ToolBox,
    reward: HierarchicalReward,
) -> dict[int, Demo]:
    """Flawed demonstrations for ``round(share × n)`` rows drawn at random, by row index; each
    row tries the kinds in a random order (a mistyped call runs on its own: there are few).
    Raises ValueError if too few rows admit a flaw."""
    wanted = round(share * len(worked))
    order = list(range(len(worked)))
    rng.shuffle(order)
    flawed: dict[int, Demo] = {}
    for index in order:
        if len(flawed) == wanted:
            break
        shuffled = list(kinds)
        rng.shuffle(shuffled)
        tries = (flawed_demo(worked[index], kind, rng, tools, reward) for kind in shuffled)
        demo = next((d for d in tries if d is not None), None)
        if demo is not None:
            flawed[index] = demo
    if len(flawed) < wanted:
        raise ValueError(
            f"only {len(flawed)} of {wanted} rows admit a flaw of kinds {list(kinds)}: add kinds "
            "(no_tool applies to every row) or lower the flawed share"
        )
    return flawed


def read_solutions(path: str | Path, limit: int | None = None) -> Iterator[tuple[Task, str]]:
    """``(task, solution text)`` of the first ``limit`` rows of a GSM8K-format JSONL or Parquet
    file; the task is what the ``gsm8k`` layout loads (ids from ``idx``, else row numbers)."""
    path = str(path)
    layout = BUILTIN_LAYOUTS["gsm8k"]
    rows = read_rows(path, resolve_format(path, "auto"), "train")
    for count, (number, row) in enumerate(rows):
        if count == limit:
            return
        if isinstance(row, TaskLoadError):
            raise row
        if count == 0 and "idx" not in row:
            layout = layout.model_copy(update={"id": None})
        task = layout.task_from_row(row, path=path, row_number=number, default_source=dataset_name(path))
        if not isinstance(row["answer"], str):
            raise TaskLoadError(path, "expected the worked solution as a string", number, "answer")
        yield task, row["answer"]


def convert_gsm8k(
    path: str | Path,
    *,
    flawed_share: float = 0.0,
    flawed_kinds: Sequence[str] = FLAW_KINDS,
    seed: int = 0,
    limit: int | None = None,
    system_prompt: str | None = None,
    tools: ToolBox | None = None,
    progress: bool = False,
) -> Conversion:
    """The demonstrations of a GSM8K-format file (module docstring). ``tools`` runs the calls
    (default: a ToolBox with the sandboxed python tool, closed afterwards)."""
    if not 0.0 <= flawed_share <= 1.0:
        raise ValueError(f"flawed share must lie in [0, 1], got {flawed_share}")
    unknown = sorted(set(flawed_kinds) - set(FLAW_KINDS))
    if unknown or not flawed_kinds:
        raise ValueError(f"unknown flawed kinds {unknown or '(none given)'}; choose among {list(FLAW_KINDS)}")
    console = Console(stderr=True, quiet=not progress)
    parsed: list[tuple[Task, Solution]] = []
    conversion = Conversion(rows=0, demos=[])
    for task, text in read_solutions(path, limit):
        conversion.rows += 1
        if system_prompt is not None:
            task = task.with_system_prompt(system_prompt)
        try:
            parsed.append((task, parse_solution(text)))
        except Skip as skip:
            conversion.skipped[skip.reason] += 1
    own_tools = tools is None
    tools = tools or build_toolbox([{"name": PYTHON}])
    try:
        results = _run_steps([solution for _, solution in parsed], tools, console)
        worked = []
        for (task, solution), outcome in zip(parsed, results, strict=True):
            try:
                worked.append(_checked(Worked(task, solution, outcome)))
            except Skip as skip:
                conversion.skipped[skip.reason] += 1
        if not worked:
            raise ValueError(f"{path}: no row could be converted ({conversion.summary()})")
        reward = HierarchicalReward(GSM8K_REWARD)
        rng = random.Random(f"gsm8k-demos/{seed}/flaws")
        flaws = choose_flaws(worked, flawed_share, flawed_kinds, rng, tools, reward)
    finally:
        if own_tools:
            tools.close()
    conversion.demos = [flaws.get(index) or item.perfect() for index, item in enumerate(worked)]
    check_demos(conversion.demos, reward)
    return conversion


def write_demos(demos: Sequence[Demo], out: str | Path) -> Path:
    """Write the rows of :meth:`Demo.to_row` as JSONL to ``out``, atomically (complete or not at all)."""
    return atomic_write_text(out, "".join(json.dumps(demo.to_row()) + "\n" for demo in demos))


def _annotation(text: str) -> tuple[str, str]:
    """``(expression, value)`` of an annotation's text ``expression=value``; raises Skip."""
    expression, equals, value = text.rpartition("=")
    value = value.replace("$", "").replace(",", "").strip()
    try:
        float(value)
    except ValueError:
        raise Skip("annotation_value") from None
    if not equals or not expression.strip():
        raise Skip("annotation_value")
    return expression.strip(), value


def _checked(worked: Worked) -> Worked:
    """``worked`` if every call printed its annotation's value; raises Skip otherwise."""
    for step, result in zip(worked.solution.steps, worked.results, strict=True):
        printed = printed_number(result)
        if printed is None:
            raise Skip("expression_error")
        if not agrees(printed, step.value):
            raise Skip("value_mismatch")
    return worked


def _run_steps(solutions: list[Solution], tools: ToolBox, console: Console) -> list[tuple[ToolResult, ...]]:
    """The result of every step of every solution, the calls run concurrently in batches."""
    calls = [(PYTHON, step.code) for solution in solutions for step in solution.steps]
    results: list[ToolResult] = []
    with ProgressBar("gsm8k-demos: python calls", len(calls), console=console) as bar:
        for start in range(0, len(calls), CALLS_PER_BATCH):
            batch = calls[start : start + CALLS_PER_BATCH]
            results.extend(tools.run_many(batch))
            bar.advance(len(batch))
    grouped, position = [], 0
    for solution in solutions:
        grouped.append(tuple(results[position : position + len(solution.steps)]))
        position += len(solution.steps)
    return grouped


def _words(text: str) -> str:
    """``text`` with each run of white space (line breaks included) as one space, stripped."""
    return " ".join(text.split())
