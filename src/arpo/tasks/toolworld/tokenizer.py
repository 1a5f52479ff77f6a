"""A small BPE tokenizer trained on the environment's text, saved as a Hugging Face fast tokenizer.

Made for tiny models trained from scratch (docs CPU_NOTES.md: they learn formats fast, copying
slowly), so copying is made as easy as tokens allow:

- **pre-tokenisation** splits text into lower-case words with their leading space (`` is``),
  capitalised words *without* it (``Vemo``), and single characters for everything else; so every
  digit is its own token, and a name is the same token sequence wherever it appears (question,
  query, search result, answer), which makes copying it an identity copy;
- byte-level BPE over those pieces (all 256 bytes in the alphabet: any text encodes, and
  ``decode(encode(text)) == text`` exactly), ``vocab_size`` tokens in all;
- the protocol tags (``<think>``, ``</think>``, ``<answer>``, ``</answer>``, ``<result>``,
  ``</result>`` and the tool tags) are single *added, non-special* tokens, so
  ``decode(ids, skip_special_tokens=True)`` keeps them; the chat role markers (``<|system|>``,
  ``<|user|>``, ``<|assistant|>``), ``<|eos|>`` and ``<|pad|>`` are special tokens;
- the chat template writes ``<|role|>content`` per message (``<|eos|>`` after an assistant turn)
  and opens the assistant turn with ``<|assistant|>``; nothing else, no newlines.

Names are replaced by fresh random names in the training text, so merges follow the syllable
statistics of names in general, not the frequency of the train split's names: a test name is cut
into pieces the same way a train name is.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from arpo.core.answer_format import FormatSpec
from arpo.tasks.toolworld.names import invent_name

PAD, EOS = "<|pad|>", "<|eos|>"
ROLE_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")
PIECES = Regex(r" ?[a-z]+|[A-Z][a-z]*|[^A-Za-z]")
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def protocol_tags(spec: FormatSpec | None = None) -> list[str]:
    """Opening and closing tags of every protocol element of ``spec``."""
    spec = spec or FormatSpec()
    names = [spec.think_tag, spec.answer_tag, spec.result_tag, *spec.tool_tags]
    return [tag for name in names for tag in (f"<{name}>", f"</{name}>")]


def scramble_names(text: str, names: set[str], rng: random.Random, syllables: tuple[int, int]) -> str:
    """``text`` with every word in ``names`` replaced by a fresh random name."""
    return re.sub(
        r"\b[A-Z][a-z]+\b",
        lambda match: invent_name(rng, syllables) if match.group(0) in names else match.group(0),
        text,
    )


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, spec: FormatSpec | None = None
) -> PreTrainedTokenizerFast:
    """Train the tokenizer of the module docstring on ``texts``; ``len(tokenizer) == vocab_size``
    unless the texts run out of merges first."""
    tags = protocol_tags(spec)
    special = [PAD, EOS, *ROLE_MARKERS]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(PIECES, behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*special, *tags],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    reserved = re.compile("|".join(re.escape(token) for token in [*special, *tags]))
    core.train_from_iterator((piece for text in texts for piece in reserved.split(text) if piece), trainer)
    data = json.loads(core.to_str())
    for added in data["added_tokens"]:  # protocol tags: added tokens that decoding keeps
        added["special"] = added["content"] in special
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)),
        pad_token=PAD,
        eos_token=EOS,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved in ``folder`` (``AutoTokenizer.from_pretrained`` does the same)."""
    if not (Path(folder) / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder}: no tokenizer.json; build the environment first (build_toolworld)")
    return AutoTokenizer.from_pretrained(str(folder))
