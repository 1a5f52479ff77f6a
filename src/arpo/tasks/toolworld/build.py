"""Build the ``toolworld`` environment into a folder, atomically, and read it back.

:func:`build_toolworld` writes (see :class:`ToolworldPaths`)::

    train.jsonl   test.jsonl    tasks (rows of ToolworldTask.to_row; TOOLWORLD_LAYOUT loads them)
    corpus.jsonl                one passage per entity of both worlds, for the bm25 search tool
    demos.jsonl                 one demonstration per train task, run with the real tools
    tokenizer/                  Hugging Face fast tokenizer with its chat template
    manifest.json               the config and counts

Steps: two worlds with disjoint names (train, test), tasks on each, the corpus; then every
train task is run by the scripted solver through the real tools (``search`` with the ``bm25``
backend over the corpus, sandboxed ``python``), perfectly or, for ``imperfect_demo_share`` of
them, with a flaw; each demonstration is checked with the project's reward (perfect ones must
score 1, flawed ones 0); last, the tokenizer is trained on the demonstrations, prompts and
corpus. Everything is written to a temporary folder beside ``out_dir`` and renamed into place,
so an interrupted build leaves nothing behind. Each step draws from its own random stream
seeded by ``config.seed``: the same config gives byte-identical files.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from arpo.progress import ProgressBar
from arpo.tasks.layouts import FieldMap
from arpo.tasks.loaders import DatasetConfig, load_tasks
from arpo.tasks.record import Task
from arpo.tasks.toolworld.config import ToolworldConfig
from arpo.tasks.toolworld.corpus import corpus_rows
from arpo.tasks.toolworld.demos import Demo, check_demos
from arpo.tasks.toolworld.families import ToolworldTask, generate_tasks, task_from_row
from arpo.tasks.toolworld.jsonl import read_jsonl, write_jsonl
from arpo.tasks.toolworld.knowledge import World, build_world
from arpo.tasks.toolworld.names import NameGenerator
from arpo.tasks.toolworld.program import reserved_words
from arpo.tasks.toolworld.solver import Behaviour, flawed, perfect, run_behaviours
from arpo.tasks.toolworld.tokenizer import scramble_names, train_tokenizer
from arpo.tools import ToolBox
from arpo.tools.registry import build_toolbox

TOOLWORLD_LAYOUT = FieldMap(
    prompt="prompt",
    answer="answer",
    answer_type_field="answer_type",
    answer_type_values={"number": "number", "exact": "exact"},
    id="id",
    source_field="source",
)
"""How :func:`arpo.tasks.load_tasks` reads toolworld task files: ``DatasetConfig(path=..., layout=TOOLWORLD_LAYOUT)``."""


@dataclass(frozen=True)
class ToolworldPaths:
    """The files of a built environment under ``root``."""

    root: Path

    @property
    def train(self) -> Path:
        return self.root / "train.jsonl"

    @property
    def test(self) -> Path:
        return self.root / "test.jsonl"

    @property
    def corpus(self) -> Path:
        return self.root / "corpus.jsonl"

    @property
    def demos(self) -> Path:
        return self.root / "demos.jsonl"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"


def tool_specs(
    config: ToolworldConfig, corpus: str | Path, cache_dir: str | Path | None = None
) -> list[dict[str, Any]]:
    """Specs (:func:`arpo.tools.registry.build_tool`) of the environment's tools: ``search`` (bm25
    over ``corpus``, ``config.search_top_k`` passages; index cached in ``cache_dir``) and ``python``."""
    search: dict[str, Any] = {
        "name": "search",
        "backend": "bm25",
        "corpus": str(corpus),
        "top_k": config.search_top_k,
    }
    if cache_dir is not None:
        search["cache_dir"] = str(cache_dir)
    return [search, {"name": "python"}]


def make_toolbox(
    config: ToolworldConfig, corpus: str | Path, cache_dir: str | Path | None = None, **toolbox_options: Any
) -> ToolBox:
    """A :class:`~arpo.tools.ToolBox` of :func:`tool_specs`; options go to the ToolBox."""
    return build_toolbox(tool_specs(config, corpus, cache_dir), **toolbox_options)


def read_config(root: str | Path) -> ToolworldConfig:
    """The config a built environment was made with (from its manifest)."""
    manifest = ToolworldPaths(Path(root)).manifest
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} does not exist: {root} is not a built toolworld (build_toolworld)"
        )
    return ToolworldConfig.model_validate(json.loads(manifest.read_text())["config"])


def load_toolworld_tasks(path: str | Path) -> list[Task]:
    """The tasks of a ``train.jsonl`` or ``test.jsonl`` file."""
    return load_tasks(DatasetConfig(path=str(path), layout=TOOLWORLD_LAYOUT))


def load_toolworld_records(path: str | Path) -> list[ToolworldTask]:
    """The tasks of a task file with their family, split and program (for scripted solvers)."""
    return read_jsonl(path, task_from_row, "a toolworld task row")


def build_toolworld(
    config: ToolworldConfig,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> ToolworldPaths:
    """Generate the environment into ``out_dir`` (module docstring); ``cache_dir`` holds the bm25
    index (default: the search tool's cache). Raises FileExistsError if ``out_dir`` exists and
    ``overwrite`` is false."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    console = Console(stderr=True, quiet=not progress)
    started = time.perf_counter()
    worlds, records = generate(config)
    corpus = corpus_rows(list(worlds.values()))
    console.print(
        f"toolworld: {len(corpus)} passages, {len(records['train'])} train and {len(records['test'])} test tasks"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        paths = ToolworldPaths(staging)
        write_jsonl(paths.corpus, corpus)
        behaviours = choose_behaviours(records["train"], config, worlds["train"], _stream(config, "flaws"))
        with make_toolbox(config, paths.corpus, cache_dir) as tools:
            demos = _run_with_progress(list(zip(records["train"], behaviours, strict=True)), tools, console)
        check_demos(demos)
        console.print("toolworld: training the tokenizer")
        entity_names = {name for world in worlds.values() for name in world.entities}
        texts = tokenizer_texts(demos, corpus, entity_names, _stream(config, "tokenizer"), config)
        train_tokenizer(texts, config.vocab_size).save_pretrained(str(paths.tokenizer))
        for split in ("train", "test"):
            write_jsonl(getattr(paths, split), [record.to_row() for record in records[split]])
        write_jsonl(paths.demos, [demo.to_row() for demo in demos])
        paths.manifest.write_text(json.dumps(_manifest(config, records, demos, corpus), indent=1) + "\n")
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    console.print(f"toolworld: built {out} in {time.perf_counter() - started:.1f} s")
    return ToolworldPaths(out)


def generate(config: ToolworldConfig) -> tuple[dict[str, World], dict[str, list[ToolworldTask]]]:
    """The train and test worlds (disjoint names) and the tasks of each, by split."""
    names = NameGenerator(_stream(config, "names"), config.name_syllables, reserved_words())
    splits = {"train": config.train, "test": config.test}
    worlds = {
        split: build_world(_stream(config, split), names, sizes, config) for split, sizes in splits.items()
    }
    seen: set[str] = set()
    records = {
        split: generate_tasks(
            worlds[split], split, sizes.tasks, _stream(config, f"{split}/tasks"), config, seen
        )
        for split, sizes in splits.items()
    }
    return worlds, records


def choose_behaviours(
    records: list[ToolworldTask], config: ToolworldConfig, world: World, rng: random.Random
) -> list[Behaviour]:
    """Perfect runs, except ``round(imperfect_demo_share × n)`` random tasks get a flaw drawn
    uniformly among the configured kinds that apply to them."""
    behaviours = [perfect(record) for record in records]
    wanted = round(config.imperfect_demo_share * len(records))
    order = list(range(len(records)))
    rng.shuffle(order)
    chosen = 0
    for index in order:
        if chosen == wanted:
            break
        kinds = list(config.imperfect_kinds)
        rng.shuffle(kinds)
        behaviour = next(
            (b for kind in kinds if (b := flawed(records[index], kind, world, rng)) is not None), None
        )
        if behaviour is not None:
            behaviours[index], chosen = behaviour, chosen + 1
    if chosen < wanted:
        raise ValueError(
            f"only {chosen} of {wanted} imperfect demonstrations possible with imperfect_kinds "
            f"{list(config.imperfect_kinds)} on these families: add kinds or lower imperfect_demo_share"
        )
    return behaviours


def tokenizer_texts(
    demos: list[Demo],
    corpus: list[dict[str, str]],
    names: set[str],
    rng: random.Random,
    config: ToolworldConfig,
) -> Iterator[str]:
    """The tokenizer's training text: prompts, responses and passages, names scrambled."""
    for demo in demos:
        for text in [*(m.content for m in demo.task.prompt), demo.response()]:
            yield scramble_names(text, names, rng, config.name_syllables)
    for row in corpus:
        yield scramble_names(f"{row['title']}: {row['text']}", names, rng, config.name_syllables)


def _stream(config: ToolworldConfig, purpose: str) -> random.Random:
    """An independent random stream per purpose, so one knob does not reshuffle everything."""
    return random.Random(f"toolworld/{config.seed}/{purpose}")


def _run_with_progress(
    jobs: list[tuple[ToolworldTask, Behaviour]], tools: ToolBox, console: Console
) -> list[Demo]:
    with ProgressBar("toolworld: demonstrations", len(jobs), console=console) as bar:
        return run_behaviours(jobs, tools, on_progress=bar.advance)


def _manifest(
    config: ToolworldConfig,
    records: dict[str, list[ToolworldTask]],
    demos: list[Demo],
    corpus: list[dict[str, str]],
) -> dict[str, Any]:
    return {
        "environment": "toolworld",
        "config": config.model_dump(mode="json"),
        "counts": {
            "passages": len(corpus),
            **{
                f"{split}_families": dict(sorted(Counter(r.family for r in rows).items()))
                for split, rows in records.items()
            },
            "demo_kinds": dict(sorted(Counter(demo.kind for demo in demos).items())),
        },
    }


def _replace(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder to ``out``, replacing an existing one."""
    if not out.exists():
        staging.rename(out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    out.rename(trash / out.name)
    staging.rename(out)
    shutil.rmtree(trash, ignore_errors=True)
