"""The policy model and its tokenizer, from a config: ``tiny`` (built here) or a Hugging Face model.

``name: tiny`` builds a randomly initialised Llama (:mod:`arpo.models.tiny`, seeded, nothing
downloaded) sized by ``tiny``, for the tokenizer given by ``tokenizer`` (a folder in Hugging Face
format, e.g. the built-in environment's trained tokenizer) or, by default, the character
tokenizer. A built-in alias (:data:`arpo.models.builtin.BUILTIN_MODELS`, e.g.
``smollm2-135m-instruct``) becomes its cached conversion, made on first use; the model and the
tokenizer resolve names through the same function, so every consumer loads the same folder. Any
other name goes to ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``: a local folder
(what our checkpoints are), or a hub name when the machine is online.

``lora`` wraps the model with a PEFT LoRA adapter (Hu et al. 2021, arXiv 2106.09685); only the
adapter trains. Checkpoints of a LoRA run hold the merged model (loadable anywhere) and the
adapter (``adapter/``), from which :func:`load_policy` resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from arpo.models.builtin import BUILTIN_MODELS, resolve_model_name
from arpo.models.cpu_matmul import CpuMatmul, apply_cpu_matmul
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama

DTypeName = Literal["float32", "bfloat16", "float16", "float64"]
ADAPTER_DIR = "adapter"


class TinyModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(64, ge=8, description="Hidden size of the tiny Llama.")
    num_layers: int = Field(2, ge=1, description="Decoder layers.")
    num_heads: int = Field(4, ge=1, description="Attention heads.")
    num_kv_heads: int = Field(2, ge=1, description="Key/value heads (grouped-query attention).")


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling α (the update is scaled by α/r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], description="Module names to adapt."
    )


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "tiny",
        description=f"'tiny' (built locally), a built-in alias ({', '.join(BUILTIN_MODELS)}: converted once "
        "from a GGUF file, see docs/models.md) or a Hugging Face model folder/name.",
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer folder; default: the model's (tiny: characters)."
    )
    dtype: DTypeName = Field("float32", description="Weights dtype.")
    seed: int = Field(0, description="Initialisation seed of the tiny model.")
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig, description="Size of the tiny model.")
    lora: LoraConfig | None = Field(
        None, description="Train a LoRA adapter instead of all weights (needs peft)."
    )
    cpu_matmul: CpuMatmul = Field(
        "auto",
        description="Library for the float32 linear layers on a CPU: 'torch' (PyTorch's choice, MKL on x86), "
        "'onednn' (oneDNN, its decode steps' large weights laid out once per weight update: one extra copy "
        "of them while decoding), 'mkl_packed' (torch, but forwards without autograd of 3-64 rows, i.e. decode steps, multiply by "
        "weights packed once by MKL: faster, up to two extra copies of the weights while decoding), or 'auto': "
        "oneDNN where MKL would run its generic code (a non-Intel x86 CPU, or MKL_ENABLE_INSTRUCTIONS below AVX2), "
        "mkl_packed on other x86 CPUs, else torch. Results agree to float32 rounding (arpo/models/cpu_matmul.py).",
    )


def load_tokenizer(config: PolicyConfig) -> PreTrainedTokenizerBase:
    name = config.tokenizer or (None if config.name == "tiny" else config.name)
    if name is None:
        return build_char_tokenizer()
    source = resolve_model_name(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ValueError(f"cannot load tokenizer {source!r}: {exc}") from None
    if tokenizer.chat_template is None:
        raise ValueError(f"the tokenizer {source!r} has no chat template; prompts are rendered with it")
    return tokenizer


def _base_model(
    config: PolicyConfig, tokenizer: PreTrainedTokenizerBase, source: str | Path
) -> PreTrainedModel:
    dtype = getattr(torch, config.dtype)
    if source == "tiny":
        t = config.tiny
        return build_tiny_llama(
            tokenizer,
            hidden_size=t.hidden_size,
            num_layers=t.num_layers,
            num_heads=t.num_heads,
            num_kv_heads=t.num_kv_heads,
            seed=config.seed,
            dtype=dtype,
        )
    try:
        return AutoModelForCausalLM.from_pretrained(resolve_model_name(str(source)), dtype=dtype)
    except OSError as exc:
        raise ValueError(
            f"cannot load model {str(source)!r}: not 'tiny', not a built-in alias, not a local Hugging Face "
            f"model folder, and not reachable on the hub ({exc})"
        ) from None


def load_policy(
    config: PolicyConfig, checkpoint: Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer for ``config``, or resumed from a checkpoint folder of a run; the model's
    linear layers follow ``config.cpu_matmul``."""
    model, tokenizer = _load(config, checkpoint)
    apply_cpu_matmul(model, config.cpu_matmul)
    return model, tokenizer


def _load(config: PolicyConfig, checkpoint: Path | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if checkpoint is not None:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        if (Path(checkpoint) / ADAPTER_DIR).is_dir():
            from peft import PeftModel

            base = _base_model(config, tokenizer, config.name)
            model = PeftModel.from_pretrained(base, Path(checkpoint) / ADAPTER_DIR, is_trainable=True)
        else:
            model = _base_model(config, tokenizer, checkpoint)
        return model, tokenizer
    tokenizer = load_tokenizer(config)
    model = _base_model(config, tokenizer, config.name)
    if config.lora is not None:
        try:
            from peft import LoraConfig as PeftLoraConfig
            from peft import get_peft_model
        except ImportError:
            raise ImportError("model.lora needs peft: pip install 'arpo[lora]'") from None
        lora = config.lora
        model = get_peft_model(
            model,
            PeftLoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules
            ),
        )
    return model, tokenizer
