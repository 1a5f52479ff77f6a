"""ARPO with native tool calling (``tool_format: chat_template``) on the built-in environment: a
tiny model whose tokenizer has a Hermes/Qwen-style tool-calling template is fine-tuned on the
demonstrations rendered by that template, then trained with ARPO; every sampled trajectory is the
template's rendering of its own conversation."""

from __future__ import annotations

import pytest
import torch

from arpo.core.tree import FinishReason
from arpo.engines.hf import HFGenerator
from arpo.models.loading import PolicyConfig, load_policy
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tasks.toolworld import load_toolworld_tasks, read_config, tool_specs
from arpo.tools.registry import build_toolbox
from arpo.train.checkpoint import latest_checkpoint
from arpo.train.jobs import RLJobConfig, SFTJobConfig, run_rl, run_sft
from arpo.train.metrics_log import read_metrics
from tests.tasks.chat_template_helpers import hermes_tokenizer

ROLLOUT = {
    "tool_format": "chat_template",
    "tool_parser": "hermes",
    "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2, "entropy_window": 4},
    "max_response_tokens": 120,
}


@pytest.fixture(scope="module")
def sft_run(toolworld, tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    tokenizer_dir = root / "tokenizer"
    hermes_tokenizer(toolworld.tokenizer, tokenizer_dir)
    config = SFTJobConfig.model_validate(
        {
            "run_dir": str(root / "sft"),
            "model": {"name": "tiny", "tokenizer": str(tokenizer_dir)},
            "data": {"toolworld_dir": str(toolworld.root)},
            "tool_format": "chat_template",
            "train": {
                "steps": 60,
                "batch_size": 16,
                "optim": {"lr": 3e-3},
                "logging": {"tensorboard": False},
            },
        }
    )
    run_sft(config)
    return root


def test_arpo_trains_with_native_tool_calls(toolworld, sft_run):
    config = RLJobConfig.model_validate(
        {
            "run_dir": str(sft_run / "rl"),
            "model": {"name": str(sft_run / "sft")},
            "data": {"toolworld_dir": str(toolworld.root)},
            "train": {
                "steps": 2,
                "prompts_per_step": 4,
                "save_every": 2,
                "optim": {"lr": 1e-3},
                "logging": {"tensorboard": False},
                "rollout": ROLLOUT,
            },
        }
    )
    run_rl(config)
    metrics = read_metrics(sft_run / "rl")
    assert all(m["rollout/leaves_per_prompt_min"] == m["rollout/leaves_per_prompt_max"] == 4 for m in metrics)
    assert sum(m["rollout/tool_calls_per_trajectory"] for m in metrics) > 0, (
        "the model calls the tools natively"
    )
    before = load_policy(PolicyConfig(name=str(latest_checkpoint(sft_run / "sft"))))[0].state_dict()
    after = load_policy(PolicyConfig(name=str(latest_checkpoint(sft_run / "rl"))))[0].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_every_trajectory_is_the_templates_rendering_of_its_conversation(toolworld, sft_run):
    model, tokenizer = load_policy(PolicyConfig(name=str(latest_checkpoint(sft_run / "sft"))))
    env = read_config(toolworld.root)
    tasks = load_toolworld_tasks(toolworld.train)[:12]
    eos = tokenizer.eos_token
    with build_toolbox(tool_specs(env, toolworld.corpus, cache_dir=toolworld.root / "index")) as tools:
        config = RolloutConfig.model_validate(ROLLOUT)
        rollout = ArpoRollout(HFGenerator(model.eval(), tokenizer), tokenizer, tools, config)
        trees = rollout.run([rollout.prompt_ids(t.chat()) for t in tasks], seed=0).trees
        checked = calls = same_ids = 0
        for task, tree in zip(tasks, trees, strict=True):
            for trajectory in tree.trajectories():
                if trajectory.leaf.tool_calls:
                    continue  # results cut by the budget: no message of the template ends there
                ended = trajectory.finish_reason is FinishReason.EOS
                messages, turn = task.chat(), ""
                for node in trajectory.nodes[1:]:
                    if not node.tool_calls:
                        ids = node.token_ids[:-1] if node is not trajectory.leaf or ended else node.token_ids
                        turn = tokenizer.decode(ids, skip_special_tokens=False)
                        messages.append({"role": "assistant", "content": turn})
                        continue
                    if any(call.status == "limit" for call in node.tool_calls):
                        break  # a refusal over the call limit: the rollout's own message
                    # the results again: errors as the rollout reads the turn, the tools are deterministic
                    for call, record in zip(rollout.read_calls(turn), node.tool_calls, strict=True):
                        result = tools.run(call.tag, call.text).text if record.executed else call.error
                        messages.append({"role": "tool", "name": call.tag, "content": result})
                        calls += 1
                else:  # a turn cut by the budget lacks the EOS the template closes it with
                    rendered = rollout.chat.render(messages, False)
                    expected = rendered if ended else rendered.removesuffix(eos)
                    assert tokenizer.decode(trajectory.token_ids, skip_special_tokens=False) == expected
                    checked += 1
                    # the ids too, where the model sampled each turn's canonical tokenisation
                    model_nodes = [n for n in trajectory.nodes[1:] if not n.tool_calls]
                    if all(_canonical(tokenizer, n.token_ids) for n in model_nodes):
                        assert trajectory.token_ids == tokenizer.encode(expected, add_special_tokens=False)
                        same_ids += 1
    assert checked >= 4 and calls > 0 and same_ids >= checked // 2


def _canonical(tokenizer, ids):
    return tokenizer.encode(
        tokenizer.decode(ids, skip_special_tokens=False), add_special_tokens=False
    ) == list(ids)
