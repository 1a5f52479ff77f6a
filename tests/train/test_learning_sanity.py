"""Sanity problems with a known optimum that the RL trainer must *learn* in seconds.

Unit tests pin formulas; these catch what they miss: a sign error, a broken loss mask, log-probs
read at the wrong position, an attribution or packing bug. Each problem starts from a policy
whose behaviour is known, has a reward whose optimum is known and reachable, and must reach a
stated reward within a stated number of steps, for every combination of the trainer's main
switches (GRPO and ARPO sampling, soft and hard attribution, tree, flat and prefix layouts, 1 PPO epoch
or 2 epochs of 2 mini-batches), plus the REINFORCE++ estimator, Dr. GRPO's aggregation and AEPO's
loss-side options (entropy-aware advantage a = 0.2 and the entropy-balanced clip, 2 epochs), and
with the linear layers in oneDNN or with decode steps on MKL-packed weights (``model.cpu_matmul``).

* **use the tool** (12 steps of 4 prompts × M = 8 trajectories, ARPO with N = 4, lr 1e-3): a
  policy fitted to demonstrations that call ``<calc>1+2</calc>``, read the result and answer ``3``
  once for every three that answer ``7`` at once takes the tool route in ~1 sample of 4 (reward
  ≈ 0.22–0.25 at step 1) and is rewarded for the right answer. Optimum: always call the tool and
  copy its result (reward 1); the mean of the last 4 steps must be ≥ 0.7. With 2 epochs the
  learning rate is 5e-4 (:data:`TWO_EPOCH_LR`).
* **be brief**: a policy fitted to the opposite mixture (3 tool routes : 1 direct answer, reward
  ≈ 0.25 at step 1), rewarded for short responses (1 − characters / 60) whatever the answer. The
  direct route scores 0.7 (shorter, malformed responses would score more); the last 4 steps must
  average ≥ 0.65. The opposite direction of the first problem, so neither can pass through a
  bias towards long or short trajectories.
* **token bandit** (20 steps of 4 prompts × 8, lr 1e-2): a random policy rewarded for the share of digits
  in its first 6 tokens, ≈ 0.15 at the start; no tools, so every token is the model's. Optimum 1;
  the last 4 steps must average ≥ 0.8.

The starting policies are fitted to convergence, so the problems start from the same mixture on
any CPU; the thresholds leave a margin below the curves measured natively and with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` (with and without
``MKL_ENABLE_INSTRUCTIONS=SSE4_2``). A failing test prints its curve.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from arpo.core.rewards import RewardInput, RewardResult
from arpo.models import cpu_matmul, mkl_packed
from arpo.models.tiny import build_tiny_llama
from arpo.tasks.record import ChatMessage, Task
from arpo.tools import Calculator, ToolBox
from arpo.train.rl import RLConfig, RLTrainer

TOOL_ROUTE = "<calc>1+2</calc><result>3</result><answer>3</answer><|eos|>"
DIRECT_ROUTE = "<answer>7</answer><|eos|>"
BUDGET = 24
STEPS = 12
TWO_EPOCH_LR = 5e-4
"""2 epochs of 2 mini-batches make 4 optimizer steps per batch; at 1e-3 the reward collapsed
mid-run (≈ 0.95 → 0.4) on 1 of 6 rollout seeds for GRPO, ARPO and AEPO alike, and on MKL's
generic floating-point path for the seed the tests use (2026-12-06); at 5e-4 none of 18 did."""
QUESTIONS = ["what is 1+2?", "add one and two", "compute 1+2 please", "sum of 1 and 2?"]


def tasks() -> list[Task]:
    return [
        Task(str(i), (ChatMessage("user", q),), ("3",), "number", "sanity") for i, q in enumerate(QUESTIONS)
    ]


def result(value: float, correct: float) -> RewardResult:
    return RewardResult(
        total=value, format_ok=True, format_error=None, correctness=correct, bonus=0.0, answer=None
    )


def right_answer(sample: RewardInput) -> RewardResult:
    correct = float("<answer>3</answer>" in sample.response)
    return result(correct, correct)


def brevity(sample: RewardInput) -> RewardResult:
    value = 1.0 - len(sample.response) / 60  # characters: the direct route is 18, the tool route 54
    return result(value, value)


def digit_share(sample: RewardInput) -> RewardResult:
    text = sample.response.replace("<|eos|>", "")
    value = sum(c.isdigit() for c in text) / 6
    return result(value, value)


def fit_two_routes(tokenizer, prompts, tool_routes: int, direct_routes: int) -> dict[str, torch.Tensor]:
    """Weights of a tiny Llama fitted to demonstrations that take the tool route ``tool_routes``
    times for every ``direct_routes`` direct answers: full-batch training to convergence, so that
    it starts from that mixture whatever the CPU's floating-point path."""
    model = build_tiny_llama(tokenizer, seed=5)
    routes = [TOOL_ROUTE] * tool_routes + [DIRECT_ROUTE] * direct_routes
    sequences = [p + tokenizer.encode(r, add_special_tokens=False) for p in prompts for r in routes]
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), tokenizer.pad_token_id)
    labels = torch.full((len(sequences), width), -100)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = labels[i, : len(seq)] = torch.tensor(seq)
    mask = (labels != -100).long()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def tool_shy(tokenizer, prompts) -> dict[str, torch.Tensor]:
    """Takes the tool route in about 1 sample of 4."""
    return fit_two_routes(tokenizer, prompts, 1, 3)


@pytest.fixture(scope="module")
def tool_keen(tokenizer, prompts) -> dict[str, torch.Tensor]:
    """Takes the tool route in about 3 samples of 4."""
    return fit_two_routes(tokenizer, prompts, 3, 1)


def config(
    steps: int, *, m: int = 8, n: int | None = None, budget: int = BUDGET, lr: float = 1e-3, **train
) -> RLConfig:
    return RLConfig.model_validate(
        {
            "steps": steps,
            "prompts_per_step": 4,
            "micro_batch_size": 16,
            "save_every": steps,
            "keep_checkpoints": 1,
            "rollout": {
                "branching": {"rollouts_per_prompt": m, "initial_rollouts": n or m, "entropy_window": 4},
                "max_response_tokens": budget,
                "max_tool_calls": 1,
            },
            "optim": {"lr": lr, "warmup_steps": 0},
            "logging": {"tensorboard": False},
            **train,
        }
    )


def learn(model, tokenizer, reward_fn, cfg: RLConfig, run_dir) -> list[float]:
    """Train; returns the mean reward of each step."""
    with ToolBox([Calculator()]) as tools:
        trainer = RLTrainer(cfg, model, tokenizer, tasks(), tools, reward_fn, run_dir)
        return [m["reward/mean"] for m in trainer.train()]


def final(curve: list[float], last: int = 4) -> float:
    return statistics.fmean(curve[-last:])


SWITCHES = [
    pytest.param(
        n, attribution, packing, epochs, id=f"{'arpo' if n else 'grpo'}-{attribution}-{packing}-{epochs}ep"
    )
    for n in (None, 4)
    for attribution in ("soft", "hard")
    for packing in ("tree", "flat", "prefix")
    for epochs in (1, 2)
]


@pytest.mark.parametrize(("n", "attribution", "packing", "epochs"), SWITCHES)
def test_learns_to_use_the_tool(tool_shy, tokenizer, tmp_path, n, attribution, packing, epochs):
    model = build_tiny_llama(tokenizer, seed=5)
    model.load_state_dict(tool_shy)
    cfg = config(
        STEPS,
        n=n,
        packing=packing,
        ppo_epochs=epochs,
        mini_batch_prompts=2 if epochs == 2 else None,
        lr=TWO_EPOCH_LR if epochs == 2 else 1e-3,
        advantage={"attribution": attribution},
    )
    curve = learn(model, tokenizer, right_answer, cfg, tmp_path)
    assert curve[0] < 0.3, f"the start should prefer the direct route: {curve}"
    assert final(curve) >= 0.7, f"reward per step: {[round(r, 2) for r in curve]}"


@pytest.mark.parametrize(
    "library",
    [
        pytest.param(
            "onednn",
            marks=pytest.mark.skipif(
                not torch.backends.mkldnn.is_available(), reason="no oneDNN in this build"
            ),
        ),
        pytest.param(
            "mkl_packed",
            marks=pytest.mark.skipif(not mkl_packed.mkl_packing_available(), reason="no MKL in this build"),
        ),
    ],
)
def test_learns_to_use_the_tool_with_other_linear_products(
    library, tool_shy, tokenizer, tmp_path, monkeypatch
):
    """``model.cpu_matmul``'s other libraries. ``onednn`` (what ``auto`` takes on non-Intel CPUs):
    every product of the rollout's forwards and the learner's forward and backward runs in oneDNN.
    ``mkl_packed`` (``auto`` on other x86 CPUs): the rollout's decode steps multiply by packed
    weights, the learner keeps MKL's plain products."""
    calls = []
    if library == "onednn":
        product = cpu_matmul._onednn_mm
        monkeypatch.setattr(cpu_matmul, "_onednn_mm", lambda *a: calls.append(1) or product(*a))
        monkeypatch.setattr(cpu_matmul, "ONEDNN_MIN_MACS", 0)  # the tiny model's products are all small
    else:
        product = torch.ops.mkl._mkl_linear
        monkeypatch.setattr(
            torch.ops.mkl, "_mkl_linear", lambda *a: calls.append(1) or product(*a), raising=False
        )
        monkeypatch.setattr(mkl_packed, "PACK_MIN_WEIGHTS", 0)  # the tiny model's weights are all small
    model = build_tiny_llama(tokenizer, seed=5)
    model.load_state_dict(tool_shy)
    assert cpu_matmul.apply_cpu_matmul(model, library) == library
    curve = learn(model, tokenizer, right_answer, config(STEPS, n=4), tmp_path)
    assert calls, f"no product ran in {library}"
    assert curve[0] < 0.3, f"the start should prefer the direct route: {curve}"
    assert final(curve) >= 0.7, f"reward per step: {[round(r, 2) for r in curve]}"


@pytest.mark.parametrize(
    "train",
    [
        pytest.param({"advantage": {"estimator": "reinforce_pp"}}, id="reinforce_pp"),
        pytest.param({"loss": {"aggregation": "seq-mean-token-sum-norm"}}, id="dr-grpo"),
        pytest.param(  # 2 epochs of 2 mini-batches: ρ ≠ 1, so the clip's gradient matters
            {
                "advantage": {"entropy_weight": 0.2},
                "loss": {"clip_gradient": "entropy_balanced"},
                "ppo_epochs": 2,
                "mini_batch_prompts": 2,
                "lr": TWO_EPOCH_LR,
            },
            id="aepo",
        ),
    ],
)
def test_other_estimators_learn_to_use_the_tool(tool_shy, tokenizer, tmp_path, train):
    model = build_tiny_llama(tokenizer, seed=5)
    model.load_state_dict(tool_shy)
    curve = learn(model, tokenizer, right_answer, config(STEPS, n=4, **train), tmp_path)
    assert final(curve) >= 0.7, f"reward per step: {[round(r, 2) for r in curve]}"


@pytest.mark.parametrize("n", [pytest.param(None, id="grpo"), pytest.param(4, id="arpo")])
def test_learns_to_be_brief(tool_keen, tokenizer, tmp_path, n):
    model = build_tiny_llama(tokenizer, seed=5)
    model.load_state_dict(tool_keen)
    curve = learn(model, tokenizer, brevity, config(STEPS, n=n), tmp_path)
    direct = 1 - 18 / 60
    assert curve[0] < 0.4, f"the start should prefer the tool route: {curve}"
    assert final(curve) >= direct - 0.05, f"reward per step: {[round(r, 2) for r in curve]}"


@pytest.mark.parametrize("packing", ["tree", "flat", "prefix"])
def test_token_bandit(tokenizer, tmp_path, packing):
    model = build_tiny_llama(tokenizer, seed=0)
    curve = learn(
        model, tokenizer, digit_share, config(20, m=8, budget=6, lr=1e-2, packing=packing), tmp_path
    )
    assert statistics.fmean(curve[:3]) < 0.3
    assert final(curve) >= 0.8, f"reward per step: {[round(r, 2) for r in curve]}"
