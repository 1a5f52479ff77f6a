"""ARPO trees sampled inside TRL's GRPOTrainer (``rollout_func=ArpoRolloutFunc(...)``), on CPU with a
tiny model and the built-in environment's tools: a step runs, parameters change, every prompt's
group is one tree with M leaves, and TRL's fields are the trees' trajectories."""

from __future__ import annotations

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from arpo.core.tree import Origin, Role  # noqa: E402
from arpo.integrations.trl import ArpoRolloutFunc  # noqa: E402
from arpo.models.loading import PolicyConfig, load_policy  # noqa: E402
from arpo.tasks.toolworld import load_toolworld_tasks, read_config, tool_specs  # noqa: E402
from arpo.tools.registry import build_toolbox  # noqa: E402

M = 4


def letters(completions, **kwargs):
    """A dense reward (share of the letter e), so a random policy's groups have variance."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [t.count("e") / max(1, len(t)) for t in texts]


def test_grpo_trainer_trains_on_arpo_trees(toolworld, tmp_path, monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model, tokenizer = load_policy(PolicyConfig(name="tiny", tokenizer=str(toolworld.tokenizer), seed=0))
    tasks = load_toolworld_tasks(toolworld.train)[:4]
    dataset = datasets.Dataset.from_list([{"prompt": task.chat()} for task in tasks])
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=M,
        gradient_accumulation_steps=1,
        num_generations=M,
        max_completion_length=48,
        max_steps=2,
        learning_rate=1e-2,
        beta=0.0,
        temperature=1.0,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    env = read_config(toolworld.root)
    with build_toolbox(tool_specs(env, toolworld.corpus, cache_dir=toolworld.root / "index")) as tools:
        rollout_func = ArpoRolloutFunc(
            tools, {"branching": {"initial_rollouts": 2, "entropy_window": 4}}, seed=0
        )
        calls = []

        def recording(prompts, trainer):
            out = rollout_func(prompts, trainer)
            calls.append((prompts, out, list(rollout_func.last_trees)))
            return out

        before = {k: v.clone() for k, v in model.state_dict().items()}
        trainer = trl.GRPOTrainer(
            model=model,
            reward_funcs=letters,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            rollout_func=recording,
        )
        trainer.train()
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the GRPO step changed the parameters"
    assert len(calls) == 2
    for prompts, out, trees in calls:
        assert len(prompts) == M and len(trees) == 1, "M copies of one prompt: one tree"
        (tree,) = trees
        assert len(tree.leaves()) == M
        assert sum(n.origin is Origin.INITIAL for n in tree.nodes) == 2
        for row, trajectory in enumerate(tree.trajectories()):
            assert out["prompt_ids"][row] == trajectory.token_ids[: trajectory.prompt_length]
            assert out["completion_ids"][row] == trajectory.token_ids[trajectory.prompt_length :]
            tool_tokens = sum(len(n.token_ids) for n in trajectory.nodes if n.role is Role.TOOL)
            assert len(out["env_mask"][row]) == len(out["logprobs"][row]) == len(out["completion_ids"][row])
            assert out["env_mask"][row].count(0) == tool_tokens
            assert out["tool_calls"][row] == [c.tag for c in trajectory.tool_calls]


def test_prompts_not_in_whole_groups_are_refused():
    from types import SimpleNamespace

    with build_toolbox([{"name": "calc"}]) as tools:
        rollout_func = ArpoRolloutFunc(tools)
        split = [[{"role": "user", "content": q}] for q in ("a", "a", "b", "b", "b", "c")]
        with pytest.raises(ValueError, match="TRL splits groups across processes"):
            rollout_func(split, SimpleNamespace(num_generations=3))
