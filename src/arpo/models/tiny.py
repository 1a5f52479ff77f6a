"""A tiny character-level tokenizer and a tiny Llama built from a config: no download, instant.

Used by the tests and the rollout example to exercise every mechanism (batching, KV forking,
entropies, the tool loop, branching) on CPU in seconds. The tokenizer is a standard Hugging Face
fast tokenizer: one token per character of a small alphabet, the protocol tags (``<think>``,
``</answer>``, ``<calc>``...) as single added tokens, role markers for a ChatML-like chat template,
and ``<|eos|>``. With a vocabulary of ~70 tokens a randomly initialised model emits tags often
enough that tool calls, answers and budget stops all occur in a few dozen tokens.
"""

from __future__ import annotations

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 +-*/().,?=\n"
PROTOCOL_TAGS = ("<think>", "</think>", "<answer>", "</answer>", "<result>", "</result>")
ROLE_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL = {"pad": "<|pad|>", "eos": "<|eos|>", "unk": "<|unk|>"}

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_char_tokenizer(
    tool_tags: tuple[str, ...] = ("calc",), alphabet: str = ALPHABET
) -> PreTrainedTokenizerFast:
    """Character tokenizer whose protocol and tool tags are single tokens; one token per character
    of ``alphabet`` (any other character is ``<|unk|>``)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL.values())}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL["unk"]))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=SPECIAL["pad"],
        eos_token=SPECIAL["eos"],
        unk_token=SPECIAL["unk"],
        clean_up_tokenization_spaces=False,
    )
    tags = [*PROTOCOL_TAGS, *(t for tag in tool_tags for t in (f"<{tag}>", f"</{tag}>"))]
    tokenizer.add_tokens([*tags, *ROLE_MARKERS])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_llama(
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> LlamaForCausalLM:
    """Randomly initialised Llama sized for ``tokenizer`` (seeded, so the weights are reproducible)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(dtype)
    return model.eval()
