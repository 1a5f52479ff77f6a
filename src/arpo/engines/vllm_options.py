"""Options of the vLLM rollout engine (``rollout.engine: vllm``); validated without importing vLLM.

``dtype: auto`` (:func:`resolve_dtype`) takes bfloat16 only where the hardware computes it natively.
On a real 2-core AMD EPYC with AVX2 only (2026-12-07) the SmolLM2 recipe's first ARPO step (16
problems, 8 leaves each, from a 3-step SFT model that fills its 256-token budget) had not finished
its rollout after 7 min with vLLM in bfloat16; in float32 the rollout took 99 s. On the Intel
development machine (AMX) bfloat16 is the fast one (docs/recipes/smollm2_gsm8k.md).

See :mod:`arpo.engines.vllm` for what the engine does with them and ``docs/vllm.md`` for install
and measured speeds.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from arpo.models.native_bf16 import cpu_has_native_bf16

logger = logging.getLogger(__name__)

SLOW_BF16 = (
    "vllm.dtype bfloat16 on a CPU without native bf16 (no AMX or AVX512-BF16): vLLM is several times slower "
    "there than in float32 (measured on an AVX2-only AMD EPYC: a rollout of the SmolLM2 recipe unfinished after 7 min, 99 s in "
    "float32); set vllm.dtype to auto or float32"
)

EngineName = Literal["hf", "vllm"]


class VLLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = Field(
        None,
        description="Weights dtype in vLLM; null = the policy's dtype; auto = bfloat16 where the hardware "
        "computes it natively (a CPU with AMX or AVX512-BF16, a CUDA GPU with bf16), else float32 on a CPU and "
        "float16 on a GPU (vLLM's bf16 on an AVX2-only CPU is several times slower than float32: "
        "arpo/engines/vllm_options.py).",
    )
    top_logprobs: int = Field(
        20,
        ge=1,
        le=1000,
        description="k of the top-k log-probs per token that the entropy estimate uses "
        "(see arpo.core.entropy: midpoint of the top-k bounds).",
    )
    block_size: int | None = Field(
        None,
        ge=1,
        description="KV-cache block size in tokens; prefix caching shares whole blocks, so smaller "
        "blocks share more of a branch's prefix (null = vLLM's default: 128 on CPU, 16 on GPU).",
    )
    max_model_len: int | None = Field(
        None, ge=1, description="Longest prompt + response; null = the model's maximum."
    )
    kv_cache_gib: float | None = Field(
        None,
        gt=0,
        description="KV-cache size in GiB; null = 2 GiB on CPU, gpu_memory_utilization on GPU.",
    )
    gpu_memory_utilization: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of GPU memory vLLM may take (the rest is the learner's when colocated).",
    )
    enforce_eager: bool = Field(
        True,
        description="Skip compilation and CUDA graphs: start-up 17 s instead of 75 s on this CPU (CPU_NOTES; 7.6–13 s measured here with it); "
        "set false on GPUs for faster decoding.",
    )
    sleep_level: Literal[1, 2] | None = Field(
        None,
        description="Put the engine to sleep between rollouts so a colocated learner gets the GPU "
        "memory (1: weights offloaded to CPU RAM, 2: discarded; the learner's weights are loaded "
        "on wake-up either way). GPU only; null = stay awake.",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Further keyword arguments for vllm.LLM (e.g. tensor_parallel_size).",
    )

    def for_processes(self, processes: int) -> VLLMOptions:
        """These options for one of ``processes`` training processes, each with its own engine:
        vLLM's ``external_launcher`` executor, which joins the ``torch.distributed`` group the
        processes already form instead of starting workers of its own. Each engine decodes its own
        process's prompts (a different number of requests and rounds per process); vLLM runs no
        collective for that with one device per engine, so tensor and pipeline parallelism — whose
        groups would have to decode the same requests in step — are refused."""
        args = dict(self.engine_args)
        for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
            if int(args.get(name, 1)) != 1:
                raise ValueError(
                    f"rollout.vllm.engine_args.{name}={args[name]} with {processes} training processes: each process "
                    f"runs its own vLLM engine on its own prompts, so {name} must be 1 (launch one process to "
                    "spread one engine over several GPUs)"
                )
        backend = args.setdefault("distributed_executor_backend", "external_launcher")
        if backend != "external_launcher":
            raise ValueError(
                f"rollout.vllm.engine_args.distributed_executor_backend={backend!r} with {processes} training "
                "processes: each process's engine joins the training processes' group, which needs "
                "'external_launcher' (or leave it unset)"
            )
        return self.model_copy(update={"engine_args": args})


def resolve_dtype(value: str | None, policy_dtype: str, *, on_cpu: bool) -> str:
    """vLLM's ``dtype`` for ``vllm.dtype`` = ``value`` (module docstring); ``policy_dtype`` for None."""
    if value is None:
        return policy_dtype
    native = cpu_has_native_bf16() if on_cpu else torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if value == "auto":
        resolved = "bfloat16" if native else "float32" if on_cpu else "float16"
        logger.info("vllm.dtype auto: %s", resolved)
        return resolved
    if value == "bfloat16" and on_cpu and not native:
        logger.warning(SLOW_BF16)
    return value
