"""The generator protocol: what the rollout loop needs from an inference engine (DESIGN.md §3).

A generator owns *paths*: token sequences with whatever cached state the engine keeps for them
(a KV cache). The rollout loop creates a path per prompt, ``fork``s it into trajectories and
branches, ``extend``s a path with tool-result tokens, and asks for continuations of many paths at
once. Engines never see the rollout tree; the tree never sees an engine.

Contract of :meth:`Generator.generate` for each requested path:

* sampling is from softmax(logits / temperature), truncated to the top-p nucleus; temperature 0
  means greedy (then log-probs and entropies refer to the temperature-1 distribution);
* generation stops at an end-of-sequence token (``finish="eos"``), when the text generated in this
  call contains one of ``stop_strings`` (``finish="stop"``, ``stop_string`` says which; the tokens
  are kept as sampled), or after ``max_new_tokens`` (``finish="length"``);
* each sampled token comes with its log-prob and the exact entropy (nats) of the full-vocabulary
  distribution it was drawn from (engines that only see top-k log-probs document their estimate);
* the sampled tokens are appended to the path, so the next call continues after them.

:meth:`Generator.stream` is the same sampling with requests that come and go: every request is
continued as ``generate`` would; at each step where some requests end, ``on_done`` gets them (in
batch order) and returns the requests that join next (a path after its tool result, a branch, a
fresh sample). ``on_done`` may fork, extend and release any path that is not running. The call
returns when nothing runs and ``on_done`` returned nothing. Engines that decode a batch to its
end before taking new work get it from :class:`StreamsByRounds`.

Peeks: a request with ``peek_after = k > 0`` that has sampled k tokens and goes on running is
reported to ``on_peek`` (when given) at that step, before ``on_done``, with a copy of its
continuation so far; the request keeps running unchanged. ``on_peek`` may fork the peeked path at
any position up to its length when the request started (ARPO forks branches at the tool result
there, :mod:`arpo.rollout`), and release paths as ``on_done`` may (a released path is never
reported, also when it ended at that step); the requests it returns join at the next step. Peeks
are a scheduling aid: an engine that cannot see a running request's tokens (vLLM's, which
reports a request when it ends) never peeks, and the caller then does at the request's end what
it would have done at the peek.

``fork(path, at)`` makes a new path equal to the first ``at`` tokens of ``path``; engines reuse the
parent's cached state for that prefix instead of recomputing it. ``stats`` counts tokens pushed
through the model as prefill (prompt, tool results, recomputed tokens) and as decode steps, so
prefix sharing is measurable.

Weights: ``update_weights(model)`` is called by the trainer after each optimizer phase; engines
that sample with the learner's own module (transformers) have nothing to do, engines that hold a
copy (vLLM) load the new weights and drop every cached state computed with the old ones.
``sleep()`` tells the engine that no call comes until the learner has updated (it may free
accelerator memory); the next call wakes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Continuation:
    """Tokens sampled for one path in one :meth:`Generator.generate` call."""

    token_ids: list[int]
    logprobs: list[float]
    entropies: list[float]
    finish: Literal["eos", "stop", "length"]
    stop_string: str | None = None


@dataclass
class GeneratorStats:
    """Tokens the engine ran through the model, by kind."""

    prefill_tokens: int = 0
    decode_tokens: int = 0

    def snapshot(self) -> GeneratorStats:
        return GeneratorStats(self.prefill_tokens, self.decode_tokens)

    def since(self, earlier: GeneratorStats) -> GeneratorStats:
        return GeneratorStats(
            self.prefill_tokens - earlier.prefill_tokens, self.decode_tokens - earlier.decode_tokens
        )


@dataclass(frozen=True)
class Request:
    """Continue ``path`` by at most ``max_new_tokens`` tokens (none: an empty ``length`` continuation);
    with ``peek_after`` > 0, report the first ``peek_after`` tokens to ``on_peek`` while it runs on."""

    path: int
    max_new_tokens: int
    peek_after: int = 0


OnDone = Callable[[list[tuple[int, Continuation]]], Sequence[Request]]
"""What :meth:`Generator.stream` calls with the (path, continuation) pairs that ended together;
returns the requests that join next. ``on_peek`` has the same type: the pairs of the requests
that reached their ``peek_after`` at that step, each continuation holding the tokens so far."""


def stream_in_rounds(
    generator: Generator,
    requests: Sequence[Request],
    sampling: SamplingParams,
    stop_strings: Sequence[str],
    on_done: OnDone,
) -> None:
    """:meth:`Generator.stream` by rounds: one ``generate`` call for all requests, ``on_done`` with
    all of them, and again with the requests it returned, until it returns none (no peeks)."""
    while requests:
        outs = generator.generate(
            [r.path for r in requests], [r.max_new_tokens for r in requests], sampling, stop_strings
        )
        requests = list(on_done([(r.path, out) for r, out in zip(requests, outs, strict=True)]))


class StreamsByRounds:
    """:meth:`Generator.stream` for an engine that decodes a batch to its end before it takes new
    work: :func:`stream_in_rounds` over the engine's own ``generate``."""

    def stream(
        self,
        requests: Sequence[Request],
        sampling: SamplingParams,
        stop_strings: Sequence[str],
        on_done: OnDone,
        on_peek: OnDone | None = None,
    ) -> None:
        stream_in_rounds(self, requests, sampling, stop_strings, on_done)  # type: ignore[arg-type]


def requests_to_run(paths: Sequence[int], max_new_tokens: Sequence[int]) -> list[int]:
    """Validate a ``generate`` call's arguments; the indices of the paths with a budget left
    (the others get an empty ``length`` continuation)."""
    if len(paths) != len(max_new_tokens):
        raise ValueError("one max_new_tokens per path")
    if len(set(paths)) != len(paths):
        raise ValueError("a path may appear only once per generate call")
    return [i for i, n in enumerate(max_new_tokens) if n > 0]


@runtime_checkable
class Generator(Protocol):
    vocab_size: int
    """Size of the distribution sampled from (the entropy normaliser ln|V| uses it)."""
    stats: GeneratorStats

    def seed(self, seed: int) -> None:
        """Reset the sampling random state."""

    def add_path(self, token_ids: Sequence[int]) -> int:
        """Register a new path (e.g. a rendered prompt); returns its id."""

    def prefill(self, paths: Sequence[int]) -> None:
        """Compute the cached state of the paths' pending tokens now (batched), without sampling."""

    def fork(self, path: int, at: int) -> int:
        """New path equal to the first ``at`` tokens of ``path``, sharing its cached prefix."""

    def extend(self, path: int, token_ids: Sequence[int]) -> None:
        """Append tokens that were not sampled (a tool result); they are computed on the next call."""

    def generate(
        self,
        paths: Sequence[int],
        max_new_tokens: Sequence[int],
        sampling: SamplingParams,
        stop_strings: Sequence[str],
    ) -> list[Continuation]:
        """Continue every path in one batch; see the module docstring for the contract."""

    def stream(
        self,
        requests: Sequence[Request],
        sampling: SamplingParams,
        stop_strings: Sequence[str],
        on_done: OnDone,
        on_peek: OnDone | None = None,
    ) -> None:
        """Continue requests that end and join at any step, peeking where asked; see the module
        docstring."""

    def length(self, path: int) -> int:
        """Number of tokens of the path."""

    def release(self, path: int) -> None:
        """Forget a path and free its cached state. A path that a ``stream`` is decoding may be
        released from ``on_done``: it stops there and is never reported."""

    def update_weights(self, model: Any) -> None:
        """Sample from ``model``'s current weights from now on; no cached state may predate them."""

    def sleep(self) -> None:
        """Free what the engine can until its next call (nothing, for engines that hold nothing)."""
