"""An SFT example is token for token the rollout of the same conversation: the real rollout loop,
real tools and a generator replaying the conversation's model tokens give the same ids, mask,
calls and ending; and ``arpo eval`` records of such rollouts load back as the same conversation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.demonstration_rows import (
    PROTOCOL,
    QUESTION,
    SEGMENTS,
    SYSTEM,
    TOOL_TAGS,
    Lookup,
    protocol_tokenizer,
)
from tests.replay import ReplayGenerator
from transformers import PreTrainedTokenizerFast

from arpo.core.answer_format import FormatSpec
from arpo.core.rewards import RewardConfig, make_reward_fn
from arpo.core.tree import FinishReason, Trajectory
from arpo.eval.records import make_record
from arpo.rollout import ArpoRollout, RolloutConfig
from arpo.tasks.demonstrations import (
    Conversation,
    DemonstrationsConfig,
    Segment,
    conversation_example,
    load_demonstrations,
)
from arpo.tasks.prompts import render_prompt
from arpo.tasks.record import ChatMessage, Task
from arpo.tools import Calculator, ToolBox

PROMPT = (ChatMessage("system", SYSTEM), ChatMessage("user", QUESTION))
TOOLS = Conversation("tools", PROMPT, SEGMENTS)
"""Two tool calls (one with JSON arguments), ending with </answer>: no EOS."""
HELLO = Conversation("hello", (ChatMessage("user", "Say hello."),), (Segment("model", "Hello there!"),))
"""A free-form reply: it ends with the tokenizer's EOS."""
AFTER_CALL = Conversation("after-call", PROMPT, (*SEGMENTS[:2], Segment("model", "\nSo it is 36, then.")))
"""A tool call, then a reply without the answer tag: EOS after the tool result's continuation."""


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return protocol_tokenizer()


def replay(conversation: Conversation, tokenizer: PreTrainedTokenizerFast) -> Trajectory:
    """The rollout of ``conversation``: the model writes its model segments' tokens (and, when
    the answer tag does not end it, EOS), its tools run for real."""
    model_segments = [
        tokenizer.encode(s.text, add_special_tokens=False) for s in conversation.segments if s.role == "model"
    ]
    if not conversation.segments[-1].text.endswith("</answer>"):
        model_segments[-1].append(tokenizer.eos_token_id)
    config = RolloutConfig.model_validate({"branching": {"rollouts_per_prompt": 1, "initial_rollouts": 1}})
    with ToolBox([Calculator(), Lookup()]) as tools:
        rollout = ArpoRollout(ReplayGenerator(model_segments, tokenizer), tokenizer, tools, config)
        tree = rollout.run([render_prompt(tokenizer, conversation.chat())], seed=0).trees[0]
    (trajectory,) = tree.trajectories()
    return trajectory


@pytest.mark.parametrize("conversation", [TOOLS, HELLO, AFTER_CALL], ids=lambda c: c.id)
def test_an_sft_example_is_the_rollout_of_the_same_conversation(
    conversation: Conversation, tokenizer: PreTrainedTokenizerFast
) -> None:
    trajectory = replay(conversation, tokenizer)
    ids, mask = conversation_example(conversation, tokenizer, PROTOCOL)
    assert (trajectory.token_ids, trajectory.loss_mask) == (ids, mask)
    assert [(c.tag, c.call, c.status) for c in trajectory.tool_calls] == [
        (s.tag, s.call, s.status) for s in conversation.segments if s.role == "tool"
    ]
    ends_with_answer = conversation.segments[-1].text.endswith("</answer>")
    assert trajectory.finish_reason is (FinishReason.ANSWER if ends_with_answer else FinishReason.EOS)
    assert (ids[-1] == tokenizer.eos_token_id) is not ends_with_answer
    response_mask = mask[trajectory.prompt_length :]
    assert response_mask[-1] == 1 and (0 in response_mask) == (len(conversation.segments) > 1)


def test_eval_records_load_back_as_the_conversation(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path
) -> None:
    """Rejection-sampling fine-tuning: sampled trajectories → records.jsonl → only the correct one,
    whose SFT example is the sampled trajectory itself."""
    reward_fn = make_reward_fn(RewardConfig(format=FormatSpec(tool_tags=TOOL_TAGS)))
    records = []
    for truth, conversation in (("38", TOOLS), ("37", TOOLS), ("38", AFTER_CALL)):
        task = Task(conversation.id, conversation.prompt, (truth,), "number", "test")
        trajectory = replay(conversation, tokenizer)
        records.append(make_record("d", task, None, 0, trajectory, tokenizer, reward_fn, 1.0).to_dict())
    assert [r["correct"] for r in records] == [True, False, False]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    (kept,) = load_demonstrations(
        DemonstrationsConfig(path=str(path), tool_tags=TOOL_TAGS, correct_only=True)
    )
    assert (kept.prompt, kept.segments) == (TOOLS.prompt, TOOLS.segments)
    everything = load_demonstrations(DemonstrationsConfig(path=str(path), tool_tags=TOOL_TAGS))
    assert [c.segments for c in everything] == [TOOLS.segments, TOOLS.segments, AFTER_CALL.segments]
    replayed = replay(AFTER_CALL, tokenizer)
    assert conversation_example(everything[2], tokenizer, PROTOCOL) == (
        replayed.token_ids,
        replayed.loss_mask,
    )
