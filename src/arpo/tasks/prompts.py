"""Prompts: rendering chat messages to token ids, and the system prompt that teaches the policy
the tool protocol the format gate checks.

ARPO's prompts (arXiv 2507.19849 appendix; ARPO_REFERENCE.md §7) describe the protocol in prose:
reasoning in ``<think>``, tool calls in their tags, results in ``<result>``, the final answer in
``<answer>`` with ``\\boxed{}``. We render the same text from the :class:`FormatSpec`, so the
prompt names exactly the tags the reward accepts, and from the tools' own descriptions, passed
as strings so tasks never import a tool.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arpo.core.answer_format import FormatSpec


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Prompt token ids from the tokenizer's chat template, with the assistant turn opened.

    The prompt is rendered once, here; every trajectory of its tree starts with these ids.
    """
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])


def protocol_system_prompt(spec: FormatSpec, tools: Mapping[str, str]) -> str:
    """A system prompt describing ``spec``'s protocol and ``tools`` (tag → description).

    Raises ValueError for a tool whose tag the spec does not list: the gate would reject its calls.
    """
    unknown = sorted(set(tools) - set(spec.tool_tags))
    if unknown:
        raise ValueError(f"tools {unknown} are not in the format spec's tool_tags {list(spec.tool_tags)}")
    think, answer, result = spec.think_tag, spec.answer_tag, spec.result_tag
    lines = [
        "You are a helpful assistant that solves the given question step by step, calling tools when they help.",
        f"Reason inside <{think}> </{think}> before each action"
        + (", at least once." if spec.require_think else ", when useful."),
    ]
    if tools:
        example = next(iter(tools))
        lines.append(
            f"To call a tool, write its tag around the call, e.g. <{example}> ... </{example}>, "
            f"and stop; its result is returned inside <{result}> </{result}>. Available tools:"
        )
        lines.extend(f"- <{tag}>: {description.strip()}" for tag, description in tools.items())
    boxed = " and put the exact final answer inside \\boxed{}" if spec.require_boxed else ""
    lines.append(f"Give the final answer exactly once, inside <{answer}> </{answer}>{boxed}.")
    return "\n".join(lines)
