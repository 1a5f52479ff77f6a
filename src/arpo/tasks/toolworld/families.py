"""Task families: random programs on a world, turned into tasks with their ground truth.

========================  ===========================================================  =========
family                    example question (program)                                   tools
========================  ===========================================================  =========
``lookup``                What is the population of Vemo? (1 lookup)                    search
``multi_hop``             What is the birth year of the mayor of Vemo? (2..max_hops)    search ×n
``compute``               What is 4821 times 937? (1 calculation)                       python
``lookup_compute``        What is the population of Vemo times 37?                     search, python
``compare``               What is the population of Vemo minus the birth year of Tarak? search ×2, python
========================  ===========================================================  =========

Answers are numbers (answer type ``number``: compared by numeric equivalence) or names (``exact``).
Within a build, no question is generated twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from arpo.tasks.record import ChatMessage, Task
from arpo.tasks.toolworld.config import Family, ToolworldConfig
from arpo.tasks.toolworld.knowledge import ATTRIBUTES, Kind, World, draw_number
from arpo.tasks.toolworld.program import (
    Calculate,
    Lookup,
    Program,
    Ref,
    evaluate,
    program_from_json,
    program_to_json,
    question,
    system_prompt,
)

SOURCE = "toolworld"
NUMERIC = [attribute.name for attribute in ATTRIBUTES.values() if attribute.target is None]
RELATION_TO: dict[Kind, str] = {
    attribute.target: attribute.name for attribute in ATTRIBUTES.values() if attribute.target is not None
}
"""Kind → the relation whose value is an entity of that kind (person ← mayor, town ← home town)."""


@dataclass(frozen=True)
class ToolworldTask:
    """A task with what generated it: its family, its split and the program that solves it."""

    task: Task
    family: Family
    split: str
    program: Program

    def to_row(self) -> dict[str, Any]:
        """The JSONL row (read back with :func:`task_from_row` or :data:`~arpo.tasks.toolworld.build.TOOLWORLD_LAYOUT`)."""
        task = self.task
        return {
            "id": task.id,
            "source": task.source,
            "split": self.split,
            "family": self.family,
            "prompt": task.chat(),
            "answer": list(task.ground_truths),
            "answer_type": task.answer_type,
            "program": program_to_json(self.program),
        }


def task_from_row(row: dict[str, Any]) -> ToolworldTask:
    task = Task(
        id=row["id"],
        prompt=tuple(ChatMessage(m["role"], m["content"]) for m in row["prompt"]),
        ground_truths=tuple(row["answer"]),
        answer_type=row["answer_type"],
        source=row["source"],
    )
    return ToolworldTask(task, row["family"], row["split"], program_from_json(row["program"]))


def random_program(family: Family, world: World, rng: random.Random, config: ToolworldConfig) -> Program:
    """A random program of ``family`` on ``world`` (module docstring)."""

    def entity(kind: Kind) -> str:
        return rng.choice(world.of_kind(kind)).name

    def number() -> str:
        return str(draw_number(rng, config.operand_digits))

    def numeric_lookup(other_than: Lookup | None = None) -> Lookup:
        attribute = rng.choice(NUMERIC)
        kind = ATTRIBUTES[attribute].owner
        candidates = [
            e.name for e in world.of_kind(kind) if other_than is None or e.name != other_than.entity
        ]
        return Lookup(attribute, rng.choice(candidates))

    operation = rng.choice(config.operations)
    if family == "lookup":
        attribute = rng.choice(list(ATTRIBUTES.values()))
        return (Lookup(attribute.name, entity(attribute.owner)),)
    if family == "multi_hop":
        chain = [rng.choice(list(ATTRIBUTES))]  # built backwards from the asked attribute
        for _ in range(rng.randint(2, config.max_hops) - 1):
            chain.insert(0, RELATION_TO[ATTRIBUTES[chain[0]].owner])
        first = Lookup(chain[0], entity(ATTRIBUTES[chain[0]].owner))
        return (first, *(Lookup(attribute, Ref(index)) for index, attribute in enumerate(chain[1:])))
    if family == "compute":
        return (Calculate(number(), operation, number()),)
    if family == "lookup_compute":
        return (numeric_lookup(), Calculate(Ref(0), operation, number()))
    if family == "compare":
        first = numeric_lookup()
        return (first, numeric_lookup(other_than=first), Calculate(Ref(0), operation, Ref(1)))
    raise ValueError(f"unknown task family {family!r}")


def generate_tasks(
    world: World, split: str, count: int, rng: random.Random, config: ToolworldConfig, seen: set[str]
) -> list[ToolworldTask]:
    """``count`` tasks of ``split`` on ``world``, families drawn by weight, questions new to ``seen``."""
    families: list[Family] = list(config.families)
    weights = list(config.families.values())
    system = (ChatMessage("system", system_prompt()),) if config.system_prompt else ()
    tasks: list[ToolworldTask] = []
    for _ in range(100 * count):
        family = rng.choices(families, weights)[0]
        program = random_program(family, world, rng, config)
        text = question(program)
        if text in seen:
            continue
        seen.add(text)
        answer, last = evaluate(program, world)[-1], program[-1]
        numeric = isinstance(last, Calculate) or last.attribute in NUMERIC
        task = Task(
            id=f"{SOURCE}-{split}-{len(tasks):05d}",
            prompt=(*system, ChatMessage("user", text)),
            ground_truths=(answer,),
            answer_type="number" if numeric else "exact",
            source=SOURCE,
        )
        tasks.append(ToolworldTask(task, family, split, program))
        if len(tasks) == count:
            return tasks
    raise ValueError(
        f"{split}: only {len(tasks)} distinct questions found for {count} tasks: add entities or lower the task count"
    )
