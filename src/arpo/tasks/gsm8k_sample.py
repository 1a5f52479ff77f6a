"""A seeded generator of grade-school math word problems in the GSM8K format, for the GSM8K example.

Each row is ``{"question", "answer", "idx"}`` like the GSM8K files (Cobbe et al. 2021, arXiv
2110.14168): the answer is a worked solution, one line per step with the calculator annotation
``<<expression=value>>``, ending in ``#### <integer>``, so the ``gsm8k`` layout of
:mod:`arpo.tasks.layouts` loads it unchanged. The problems are synthetic (the 38 templates of
:mod:`arpo.tasks.gsm8k_templates`, two to four arithmetic steps, every intermediate and final
value a non-negative integer): the example runs on any machine without downloading GSM8K, and the
same seed always writes the same file.
"""

from __future__ import annotations

import json
import random
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path

from arpo.io import atomic_write_text
from arpo.tasks.gsm8k_problem import Problem
from arpo.tasks.gsm8k_templates import TEMPLATES

__all__ = ["TEMPLATES", "Problem", "generate_problems", "questions_of", "write_gsm8k_sample"]


def generate_problems(n: int, seed: int = 0, exclude: Collection[str] = ()) -> list[Problem]:
    """``n`` problems, templates drawn uniformly; the same ``seed`` gives the same problems.

    A drawn problem whose question is in ``exclude`` (e.g. the training file's, for a held-out
    set) or was already drawn is dropped and another is drawn. Raises ValueError when 100·n draws
    do not give ``n`` distinct new questions (the templates' space is exhausted).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = random.Random(seed)
    templates = list(TEMPLATES.items())
    problems: list[Problem] = []
    seen = set(exclude)
    for _ in range(100 * n):
        name, template = rng.choice(templates)
        problem = replace(template(rng), template=name)
        if problem.question not in seen:
            seen.add(problem.question)
            problems.append(problem)
            if len(problems) == n:
                return problems
    raise ValueError(
        f"found only {len(problems)} distinct problems outside the excluded ones in {100 * n} draws"
    )


def questions_of(path: str | Path) -> set[str]:
    """The ``question`` fields of a GSM8K-format JSONL file (to exclude from a held-out set)."""
    with Path(path).open(encoding="utf-8") as lines:
        return {json.loads(line)["question"] for line in lines if line.strip()}


def write_gsm8k_sample(out: str | Path, n: int = 200, seed: int = 0, exclude: Collection[str] = ()) -> Path:
    """Write ``n`` distinct problems (none in ``exclude``) as GSM8K JSONL rows to ``out``
    (atomically: complete or not at all)."""
    rows = [problem.row(idx) for idx, problem in enumerate(generate_problems(n, seed, exclude))]
    return atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))
