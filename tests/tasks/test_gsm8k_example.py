"""The GSM8K example config: it validates, its prompt matches its reward, and a step of it runs."""

from __future__ import annotations

from pathlib import Path

from arpo.config import load_config
from arpo.core.rewards import make_reward_fn
from arpo.models.builtin import BUILTIN_MODELS
from arpo.tasks.gsm8k_sample import write_gsm8k_sample
from arpo.tasks.record import ChatMessage, Task
from arpo.train.checkpoint import latest_checkpoint
from arpo.train.jobs import RLJobConfig, run_rl

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "gsm8k_smollm2_arpo.yaml"


def test_the_config_trains_smollm2_with_the_python_tool_and_the_math_reward():
    config = load_config(RLJobConfig, CONFIG)
    assert config.model.name in BUILTIN_MODELS
    assert [tool["name"] for tool in config.tools] == ["python"]
    assert config.reward.format.tool_tags == ("python",)
    assert config.data.dataset.layout == "gsm8k"
    branching = config.train.rollout.branching
    assert (branching.rollouts_per_prompt, branching.initial_rollouts) == (4, 2)


def test_the_system_prompt_teaches_the_protocol_the_reward_checks():
    config = load_config(RLJobConfig, CONFIG)
    prompt = config.data.system_prompt
    spec = config.reward.format
    for tag in (spec.think_tag, spec.answer_tag, spec.result_tag, *spec.tool_tags):
        assert f"<{tag}>" in prompt and f"</{tag}>" in prompt, tag
    example = prompt.rsplit("Example: ", 1)[1]
    task = Task("0", (ChatMessage("user", "eggs?"),), ("31",), "number", "gsm8k")
    reward = make_reward_fn(config.reward)(task.reward_input(example, ["python"], "answer"))
    assert reward.format_ok and reward.total == 1.0


def test_one_step_of_the_example_runs_with_a_tiny_model(tmp_path):
    data = write_gsm8k_sample(tmp_path / "gsm8k" / "train.jsonl", n=8)
    run_dir = tmp_path / "run"
    config = load_config(
        RLJobConfig,
        CONFIG,
        [
            f"run_dir={run_dir}",
            f"data.dataset.path={data}",
            "model.name=tiny",
            "train.steps=1",
            "train.rollout.max_response_tokens=32",
            "train.logging.tensorboard=false",
        ],
    )
    (metrics,) = run_rl(config)
    assert metrics["rollout/trajectories"] == 8
    assert -1.0 <= metrics["reward/mean"] <= 1.1
    assert latest_checkpoint(run_dir) is not None
