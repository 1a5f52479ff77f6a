"""Paired comparison of two evaluations of the same tasks: which model solves more, and is it chance?

Two ``arpo eval`` runs of two models on the same data sets give, per task, each model's share of
correct samples (0 or 1 for greedy decoding with one sample). Per data set, over the tasks both
runs evaluated:

* ``a``, ``b``: each run's accuracy, the mean over tasks of the share of correct samples (pass@1);
* ``a_only`` / ``b_only``: tasks where run A's share is above run B's, and the reverse; tasks
  where the shares are equal carry no information about which model is better;
* ``p``: the exact two-sided sign test on those discordant tasks — under "neither model is
  better" each is A's with probability ½, so p = min(1, 2·P[X ≤ min(a_only, b_only)]),
  X ~ Binomial(a_only + b_only, ½). With one sample per task this is the exact McNemar test
  (McNemar 1947) on the 2 × 2 table of solved / not solved; with several it is the sign test on
  the per-task shares;
* ``tool_use_a`` / ``tool_use_b``: share of samples with at least one tool call.

Both runs must have evaluated exactly the same tasks of a data set (a comparison over different
tasks is not paired); a data set only one run has is listed and not compared.

**Several pairs** (one per training seed: A₁ against B₁, A₂ against B₂, …) are pooled per data set
by :func:`pool_comparisons`:

* ``a``, ``b``: the mean of the pairs' accuracies; ``diff_sd``, ``diff_min``, ``diff_max``: the
  sample standard deviation and range over pairs of A − B, which is how much one training run's
  result moves from seed to seed;
* ``a_only``, ``b_only``: the discordant tasks summed over pairs, and ``p`` the exact sign test on
  those sums. With one greedy sample per task this is the stratified McNemar test (the
  Mantel–Haenszel test for matched pairs, each task of each pair a stratum of two): valid when the
  pairs are independent runs, it asks whether A and B differ on these tasks. It does not model
  seed-to-seed variation; the spread of A − B does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

from arpo.report.markdown import Table, fmt
from arpo.tasks.errors import TaskLoadError
from arpo.tasks.readers import read_rows

RECORD_FIELDS = ("dataset", "task_id", "correct", "tool_calls")


@dataclass(frozen=True)
class PairedRow:
    """The comparison on one data set (module docstring)."""

    dataset: str
    tasks: int
    a: float
    b: float
    a_only: int
    b_only: int
    p: float
    tool_use_a: float
    tool_use_b: float


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test: p = min(1, 2·Σ_{i ≤ min(wins, losses)} C(n, i)/2ⁿ), n = wins + losses
    (1 when n = 0)."""
    n = wins + losses
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**n)


def read_eval_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of an evaluation: its ``records.jsonl``, or the folder (``out_dir``) holding it.

    Raises FileNotFoundError when there is none, and a ValueError (:class:`TaskLoadError`) naming
    the file, the row and the field of a row that is not a JSON object with the fields the
    comparison needs.
    """
    path = Path(path)
    file = path / "records.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no evaluation records (records.jsonl of an `arpo eval` out_dir)")
    records = []
    for number, row in read_rows(str(file), "jsonl", "train"):
        if isinstance(row, TaskLoadError):
            raise row
        missing = [f for f in RECORD_FIELDS if f not in row]
        if missing:
            raise TaskLoadError(str(file), "not an evaluation record", number, missing[0])
        records.append(row)
    if not records:
        raise ValueError(f"{file}: no records")
    return records


def _by_task(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        grouped[record["dataset"]][str(record["task_id"])].append(record)
    return grouped


def compare_evaluations(
    a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]
) -> tuple[list[PairedRow], list[str]]:
    """The paired rows of the data sets both evaluations have, and the names of those only one has.

    Raises ValueError when the two evaluated different tasks of a shared data set.
    """
    tasks_a, tasks_b = _by_task(a), _by_task(b)
    rows = []
    for dataset in [d for d in tasks_a if d in tasks_b]:
        ta, tb = tasks_a[dataset], tasks_b[dataset]
        if set(ta) != set(tb):
            raise ValueError(
                f"data set {dataset!r}: the evaluations have different tasks ({len(ta)} and {len(tb)}, "
                f"{len(set(ta) ^ set(tb))} in only one): a paired comparison needs the same tasks"
            )
        share_a = {t: fmean(bool(r["correct"]) for r in rs) for t, rs in ta.items()}
        share_b = {t: fmean(bool(r["correct"]) for r in rs) for t, rs in tb.items()}
        a_only = sum(share_a[t] > share_b[t] for t in ta)
        b_only = sum(share_b[t] > share_a[t] for t in ta)
        rows.append(
            PairedRow(
                dataset,
                len(ta),
                fmean(share_a.values()),
                fmean(share_b.values()),
                a_only,
                b_only,
                sign_test_p(a_only, b_only),
                fmean(bool(r["tool_calls"]) for rs in ta.values() for r in rs),
                fmean(bool(r["tool_calls"]) for rs in tb.values() for r in rs),
            )
        )
    only_one = sorted(set(tasks_a) ^ set(tasks_b))
    return rows, only_one


@dataclass(frozen=True)
class PooledRow:
    """One data set's comparison pooled over several pairs (module docstring)."""

    dataset: str
    pairs: int
    tasks: int
    a: float
    b: float
    diff_sd: float
    diff_min: float
    diff_max: float
    a_only: int
    b_only: int
    p: float


def pool_comparisons(pairs: Sequence[Sequence[PairedRow]]) -> tuple[list[PooledRow], list[str]]:
    """Each data set's rows pooled over the pairs (module docstring), and the names of the data sets
    that not every pair compared (those are not pooled). ``pairs`` needs at least two entries."""
    if len(pairs) < 2:
        raise ValueError(f"pooling needs at least two pairs of evaluations, got {len(pairs)}")
    by_dataset: dict[str, list[PairedRow]] = defaultdict(list)
    for rows in pairs:
        for row in rows:
            by_dataset[row.dataset].append(row)
    pooled, not_pooled = [], []
    for dataset, rows in by_dataset.items():
        if len(rows) < len(pairs):
            not_pooled.append(dataset)
            continue
        diffs = [r.a - r.b for r in rows]
        a_only, b_only = sum(r.a_only for r in rows), sum(r.b_only for r in rows)
        pooled.append(
            PooledRow(
                dataset,
                len(rows),
                sum(r.tasks for r in rows),
                fmean(r.a for r in rows),
                fmean(r.b for r in rows),
                stdev(diffs),
                min(diffs),
                max(diffs),
                a_only,
                b_only,
                sign_test_p(a_only, b_only),
            )
        )
    return pooled, sorted(not_pooled)


def pooled_table(rows: Sequence[PooledRow]) -> Table:
    """The pooled comparison as a table: mean accuracies, A − B over pairs, summed discordant tasks, p."""
    header = [
        "data set",
        "pairs",
        "tasks (all pairs)",
        "A: mean",
        "B: mean",
        "A − B: mean ± sd (min to max)",
        "A only",
        "B only",
        "p (pooled sign test)",
    ]
    body = [
        [
            r.dataset,
            str(r.pairs),
            str(r.tasks),
            f"{100 * r.a:.1f} %",
            f"{100 * r.b:.1f} %",
            f"{100 * (r.a - r.b):+.1f} ± {100 * r.diff_sd:.1f} ({100 * r.diff_min:+.1f} to {100 * r.diff_max:+.1f}) points",
            str(r.a_only),
            str(r.b_only),
            fmt(r.p, 2),
        ]
        for r in rows
    ]
    return Table(header, body)


def paired_table(rows: Sequence[PairedRow], name_a: str, name_b: str) -> Table:
    """The comparison as a table: accuracies, discordant tasks, p, tool use."""
    header = [
        "data set",
        "tasks",
        f"A: {name_a}",
        f"B: {name_b}",
        "A only",
        "B only",
        "p (sign test)",
        "tool use A",
        "tool use B",
    ]
    body = [
        [
            r.dataset,
            str(r.tasks),
            f"{100 * r.a:.1f} %",
            f"{100 * r.b:.1f} %",
            str(r.a_only),
            str(r.b_only),
            fmt(r.p, 2),
            f"{100 * r.tool_use_a:.1f} %",
            f"{100 * r.tool_use_b:.1f} %",
        ]
        for r in rows
    ]
    return Table(header, body)
