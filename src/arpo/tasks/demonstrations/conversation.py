"""A demonstration as the rollout would record it, and its token ids and loss mask.

A :class:`Conversation` is a prompt (chat messages) and a response of segments that alternate
like a rollout's: model text, each ending with a tool's closing tag, then that tool's result, …,
and a final model segment. It becomes training data the way a rollout does (:mod:`arpo.rollout`),
through a :class:`~arpo.core.tree.RolloutTree` with one leaf:

- the prompt is rendered once with the tokenizer's chat template, generation prompt opened
  (:func:`arpo.tasks.prompts.render_prompt`);
- each model segment is encoded on its own, without special tokens;
- each tool result is wrapped by the result template (``<result>{result}</result>``) and encoded
  on its own, without special tokens;
- **the end**: a response whose last segment ends with the answer's closing tag (``</answer>``)
  ends there, as a rollout stops at that stop string without sampling anything after it; any
  other response ends with the tokenizer's EOS token (``tokenizer.eos_token``; for ChatML models
  such as SmolLM2 and Qwen ``<|im_end|>``, the end of the assistant turn), a model token, as a
  rollout keeps the EOS it samples. So a model fine-tuned on answers in the protocol stops at
  ``</answer>`` in the rollout, and a model fine-tuned on free-form replies learns to end its turn.

So an SFT example's token ids are exactly those a rollout of the same text would hold, and its
loss mask (1 on model tokens, 0 on prompt and tool tokens) is the tree's own. With native tool
calling (``tool_format: chat_template``) the same conversation is rendered by the chat template
instead (:func:`chat_conversation_tree`), again as the rollout renders it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from arpo.core.answer_format import FormatSpec
from arpo.core.tree import FinishReason, Origin, RolloutTree, ToolCall
from arpo.tasks.chat_tools import ChatToolFormat
from arpo.tasks.prompts import render_prompt
from arpo.tasks.record import ChatMessage, chat_dicts, with_system_message

DEFAULT_RESULT_TEMPLATE = f"<{FormatSpec().result_tag}>{{result}}</{FormatSpec().result_tag}>"
"""The rollout's default ``result_template`` (:class:`arpo.rollout.RolloutConfig`)."""


class ResponseProtocol(BaseModel):
    """The tags of the rollout's tool protocol that a demonstration must follow; they must equal
    the RL run's (``tools``, ``train.rollout.result_template``, ``train.rollout.answer_close_tag``)."""

    model_config = ConfigDict(extra="forbid")

    tool_tags: tuple[str, ...] = Field(
        FormatSpec().tool_tags,
        description="Tags of the tools a demonstration may call (<tag>call</tag>); a call of any other tool "
        "is an error, since the rollout stops at and runs only its tools' tags.",
    )
    result_template: str = Field(
        DEFAULT_RESULT_TEMPLATE,
        description="How a tool result is wrapped: text, {result}, text (how results are found in a response).",
    )
    answer_close_tag: str = Field(
        f"</{FormatSpec().answer_tag}>",
        description="Closing tag of the answer: a response ending with it gets no EOS token.",
    )

    @field_validator("result_template")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        parts = value.split("{result}")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"result_template must be text, '{{result}}' once, then text; got {value!r}")
        return value

    @property
    def result_parts(self) -> tuple[str, str]:
        """The text before and after ``{result}`` in the result template."""
        before, after = self.result_template.format(result="\0").split("\0")
        return before, after

    @property
    def closing_tags(self) -> dict[str, str]:
        """Each tool's closing tag → its tag."""
        return {f"</{tag}>": tag for tag in self.tool_tags}

    @property
    def stop_strings(self) -> list[str]:
        """Where a rollout's model turn stops: the tools' closing tags and the answer's."""
        return [*self.closing_tags, self.answer_close_tag]


@dataclass(frozen=True)
class Segment:
    """A model segment (``text`` the model writes) or a tool segment (``text`` the tool returned,
    unwrapped; ``tag``, ``call`` and ``status`` describe the call)."""

    role: Literal["model", "tool"]
    text: str
    tag: str | None = None
    call: str | None = None
    status: str | None = None

    def rendered(self, result_template: str) -> str:
        """The segment's text in the response: a tool result wrapped by ``result_template``."""
        return self.text if self.role == "model" else result_template.format(result=self.text)


@dataclass(frozen=True)
class Conversation:
    """A prompt and a response in the rollout's shape: segments alternate model, tool, …, model."""

    id: str
    prompt: tuple[ChatMessage, ...]
    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        roles = [segment.role for segment in self.segments]
        if len(roles) % 2 == 0 or roles != ["model", "tool"] * (len(roles) // 2) + ["model"]:
            raise ValueError(f"{self.id}: segments must alternate model, tool, …, model; got {roles}")

    def chat(self) -> list[dict[str, str]]:
        return chat_dicts(self.prompt)

    def with_system_prompt(self, text: str) -> Conversation:
        """This conversation with its system messages replaced by one system message ``text``."""
        return dataclasses.replace(self, prompt=with_system_message(self.prompt, text))

    def response(self, result_template: str = DEFAULT_RESULT_TEMPLATE) -> str:
        """Everything after the prompt, tool results wrapped: what the reward reads."""
        return "".join(segment.rendered(result_template) for segment in self.segments)


def conversation_tree(
    conversation: Conversation,
    tokenizer: Any,
    protocol: ResponseProtocol | None = None,
    meta: dict[str, Any] | None = None,
) -> RolloutTree:
    """A rollout tree with one leaf holding ``conversation`` (module docstring; zero log-probs
    and entropies on model tokens)."""
    protocol = protocol or ResponseProtocol()
    tree = RolloutTree(
        render_prompt(tokenizer, conversation.chat()), len(tokenizer), meta or {"id": conversation.id}
    )
    parent = tree.root
    for index, segment in enumerate(conversation.segments):
        ids = _encode(tokenizer, segment.rendered(protocol.result_template))
        if segment.role == "model":
            parent = tree.add_model(parent, Origin.INITIAL if index == 0 else None)
            parent.append(ids, [0.0] * len(ids), [0.0] * len(ids))
        else:
            call = ToolCall(segment.tag or "", segment.call or "", segment.status or "ok")
            parent = tree.add_tool(parent, ids, [call])
    if conversation.segments[-1].text.endswith(protocol.answer_close_tag):
        parent.finish_reason = FinishReason.ANSWER
    else:
        if tokenizer.eos_token_id is None:
            raise ValueError(
                f"{conversation.id}: the response does not end with {protocol.answer_close_tag} and the "
                "tokenizer has no EOS token to end it with"
            )
        parent.append([tokenizer.eos_token_id], [0.0], [0.0])
        parent.finish_reason = FinishReason.EOS
    return tree


def chat_conversation_tree(
    conversation: Conversation, chat: ChatToolFormat, meta: dict[str, Any] | None = None
) -> RolloutTree:
    """:func:`conversation_tree` for native tool calling (``tool_format: chat_template``): the
    prompt with the tools, each model segment as an assistant turn whose call (the tag protocol's
    ``<tag>call</tag>`` at its end) becomes a function call, rendered by the chat template and
    ended by EOS, and each tool result as the template's tool message
    (:class:`~arpo.tasks.chat_tools.ChatToolFormat`: the ids a rollout of the same turns holds)."""
    history = conversation.chat()
    tree = RolloutTree(chat.prompt_ids(history), len(chat.tokenizer), meta or {"id": conversation.id})
    parent = tree.root
    segments = conversation.segments
    for index in range(0, len(segments), 2):
        tool = segments[index + 1] if index + 1 < len(segments) else None
        call = (tool.tag or "", tool.call or "") if tool is not None else None
        try:
            message = chat.assistant_message(segments[index].text, call)
        except ValueError as exc:
            raise ValueError(f"{conversation.id}: {exc}") from None
        text, ids = chat.assistant_ids(history, message)
        node = tree.add_model(parent, Origin.INITIAL if index == 0 else None)
        node.append(ids, [0.0] * len(ids), [0.0] * len(ids))
        history.append(message)
        if tool is None:
            node.finish_reason = FinishReason.EOS
            break
        record = ToolCall(tool.tag or "", tool.call or "", tool.status or "ok")
        parent = tree.add_tool(node, chat.results_ids(text, [(tool.tag or "", tool.text)]), [record])
        history.append({"role": "tool", "name": tool.tag, "content": tool.text})
    return tree


def conversation_example(
    conversation: Conversation,
    tokenizer: Any,
    protocol: ResponseProtocol | None = None,
    chat: ChatToolFormat | None = None,
) -> tuple[list[int], list[int]]:
    """``(token_ids, loss_mask)`` of ``conversation``: 1 on model tokens, 0 on prompt and tool
    tokens; rendered by the chat template with ``chat`` (:func:`chat_conversation_tree`)."""
    tree = (
        chat_conversation_tree(conversation, chat)
        if chat is not None
        else conversation_tree(conversation, tokenizer, protocol)
    )
    trajectory = tree.trajectories()[0]
    return trajectory.token_ids, trajectory.loss_mask


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))
