"""Deterministic, resumable task order: a seeded permutation per epoch, read sequentially."""

from __future__ import annotations

import random
from typing import Any


class TaskSampler:
    """Yields task indices epoch after epoch; ``state_dict`` records the exact position."""

    def __init__(self, num_tasks: int, seed: int) -> None:
        if num_tasks < 1:
            raise ValueError("the training set is empty")
        self.num_tasks = num_tasks
        self.seed = seed
        self.epoch = 0
        self.position = 0

    def _order(self) -> list[int]:
        order = list(range(self.num_tasks))
        random.Random(self.seed * 100_003 + self.epoch).shuffle(order)
        return order

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            order = self._order()
            take = min(count - len(out), self.num_tasks - self.position)
            out += order[self.position : self.position + take]
            self.position += take
            if self.position == self.num_tasks:
                self.epoch, self.position = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_tasks": self.num_tasks,
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_tasks"] != self.num_tasks:
            raise ValueError(
                f"the checkpoint was trained on {state['num_tasks']} tasks, the data now has {self.num_tasks}"
            )
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
