"""Hugging Face transformers generator with KV-cache forking (the default engine; CPU and GPU).

State per path: its token ids, the KV cache of a prefix of them stored as a list of *chunks*
(per-layer key/value tensors ``[kv_heads, length, head_dim]``), and the next-token logits at the
end of its last prefill. Chunks are immutable and shared: ``fork(path, at)`` keeps references to
the parent's chunks (the last one sliced as a view), so a branch neither recomputes nor copies
its shared prefix, and the logits stored at a tool-result boundary let a branch sample its first
token without feeding anything. A fork at a position with no stored logits recomputes one token.

One ``generate`` call runs all requested paths as one batch:

1. *gather*: each row's chunks are copied right-aligned into a batch cache ``[B, H, L, D]``
   (left padding where rows are shorter), whose buffers have spare columns that later forwards
   append into in place (:mod:`arpo.engines.batch_cache`);
2. *prefill*: the rows' pending tokens (prompt, or last sampled token + tool result) go through
   the model in one forward, right-aligned so the last column gives every row's next-token logits;
3. *decode*: sample (one uniform draw per row, inverted against the cumulative probabilities:
   :func:`_draw`), record log-prob and exact entropy, check stops, feed the sampled tokens;
   a row that stops has its new KV columns copied out as a new chunk and leaves the batch.

Rows have holes (padding between a row's cached prefix and its pending tokens), so attention uses
an explicit additive 4-D mask ``[B, 1, q, kv]`` (0 where allowed, dtype-min elsewhere) with
explicit position ids (each token's index in its own sequence). Padding queries attend to
themselves only, so no row is ever fully masked. Models whose cache is not a plain full-attention
``DynamicCache`` (sliding-window or hybrid layers) are rejected with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from arpo.core.entropy import entropy_from_logits
from arpo.core.logits import PolicyView, tokenizer_vocab_size
from arpo.engines.base import Continuation, GeneratorStats, OnDone, Request, SamplingParams, requests_to_run
from arpo.engines.batch_cache import BatchCache, spare_columns
from arpo.models.cache_argument import cache_argument
from arpo.models.grouped_attention import grouped_query_attention
from arpo.models.mkl_packed import release_packs

KV = tuple[tuple[torch.Tensor, torch.Tensor], ...]
"""Per layer (keys, values), each ``[kv_heads, length, head_dim]``."""


@dataclass
class _Path:
    ids: list[int]
    chunks: list[KV] = field(default_factory=list)
    kv_len: int = 0
    logits_at: int = -1
    """Position whose next-token logits are stored (== kv_len when usable)."""
    logits: torch.Tensor | None = None


@dataclass
class _Running:
    """The rows a :meth:`HFGenerator.stream` call is decoding, in batch order."""

    paths: list[int] = field(default_factory=list)
    rows: list[_Path] = field(default_factory=list)
    outs: list[Continuation] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)
    peeks: list[int] = field(default_factory=list)
    """Per row, its request's ``peek_after`` (0: none)."""
    cache: BatchCache | None = None
    valid: torch.Tensor | None = None
    """Batch cache columns that hold each row's keys and values ``[B, width]``."""
    starts: list[int] = field(default_factory=list)
    """Per row, the batch column where its KV not yet stored as a chunk starts."""
    tokens: torch.Tensor | None = None
    """Per row, the token it sampled last (not yet fed)."""

    def join(
        self,
        requests: list[Request],
        rows: list[_Path],
        cache: BatchCache,
        valid: torch.Tensor,
        starts: list[int],
    ) -> None:
        """Append prefilled rows; the narrower of the two batch caches is padded on the left."""
        self.paths += [r.path for r in requests]
        self.rows += rows
        self.outs += [Continuation([], [], [], "length") for _ in rows]
        self.budgets += [r.max_new_tokens for r in requests]
        self.peeks += [r.peek_after for r in requests]
        if self.cache is None or self.valid is None:
            self.cache, self.valid, self.starts = cache, valid, list(starts)
            return
        width = max(self.valid.shape[1], valid.shape[1])
        pad_old, pad_new = width - self.valid.shape[1], width - valid.shape[1]
        layers = [
            (_stack_right_aligned(a.keys, b.keys, width), _stack_right_aligned(a.values, b.values, width))
            for a, b in zip(self.cache.layers, cache.layers, strict=True)
        ]
        self.cache = BatchCache(layers, width)
        self.valid = torch.cat(
            [
                torch.nn.functional.pad(self.valid, (pad_old, 0), value=False),
                torch.nn.functional.pad(valid, (pad_new, 0), value=False),
            ]
        )
        self.starts = [s + pad_old for s in self.starts] + [s + pad_new for s in starts]

    def kept(self, keep: list[int], tokens: torch.Tensor) -> _Running:
        """These rows with only ``keep`` (batch indices), each with the token it just sampled."""
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, device=tokens.device)
            assert self.cache is not None and self.valid is not None
            self.cache.batch_select_indices(index)
            self.valid = self.valid[index]
            tokens = tokens[index]
            for name in ("paths", "rows", "outs", "budgets", "peeks", "starts"):
                setattr(self, name, [getattr(self, name)[b] for b in keep])
        self.tokens = tokens
        return self


JOIN_PADDING = 4
"""Rows join a running batch in the running rows' decode step when that forward's padded block
holds at most this many times its real tokens; else the joining rows get a forward of their own.
One forward instead of two saves a pass's fixed cost (most of a small model's decode step, and a
memory-bound pass's weight reads) at the price of the padding's compute."""


def _one_forward(live: int, joining: list[_Path]) -> bool:
    """Whether ``joining`` rows are prefilled in the decode step of ``live`` running rows."""
    pending = [len(r.ids) - r.kv_len for r in joining]
    if not all(r.kv_len for r in joining) or max(pending) == 0:
        return False  # nothing cached to merge, or nothing to compute for them
    return (live + len(joining)) * max(pending) <= JOIN_PADDING * (live + sum(pending))


def _stack_right_aligned(a: torch.Tensor, b: torch.Tensor, width: int) -> torch.Tensor:
    """``a`` ``[B_a, H, W_a, D]`` over ``b`` ``[B_b, H, W_b, D]``, each right-aligned in ``width``
    columns (zeros before), in a buffer with spare columns after them (:mod:`arpo.engines.batch_cache`)."""
    out = a.new_empty((a.shape[0] + b.shape[0], a.shape[1], spare_columns(width), a.shape[3]))
    out[:, :, :width].zero_()
    out[: a.shape[0], :, width - a.shape[2] : width] = a
    out[a.shape[0] :, :, width - b.shape[2] : width] = b
    return out


def _chunk_len(chunk: KV) -> int:
    return chunk[0][0].shape[1]


def _slice_chunks(chunks: list[KV], n: int) -> list[KV]:
    """Chunks covering the first ``n`` positions (views; nothing is copied)."""
    out: list[KV] = []
    covered = 0
    for chunk in chunks:
        if covered >= n:
            break
        take = min(_chunk_len(chunk), n - covered)
        out.append(
            chunk if take == _chunk_len(chunk) else tuple((k[:, :take], v[:, :take]) for k, v in chunk)
        )
        covered += take
    return out


def _check_supported(model: PreTrainedModel) -> None:
    config = model.config.get_text_config(decoder=True)
    layer_types = getattr(config, "layer_types", None) or []
    other = sorted({t for t in layer_types if t != "full_attention"})
    if other or getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        raise ValueError(
            f"HFGenerator supports decoder models with full attention in every layer; "
            f"{type(model).__name__} has {other or 'a sliding window'}. Use the vLLM generator for it."
        )


class HFGenerator:
    """Batched sampling over many paths of one causal LM, with KV-cache forking."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        stop_window_tokens: int | None = None,
    ) -> None:
        _check_supported(model)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.vocab_size = tokenizer_vocab_size(tokenizer, int(model.get_output_embeddings().weight.shape[0]))
        """|V|: the tokenizer's tokens; padded output rows beyond them are never sampled."""
        self.eos_ids = _eos_ids(model, tokenizer)
        self.stop_window_tokens = stop_window_tokens
        self._cache_arg = cache_argument(model)
        self.stats = GeneratorStats()
        self._paths: dict[int, _Path] = {}
        self._next_id = 0
        self._rng = torch.Generator(device=self.device)
        self._rng.manual_seed(0)

    # ----- path bookkeeping ---------------------------------------------------------------
    def seed(self, seed: int) -> None:
        self._rng.manual_seed(seed)

    def add_path(self, token_ids: Sequence[int]) -> int:
        if not token_ids:
            raise ValueError("a path needs at least one token")
        return self._new(_Path(ids=list(token_ids)))

    def _new(self, path: _Path) -> int:
        pid = self._next_id
        self._next_id += 1
        self._paths[pid] = path
        return pid

    def _get(self, pid: int) -> _Path:
        try:
            return self._paths[pid]
        except KeyError:
            raise KeyError(f"unknown or released path {pid}") from None

    def length(self, path: int) -> int:
        return len(self._get(path).ids)

    def token_ids(self, path: int) -> list[int]:
        return list(self._get(path).ids)

    def release(self, path: int) -> None:
        self._paths.pop(path, None)

    def extend(self, path: int, token_ids: Sequence[int]) -> None:
        self._get(path).ids.extend(token_ids)

    def update_weights(self, model: torch.nn.Module) -> None:
        """Nothing to copy: this generator samples with the learner's module itself. Cached KV
        lives only as long as paths, and the rollout releases them all when it ends; packed
        weights (``model.cpu_matmul: mkl_packed``) are dropped, to be packed again from the new
        weights."""
        if model is not self.model:
            raise ValueError("HFGenerator samples with the module it was built with; build a new one")
        if self._paths:
            raise RuntimeError(f"{len(self._paths)} paths still hold KV computed with the old weights")
        release_packs(self.model)

    def sleep(self) -> None:
        """Free the packed weights of ``model.cpu_matmul: mkl_packed`` for the learner phase (the
        weights themselves are the learner's)."""
        release_packs(self.model)

    def fork(self, path: int, at: int) -> int:
        parent = self._get(path)
        if not 1 <= at <= len(parent.ids):
            raise ValueError(f"fork position {at} outside path {path} of length {len(parent.ids)}")
        child = _Path(ids=parent.ids[:at])
        if parent.logits_at == at and parent.kv_len >= at:
            child.kv_len, child.logits_at, child.logits = at, at, parent.logits
        else:  # keep one token pending so the next call produces the logits at `at`
            child.kv_len = min(parent.kv_len, at - 1)
        child.chunks = _slice_chunks(parent.chunks, child.kv_len)
        return self._new(child)

    # ----- model passes ------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, paths: Sequence[int]) -> None:
        rows = [self._get(p) for p in paths]
        if not any(len(r.ids) > r.kv_len for r in rows):
            return
        cache, valid = self._gather(rows)
        _, valid, starts = self._prefill(rows, cache, valid)
        for b, row in enumerate(rows):
            self._store_new_kv(row, cache, valid, b, starts[b], len(row.ids))

    def generate(
        self,
        paths: Sequence[int],
        max_new_tokens: Sequence[int],
        sampling: SamplingParams,
        stop_strings: Sequence[str],
    ) -> list[Continuation]:
        requests_to_run(paths, max_new_tokens)
        outs: dict[int, Continuation] = {}

        def collect(done: list[tuple[int, Continuation]]) -> list[Request]:
            outs.update(done)
            return []

        requests = [Request(p, n) for p, n in zip(paths, max_new_tokens, strict=True)]
        self.stream(requests, sampling, stop_strings, collect)
        return [outs[p] for p in paths]

    @torch.no_grad()
    def stream(
        self,
        requests: Sequence[Request],
        sampling: SamplingParams,
        stop_strings: Sequence[str],
        on_done: OnDone,
        on_peek: OnDone | None = None,
    ) -> None:
        """Continuous batching: requests join the running batch at the next decode step.

        Joining rows are gathered into a batch cache of their own, which is concatenated with the
        running rows' (the narrower padded on the left); their pending tokens (a tool result, or
        nothing for a fork with stored logits) then run in the running rows' decode step, as one
        right-aligned block, when the padding costs little (:data:`JOIN_PADDING`), else in a
        forward of their own before the merge. Then all rows sample together. A row that stops
        leaves the batch at once, and so does a running path that ``on_done`` releases (it is never
        reported). Without joins this is exactly the batched decode of ``generate``.

        A row that reaches its ``peek_after`` stores its KV up to where its request started (so
        ``on_peek`` can fork it there without recomputing) and goes on in the same batch: peeks
        change no sampled token unless ``on_peek`` adds rows.
        """
        window = self.stop_window_tokens or max([len(s) for s in stop_strings] + [1]) + 2
        run = _Running()
        waiting = list(requests)
        while True:
            done = [(r.path, Continuation([], [], [], "length")) for r in waiting if r.max_new_tokens <= 0]
            joining = [r for r in waiting if r.max_new_tokens > 0]
            rows = [self._get(r.path) for r in joining]
            live = len(run.rows)
            if rows and len({*run.paths, *(r.path for r in joining)}) != live + len(rows):
                raise ValueError("a path may be requested only once while it runs")
            parts = []
            if rows and live and _one_forward(live, rows):
                cache, valid = self._gather(rows)
                run.join(joining, rows, cache, valid, [0] * len(rows))
                logits, run.valid, starts = self._prefill(run.rows, run.cache, run.valid, live)
                run.starts[live:] = starts[live:]
                parts.append(logits)
            else:
                if live:
                    logits, run.valid = self._decode_step(run.cache, run.valid, run.tokens, run.rows)
                    parts.append(logits)
                if rows:
                    cache, valid = self._gather(rows)
                    logits, valid, starts = self._prefill(rows, cache, valid)
                    parts.append(logits)
                    run.join(joining, rows, cache, valid, starts)
            peeked: list[tuple[int, Continuation]] = []
            if run.rows:
                tokens, logprobs, entropies = _sample(torch.cat(parts), sampling, self.vocab_size, self._rng)
                keep: list[int] = []
                for b, (path, row, out, budget) in enumerate(
                    zip(run.paths, run.rows, run.outs, run.budgets, strict=True)
                ):
                    tok = int(tokens[b])
                    out.token_ids.append(tok)
                    out.logprobs.append(float(logprobs[b]))
                    out.entropies.append(float(entropies[b]))
                    row.ids.append(tok)
                    if tok in self.eos_ids:
                        out.finish = "eos"
                    elif (hit := _find_stop(self.tokenizer, out.token_ids, stop_strings, window)) is not None:
                        out.finish, out.stop_string = "stop", hit
                    elif len(out.token_ids) >= budget:
                        out.finish = "length"
                    else:
                        keep.append(b)
                        if on_peek is not None and len(out.token_ids) == run.peeks[b]:
                            peeked.append((path, self._peek(run, b)))
                        continue
                    # row is done: its KV covers everything but the token just sampled
                    self._store_new_kv(row, run.cache, run.valid, b, run.starts[b], len(row.ids) - 1)
                    done.append((path, out))
                run = run.kept(keep, tokens) if keep else _Running()
            waiting = list(on_peek(peeked)) if peeked and on_peek is not None else []
            done = [(path, out) for path, out in done if path in self._paths]  # on_peek may release
            waiting += list(on_done(done)) if done else []
            if (done or peeked) and run.rows:  # a path released by a callback stops here, unreported
                live_rows = [b for b, path in enumerate(run.paths) if path in self._paths]
                if len(live_rows) < len(run.rows):
                    assert run.tokens is not None
                    run = run.kept(live_rows, run.tokens) if live_rows else _Running()
            if not run.rows and not waiting:
                return

    def _peek(self, run: _Running, b: int) -> Continuation:
        """Row ``b``'s continuation so far, after storing its KV up to where its request started."""
        row, out = run.rows[b], run.outs[b]
        assert run.cache is not None and run.valid is not None
        started = len(row.ids) - len(out.token_ids)
        run.starts[b] = self._store_new_kv(row, run.cache, run.valid, b, run.starts[b], started)
        return Continuation(list(out.token_ids), list(out.logprobs), list(out.entropies), "length")

    def _gather(self, rows: list[_Path]) -> tuple[BatchCache, torch.Tensor]:
        """Batch cache with each row's cached prefix right-aligned, and its validity mask ``[B, L]``."""
        width = max(r.kv_len for r in rows)
        valid = torch.zeros(len(rows), width, dtype=torch.bool, device=self.device)
        if width == 0:
            return BatchCache(), valid
        layers = []
        template = next(r.chunks[0] for r in rows if r.chunks)
        for layer, (k0, v0) in enumerate(template):
            keys = k0.new_empty((len(rows), k0.shape[0], spare_columns(width), k0.shape[2]))
            values = v0.new_empty((len(rows), v0.shape[0], spare_columns(width), v0.shape[2]))
            keys[:, :, :width].zero_()
            values[:, :, :width].zero_()
            for b, row in enumerate(rows):
                pos = width - row.kv_len
                for chunk in row.chunks:
                    k, v = chunk[layer]
                    keys[b, :, pos : pos + k.shape[1]] = k
                    values[b, :, pos : pos + v.shape[1]] = v
                    pos += k.shape[1]
            layers.append((keys, values))
        for b, row in enumerate(rows):
            valid[b, width - row.kv_len :] = True
        return BatchCache(layers, width), valid

    def _prefill(
        self, rows: list[_Path], cache: BatchCache, valid: torch.Tensor, live: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Run every row's pending tokens through the model as one right-aligned block.

        The first ``live`` rows are running rows whose KV is in ``cache``: their pending token is
        the one they sampled last (a decode step, padded to the block's width). Returns the
        next-token logits ``[B, V]``, the validity mask extended by the block, and for each row
        the batch column where its pending tokens start.
        """
        pending = [r.ids[-1:] for r in rows[:live]] + [r.ids[r.kv_len :] for r in rows[live:]]
        width = max(len(p) for p in pending)
        starts = [valid.shape[1] + width - len(p) for p in pending]
        if width == 0:
            return torch.stack([self._stored_logits(r) for r in rows]), valid, starts
        batch = len(rows)
        input_ids = torch.zeros(batch, width, dtype=torch.long, device=self.device)
        positions = torch.zeros(batch, width, dtype=torch.long, device=self.device)
        block = torch.zeros(batch, width, dtype=torch.bool, device=self.device)
        for b, (row, toks) in enumerate(zip(rows, pending, strict=True)):
            if toks:
                input_ids[b, width - len(toks) :] = torch.tensor(toks, device=self.device)
                positions[b, width - len(toks) :] = torch.arange(
                    len(row.ids) - len(toks), len(row.ids), device=self.device
                )
                block[b, width - len(toks) :] = True
        keys_valid = torch.cat([valid, block], dim=1)
        mask = self._mask(keys_valid, width)
        logits = self._forward(input_ids, positions, mask, cache)
        self.stats.decode_tokens += live
        self.stats.prefill_tokens += sum(len(p) for p in pending[live:])
        result = []
        for b, row in enumerate(rows):
            if b < live:
                result.append(logits[b])
            elif pending[b]:
                row.logits_at, row.logits = len(row.ids), logits[b].clone()
                result.append(logits[b])
            else:
                result.append(self._stored_logits(row))
        return torch.stack(result), keys_valid, starts

    def _decode_step(
        self, cache: BatchCache, valid: torch.Tensor, tokens: torch.Tensor, rows: list[_Path]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        valid = torch.cat([valid, torch.ones(len(rows), 1, dtype=torch.bool, device=self.device)], dim=1)
        positions = torch.tensor([[len(r.ids) - 1] for r in rows], device=self.device)
        logits = self._forward(tokens.view(-1, 1), positions, self._mask(valid, 1), cache)
        self.stats.decode_tokens += len(rows)
        return logits, valid

    def _forward(
        self, input_ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: BatchCache
    ) -> torch.Tensor:
        """One model pass appending to ``cache``; next-token logits ``[B, V]`` in >= float32.
        Grouped-query attention reads the cached heads in place (:mod:`arpo.models.grouped_attention`)."""
        with grouped_query_attention(self.model):
            out = self.model(
                input_ids=input_ids,
                position_ids=positions,
                attention_mask=mask,
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_arg: cache},
            )
        logits = out.logits[:, -1, :]
        return logits.to(torch.promote_types(logits.dtype, torch.float32))

    def _mask(self, keys_valid: torch.Tensor, q_len: int) -> torch.Tensor:
        """Additive mask ``[B, 1, q, kv]``: the last ``q_len`` key columns are the queries."""
        kv_len = keys_valid.shape[1]
        q_cols = torch.arange(kv_len - q_len, kv_len, device=self.device)
        k_cols = torch.arange(kv_len, device=self.device)
        causal = k_cols[None, :] <= q_cols[:, None]  # [q, kv]
        allowed = causal[None] & keys_valid[:, None, :]
        allowed |= (k_cols[None, :] == q_cols[:, None])[None]  # padding queries see themselves
        mask = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        return mask[:, None]

    def _stored_logits(self, row: _Path) -> torch.Tensor:
        if row.logits is None or row.logits_at != len(row.ids) or row.kv_len != len(row.ids):
            raise RuntimeError("path has no pending tokens and no stored next-token logits")
        return row.logits

    def _store_new_kv(
        self, row: _Path, cache: BatchCache, valid: torch.Tensor, b: int, start: int, upto: int
    ) -> int:
        """Copy row ``b``'s new KV columns out of the batch as a chunk: the first ``upto - kv_len``
        valid columns from ``start`` (a row that joined a running batch's decode step has padding
        between its decode steps' columns); returns the column after the last one copied."""
        n = upto - row.kv_len
        if n <= 0:
            return start
        cols = valid[b, start:].nonzero().squeeze(-1)[:n] + start
        if len(cols) != n:
            raise RuntimeError(
                f"row {b} has {len(cols)} computed positions from column {start}, expected {n}"
            )
        if int(cols[-1]) - start == n - 1:  # contiguous: a view, then one copy
            chunk = tuple(
                (layer.keys[b, :, start : start + n].clone(), layer.values[b, :, start : start + n].clone())
                for layer in cache.layers
            )
        else:
            chunk = tuple((layer.keys[b][:, cols], layer.values[b][:, cols]) for layer in cache.layers)
        row.chunks = [*row.chunks, chunk]
        row.kv_len = upto
        return int(cols[-1]) + 1


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update(value if isinstance(value, list | tuple) else [value])
    if not ids:
        raise ValueError("neither the model's generation config nor the tokenizer defines an EOS token")
    return ids


def _sample(
    logits: torch.Tensor, sampling: SamplingParams, vocab_size: int, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample one token per row; returns (tokens, log-probs, entropies) under the policy
    softmax(logits[:|V|]/T) of :mod:`arpo.core.logits` (T = 1 for the log-probs when greedy)."""
    scaled = PolicyView(sampling.temperature or 1.0, vocab_size)(logits)
    log_probs = torch.log_softmax(scaled, dim=-1)
    entropies = entropy_from_logits(scaled)
    if sampling.temperature == 0:
        tokens = scaled.argmax(dim=-1)
    else:
        probs = log_probs.exp()
        if sampling.top_p < 1:
            probs = _top_p_filter(probs, sampling.top_p)
        tokens = _draw(probs, rng)
    return tokens, log_probs.gather(-1, tokens[:, None]).squeeze(-1), entropies


def _draw(probs: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """One token per row of ``probs`` (``[B, V]``, non-negative, not necessarily normalised) by
    inversion: with F the row's cumulative sums and u ~ U[0, 1) one draw per row, the token is the
    first i with F_i > u·F_V.

    A token of zero probability is never drawn (F does not rise at it, and u·F_V is kept below
    F_V). F is summed in float32, so each token is drawn with its probability to within about one
    float32 rounding of F (≈ 6e-8 of the row's mass). ``torch.multinomial`` draws one exponential
    per vocabulary entry instead, 8.9 ms of a SmolLM2 decode step at batch 8; with this draw the step
    took 0.74-0.78x as long (docs/performance.md, *One uniform draw per token*). A row whose mass is not a positive finite
    number (the model gave non-finite logits) is an error, as it is for ``torch.multinomial``.
    """
    cdf = probs.cumsum(dim=-1)
    total = cdf[:, -1:]
    bad = ~((total > 0) & total.isfinite()).squeeze(-1)
    if bool(bad.any()):
        raise ValueError(
            f"cannot sample: the probabilities of rows {bad.nonzero()[:, 0].tolist()} sum to zero or a "
            "non-finite number (non-finite logits from the model?)"
        )
    u = torch.rand(total.shape, generator=rng, device=probs.device, dtype=probs.dtype) * total
    u = torch.minimum(u, total.nextafter(torch.zeros_like(total)))
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)


def _top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero out tokens outside the smallest set whose probability mass reaches ``top_p``."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs[mass_before >= top_p] = 0.0
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


def _find_stop(
    tokenizer: PreTrainedTokenizerBase, generated: list[int], stop_strings: Sequence[str], window: int
) -> str | None:
    """First stop string found in the text of the last ``window`` generated tokens."""
    if not stop_strings:
        return None
    text = tokenizer.decode(generated[-window:], skip_special_tokens=False)
    for stop in stop_strings:
        if stop in text:
            return stop
    return None
