"""Load a policy model and its tokenizer by name: ``tiny`` (built here) or a Hugging Face model.

``tiny`` builds the character tokenizer and a randomly initialised tiny Llama of
:mod:`arpo.models.tiny` (seeded, nothing downloaded). Anything else is passed to
``AutoTokenizer`` / ``AutoModelForCausalLM.from_pretrained``: a local folder in Hugging Face format
(what our checkpoints are), or a hub name when the machine is online.
"""

from __future__ import annotations

from typing import Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from arpo.models.tiny import build_char_tokenizer, build_tiny_llama

DTypeName = Literal["float32", "bfloat16", "float16", "float64"]


def load_policy(
    name_or_path: str, *, dtype: DTypeName = "float32", seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    torch_dtype = getattr(torch, dtype)
    if name_or_path == "tiny":
        tokenizer = build_char_tokenizer()
        return build_tiny_llama(tokenizer, seed=seed, dtype=torch_dtype), tokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype)
    except OSError as exc:
        raise ValueError(
            f"cannot load model {name_or_path!r}: not 'tiny', not a local Hugging Face model folder, "
            f"and not reachable on the hub ({exc})"
        ) from None
    if tokenizer.chat_template is None:
        raise ValueError(
            f"the tokenizer of {name_or_path!r} has no chat template; prompts are rendered with it"
        )
    return model.eval(), tokenizer
