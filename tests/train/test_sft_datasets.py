"""`arpo sft` on a user's demonstration file (OpenAI messages) with a tiny model, through the job layer."""

from __future__ import annotations

import json
import math

import pytest

from arpo.config import ConfigError, load_config
from arpo.tasks.demonstrations import conversation_example
from arpo.train.checkpoint import latest_checkpoint
from arpo.train.jobs import RLJobConfig, SFTJobConfig, prepare_environment, run_sft, sft_demonstrations
from tests.demonstration_rows import PROTOCOL, messages_row, protocol_tokenizer

HELLO = {
    "messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello there!"}]
}


def test_sft_on_a_messages_file_packs_its_examples(tmp_path, capsys):
    tokenizer = protocol_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps(messages_row()) + "\n" + json.dumps(HELLO) + "\n")
    config = load_config(
        SFTJobConfig,
        None,
        [
            f"run_dir={tmp_path / 'run'}",
            f"model.tokenizer={tmp_path / 'tokenizer'}",
            f"data.demonstrations.path={data}",
            "data.demonstrations.tool_tags=[calc, lookup]",
            "data.system_prompt=Be brief.",
            "train.steps=2",
            "train.batch_size=2",
            "train.micro_batch_size=2",
            "train.packing=tree",
            "train.save_every=2",
            "train.logging.tensorboard=false",
        ],
    )
    demonstrations, protocol = sft_demonstrations(
        config.data, prepare_environment(config.data, tmp_path, None)
    )
    assert [c.chat()[0] for c in demonstrations] == [{"role": "system", "content": "Be brief."}] * 2
    lengths = [len(conversation_example(c, tokenizer, protocol)[0]) for c in demonstrations]
    assert protocol.tool_tags == PROTOCOL.tool_tags and lengths[0] != lengths[1]

    history = run_sft(config)
    assert [m["step"] for m in history] == [1, 2]
    assert all(math.isfinite(m["loss/sft"]) for m in history)
    assert all(m["tokens_forwarded"] == sum(lengths) for m in history)  # both in one packed row, no padding
    assert latest_checkpoint(tmp_path / "run").name == "step-00000002"
    assert "2 demonstrations" in capsys.readouterr().err


def test_demonstrations_are_for_sft_only_and_a_source_of_their_own():
    with pytest.raises(ConfigError, match="data.demonstrations is for arpo sft"):
        load_config(RLJobConfig, None, ["data.demonstrations.path=x.jsonl"])
    with pytest.raises(ConfigError, match="at most one of"):
        load_config(SFTJobConfig, None, ["data.demonstrations.path=x.jsonl", "data.toolworld_dir=env"])
    with pytest.raises(ConfigError, match="data.demonstrations.layout"):
        load_config(
            SFTJobConfig, None, ["data.demonstrations.path=x.jsonl", "data.demonstrations.layout=csv"]
        )
    with pytest.raises(ConfigError, match="result_template"):
        load_config(
            SFTJobConfig, None, ["data.demonstrations.path=x.jsonl", "data.demonstrations.result_template=x"]
        )
