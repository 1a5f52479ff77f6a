"""toolworld generation: reproducible files, disjoint splits, the imperfect share, atomic output, configs."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from arpo.tasks.toolworld import (
    FAMILIES,
    SplitSizes,
    ToolworldConfig,
    ToolworldPaths,
    build_toolworld,
    load_demos,
    load_toolworld_records,
    load_toolworld_tasks,
    read_config,
)
from arpo.tasks.toolworld.program import Calculate, Lookup, Ref, program_from_json, program_to_json

TINY = ToolworldConfig(
    train=SplitSizes(towns=6, people=12, tasks=30), test=SplitSizes(towns=6, people=12, tasks=10)
)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path, bm25_cache: Path) -> None:
    def build(name: str, seed: int) -> dict[str, bytes]:
        config = TINY.model_copy(update={"seed": seed})
        return files(build_toolworld(config, tmp_path / name, cache_dir=bm25_cache, progress=False).root)

    first, again, other = build("a", 5), build("b", 5), build("c", 6)
    assert sorted(first) == [
        "corpus.jsonl",
        "demos.jsonl",
        "manifest.json",
        "test.jsonl",
        "tokenizer/chat_template.jinja",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
        "train.jsonl",
    ]
    assert first == again
    for name in ("corpus.jsonl", "train.jsonl", "test.jsonl", "demos.jsonl", "tokenizer/tokenizer.json"):
        assert first[name] != other[name], name


def reachable_entities(questions: list[str], passages: dict[str, str]) -> set[str]:
    """Entities named in the questions and every entity their passages name, transitively."""
    todo = [word for q in questions for word in re.findall(r"\b[A-Z][a-z]+\b", q) if word in passages]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [word for word in re.findall(r"\b[A-Z][a-z]+\b", passages[name]) if word in passages]
    return seen


def test_train_and_test_worlds_share_no_entity(toolworld: ToolworldPaths) -> None:
    passages = {
        row["title"]: row["text"] for row in map(json.loads, toolworld.corpus.read_text().splitlines())
    }
    splits = {
        split: reachable_entities(
            [t.question for t in load_toolworld_tasks(getattr(toolworld, split))], passages
        )
        for split in ("train", "test")
    }
    assert len(splits["train"]) > 30 and len(splits["test"]) > 30
    assert not splits["train"] & splits["test"]
    demo_text = " ".join(demo.response() for demo in load_demos(toolworld.demos))
    assert not set(re.findall(r"\b[A-Z][a-z]+\b", demo_text)) & splits["test"]


def test_tasks_load_through_the_dataset_loader(toolworld: ToolworldPaths) -> None:
    tasks = load_toolworld_tasks(toolworld.train)
    records = load_toolworld_records(toolworld.train)
    assert [r.task for r in records] == tasks
    assert len(tasks) == read_config(toolworld.root).train.tasks == len({t.id for t in tasks})
    assert len({t.question for t in tasks}) == len(tasks)
    assert {r.family for r in records} == set(FAMILIES)
    assert {t.answer_type for t in tasks} == {"number", "exact"}
    assert all(t.prompt[0].role == "system" and t.source == "toolworld" for t in tasks)


def test_imperfect_demo_share_is_honoured(toolworld: ToolworldPaths) -> None:
    config = read_config(toolworld.root)
    demos = load_demos(toolworld.demos)
    kinds = Counter(demo.kind for demo in demos)
    assert len(demos) == config.train.tasks
    assert sum(n for kind, n in kinds.items() if kind != "perfect") == round(
        config.imperfect_demo_share * len(demos)
    )
    assert set(kinds) == {"perfect", *config.imperfect_kinds}
    manifest = json.loads(toolworld.manifest.read_text())
    assert manifest["counts"]["demo_kinds"] == dict(sorted(kinds.items()))


def test_impossible_share_fails_and_leaves_nothing(tmp_path: Path, bm25_cache: Path) -> None:
    config = TINY.model_copy(
        update={"families": {"lookup": 1.0}, "imperfect_kinds": ("skip_python",), "imperfect_demo_share": 0.5}
    )
    with pytest.raises(ValueError, match="imperfect_demo_share"):
        build_toolworld(config, tmp_path / "env", cache_dir=bm25_cache, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path: Path, bm25_cache: Path) -> None:
    out = tmp_path / "env"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        build_toolworld(TINY, out, cache_dir=bm25_cache, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    build_toolworld(TINY, out, overwrite=True, cache_dir=bm25_cache, progress=False)
    assert not (out / "keep.txt").exists() and (out / "train.jsonl").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env"]


def test_families_and_knobs_shape_the_programs(tmp_path: Path, bm25_cache: Path) -> None:
    config = TINY.model_copy(
        update={
            "families": {"multi_hop": 1.0},
            "max_hops": 3,
            "imperfect_demo_share": 0.0,
            "system_prompt": False,
        }
    )
    paths = build_toolworld(config, tmp_path / "env", cache_dir=bm25_cache, progress=False)
    records = load_toolworld_records(paths.train)
    assert {len(r.program) for r in records} == {2, 3}
    assert all([m.role for m in r.task.prompt] == ["user"] for r in records)
    assert all(isinstance(step, Lookup) for r in records for step in r.program)
    assert {d.kind for d in load_demos(paths.demos)} == {"perfect"}


def test_program_json_round_trip_and_errors() -> None:
    program = (
        Lookup("population", "Vemo"),
        Lookup("birth year", "Tarak"),
        Calculate(Ref(0), "minus", Ref(1)),
    )
    assert program_from_json(program_to_json(program)) == program
    with pytest.raises(ValueError, match="earlier step"):
        program_from_json([{"python": "plus", "left": {"ref": 0}, "right": "1"}])
    with pytest.raises(ValueError, match="not a lookup"):
        program_from_json([{"search": "height", "of": "Vemo"}])


@pytest.mark.parametrize(
    "update, message",
    [
        ({"train": {"towns": 5, "people": 3, "tasks": 1}}, "every town needs its own mayor"),
        ({"families": {"lookup": 0.0}}, "at least one > 0"),
        ({"operand_digits": (5, 3)}, "low <= high"),
        ({"imperfect_kinds": ()}, "at least one"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_config_rejects_bad_knobs(update: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ToolworldConfig.model_validate(update)
