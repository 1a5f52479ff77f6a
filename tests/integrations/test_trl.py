"""ARPO trees sampled inside TRL's GRPOTrainer (``rollout_func=ArpoRolloutFunc(...)``), on CPU with a
tiny model that calls the calculator: a step runs, parameters change, every prompt's group is one
tree with M leaves, and TRL's fields are the trees' trajectories, tool tokens masked."""

from __future__ import annotations

import pytest
import torch

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from arpo.core.tree import Origin, Role  # noqa: E402
from arpo.integrations.trl import ArpoRolloutFunc  # noqa: E402
from arpo.models.tiny import build_tiny_llama  # noqa: E402
from arpo.tools.registry import build_toolbox  # noqa: E402
from tests.conftest import QUESTIONS, train_tool_caller  # noqa: E402

M = 4


def letters(completions, **kwargs):
    """A dense reward (share of the letter e), so groups that differ at all have variance."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [t.count("e") / max(1, len(t)) for t in texts]


@pytest.fixture
def fresh_accelerate_state():
    """TRL's trainer sets accelerate's process-wide state; later tests set their own."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def test_grpo_trainer_trains_on_arpo_trees(tokenizer, prompts, tmp_path, monkeypatch, fresh_accelerate_state):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    # 60 steps: it calls the calculator, yet its samples still differ. Trained to convergence (300
    # steps, or 120) its groups came out identical on some floating-point paths (MKL's generic code),
    # so every advantage was 0 and the step changed nothing.
    model = train_tool_caller(build_tiny_llama(tokenizer, seed=2), tokenizer, prompts, steps=60)
    dataset = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS])
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=M,
        gradient_accumulation_steps=1,
        num_generations=M,
        max_completion_length=40,
        max_steps=2,
        learning_rate=1e-2,
        beta=0.0,
        temperature=1.0,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    with build_toolbox([{"name": "calc"}]) as tools:
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
            assert all(
                lp == 0.0
                for lp, keep in zip(out["logprobs"][row], out["env_mask"][row], strict=True)
                if not keep
            )
    masked = sum(row.count(0) for _, out, _ in calls for row in out["env_mask"])
    assert masked > 0, "tool tokens were sampled and masked out of TRL's loss"


def test_prompts_not_in_whole_groups_are_refused():
    from types import SimpleNamespace

    with build_toolbox([{"name": "calc"}]) as tools:
        rollout_func = ArpoRolloutFunc(tools)
        split = [[{"role": "user", "content": q}] for q in ("a", "a", "b", "b", "b", "c")]
        with pytest.raises(ValueError, match="TRL splits groups across processes"):
            rollout_func(split, SimpleNamespace(num_generations=3))
