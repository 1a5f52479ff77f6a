"""A generator that replays given model segments through the real rollout loop (test helper)."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from arpo.engines.base import Continuation, GeneratorStats, SamplingParams, StreamsByRounds


class ReplayGenerator(StreamsByRounds):
    """Writes the given model segments, one per ``generate`` call, with zero log-probs and
    entropies; a segment ending with the tokenizer's EOS finishes with ``eos``, any other stops at
    the stop string it ends with. Everything else is left to the real rollout loop."""

    def __init__(self, segments: list[list[int]], tokenizer: PreTrainedTokenizerBase) -> None:
        self.segments, self.tokenizer, self.stats = segments, tokenizer, GeneratorStats()
        self.vocab_size = len(tokenizer)
        self.paths: dict[int, list[int]] = {}
        self.turn: dict[int, int] = {}

    def seed(self, seed: int) -> None:
        pass

    def add_path(self, token_ids: Sequence[int]) -> int:
        self.paths[len(self.paths)] = list(token_ids)
        self.turn[len(self.paths) - 1] = 0
        return len(self.paths) - 1

    def prefill(self, paths: Sequence[int]) -> None:
        pass

    def fork(self, path: int, at: int) -> int:
        return self.add_path(self.paths[path][:at])

    def extend(self, path: int, token_ids: Sequence[int]) -> None:
        self.paths[path].extend(token_ids)

    def generate(
        self,
        paths: Sequence[int],
        max_new_tokens: Sequence[int],
        sampling: SamplingParams,
        stop_strings: Sequence[str],
    ) -> list[Continuation]:
        out = []
        for path in paths:
            ids = self.segments[self.turn[path]]
            self.turn[path] += 1
            self.paths[path].extend(ids)
            zeros = [0.0] * len(ids)
            if ids[-1] == self.tokenizer.eos_token_id:
                out.append(Continuation(ids, zeros, zeros, "eos"))
                continue
            text = self.tokenizer.decode(ids)
            stop = next(s for s in stop_strings if text.endswith(s))
            out.append(Continuation(ids, zeros, zeros, "stop", stop))
        return out

    def length(self, path: int) -> int:
        return len(self.paths[path])

    def release(self, path: int) -> None:
        pass
