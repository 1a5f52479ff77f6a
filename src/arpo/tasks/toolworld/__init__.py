"""``toolworld``: the built-in environment, procedurally generated tasks that need tools to solve.

A seeded generator builds a knowledge base of invented towns and people (a corpus for the
``search`` tool), questions that chain lookups and arithmetic on long numbers (``python``),
cold-start demonstrations run with the real tools, and a small tokenizer for tiny models::

    paths = build_toolworld(ToolworldConfig(seed=0), "runs/toolworld")
    tasks = load_toolworld_tasks(paths.train)
    tokenizer = load_tokenizer(paths.tokenizer)
    ids, mask = demo_example(load_demos(paths.demos)[0], tokenizer)
    tools = make_toolbox(read_config(paths.root), paths.corpus)
"""

from arpo.tasks.toolworld.build import (
    TOOLWORLD_LAYOUT,
    ToolworldPaths,
    build_toolworld,
    load_toolworld_records,
    load_toolworld_tasks,
    make_toolbox,
    read_config,
    tool_specs,
)
from arpo.tasks.toolworld.config import FAMILIES, IMPERFECT_KINDS, SplitSizes, ToolworldConfig
from arpo.tasks.toolworld.demos import Demo, Segment, demo_example, demo_tree, load_demos
from arpo.tasks.toolworld.families import ToolworldTask
from arpo.tasks.toolworld.program import system_prompt
from arpo.tasks.toolworld.solver import Behaviour, flawed, perfect, run_behaviours
from arpo.tasks.toolworld.tokenizer import load_tokenizer, train_tokenizer

__all__ = [
    "FAMILIES",
    "IMPERFECT_KINDS",
    "TOOLWORLD_LAYOUT",
    "Behaviour",
    "Demo",
    "Segment",
    "SplitSizes",
    "ToolworldConfig",
    "ToolworldPaths",
    "ToolworldTask",
    "build_toolworld",
    "demo_example",
    "demo_tree",
    "flawed",
    "load_demos",
    "load_toolworld_records",
    "load_toolworld_tasks",
    "load_tokenizer",
    "make_toolbox",
    "perfect",
    "read_config",
    "run_behaviours",
    "system_prompt",
    "tool_specs",
    "train_tokenizer",
]
