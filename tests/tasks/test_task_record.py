"""The task record, its link to the reward, and the protocol system prompt."""

from __future__ import annotations

import pytest

from arpo.core.answer_format import FormatSpec
from arpo.core.rewards import HierarchicalReward
from arpo.tasks import ChatMessage, Task, protocol_system_prompt
from arpo.tasks.record import TaskFieldError


def make_task(**changes: object) -> Task:
    fields: dict[str, object] = {
        "id": "7",
        "prompt": (ChatMessage("system", "old"), ChatMessage("user", "What is 2+2?")),
        "ground_truths": ("4",),
        "answer_type": "number",
        "source": "unit",
    }
    return Task(**{**fields, **changes})  # type: ignore[arg-type]


def test_chat_question_and_system_prompt_replacement() -> None:
    task = make_task()
    assert task.question == "What is 2+2?"
    assert task.chat() == [{"role": "system", "content": "old"}, {"role": "user", "content": "What is 2+2?"}]
    replaced = task.with_system_prompt("new")
    assert [m.content for m in replaced.prompt] == ["new", "What is 2+2?"]
    no_system = make_task(prompt=[ChatMessage("user", "q")]).with_system_prompt("new")
    assert [m.role for m in no_system.prompt] == ["system", "user"]


def test_reward_input_carries_the_ground_truths() -> None:
    task = make_task(ground_truths=["four", "4"])
    sample = task.reward_input("<think>t</think><answer>\\boxed{4}</answer>", ["python"])
    assert sample.ground_truths == ("four", "4") and sample.answer_type == "number"
    assert HierarchicalReward()(sample).total == 1.0


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"prompt": [ChatMessage("system", "s")]}, "prompt", "needs a non-empty user message"),
        ({"prompt": [ChatMessage("robot", "q")]}, "prompt", "unknown role 'robot'"),
        ({"ground_truths": []}, "ground_truths", "no answer given"),
        ({"ground_truths": ["4", " "]}, "ground_truths", "answer 1 is ' '"),
        ({"answer_type": "code"}, "answer_type", "'code' is not one of"),
    ],
)
def test_invalid_task_names_the_field(changes: dict[str, object], field: str, problem: str) -> None:
    with pytest.raises(TaskFieldError, match=problem) as caught:
        make_task(**changes)
    assert caught.value.field == field


def test_protocol_system_prompt_names_the_spec_tags_and_tools() -> None:
    spec = FormatSpec(tool_tags=("search", "python"), require_boxed=True)
    text = protocol_system_prompt(spec, {"python": "Runs Python code and returns stdout."})
    for fragment in (
        "<think>",
        "<python> ... </python>",
        "<result>",
        "<answer>",
        "\\boxed{}",
        "Runs Python code",
    ):
        assert fragment in text
    assert "<search>" not in text  # only the tools given are described
    plain = protocol_system_prompt(FormatSpec(), {})
    assert "\\boxed" not in plain and "Available tools" not in plain


def test_protocol_system_prompt_rejects_tools_the_gate_would_reject() -> None:
    with pytest.raises(ValueError, match=r"\['calc'\] are not in the format spec's tool_tags"):
        protocol_system_prompt(FormatSpec(), {"calc": "adds numbers"})
