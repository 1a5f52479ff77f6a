"""The response protocol as a declarative spec, its format gate and answer extraction.

ARPO's hierarchical reward (arXiv 2507.19849 §3.3, after Tool-Star) first checks that the
response follows the protocol and gives −1 if it does not (ARPO_REFERENCE.md §3.1–2). The
response is everything after the prompt: model text with each tool result inserted as
``<result>…</result>``. A response passes the gate iff

- its finish reason is not one of ``violation_finish_reasons`` (a truncated response never
  finished its answer);
- ``<think>…</think>`` blocks are closed, not nested, and (if ``require_think``) at least one
  exists;
- every tool call ``<tag>…</tag>`` (``tag`` in ``tool_tags``) is closed and immediately followed,
  ignoring text between tags, by ``<result>…</result>``, and every result follows a tool call;
- there is exactly one ``<answer>…</answer>`` and no tool call inside it;
- the answer is non-empty after extraction and, if ``require_boxed``, contains ``\\boxed{…}``.

Result bodies are environment text, not model text: tags inside them are ignored (a search
snippet quoting ``<answer>`` cannot fail the gate, unlike the reference, §9.8). A body ends at
the first closing result tag. Tool calls inside ``<think>`` are allowed, as the rollout runs
them wherever they appear.

Answer extraction: the text of the single answer block; inside it, the content of the last
``\\boxed{…}`` (braces balanced) if there is one, else the whole block; stripped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, model_validator

_BOXED = re.compile(r"\\boxed\s*\{")


class FormatSpec(BaseModel):
    """Which tags the protocol uses and what the format gate requires (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    think_tag: str = Field("think", description="Tag of reasoning blocks, `<think>…</think>`.")
    require_think: bool = Field(True, description="Fail the gate when no <think> block is present.")
    answer_tag: str = Field("answer", description="Tag of the final answer; exactly one is required.")
    result_tag: str = Field("result", description="Tag the environment wraps each tool result in.")
    tool_tags: tuple[str, ...] = Field(
        ("search", "python"), description="Tags of tool calls, e.g. `<search>query</search>` (paper §3)."
    )
    require_boxed: bool = Field(
        False, description="Fail the gate when the answer has no \\boxed{…} (the reference requires it)."
    )
    violation_finish_reasons: tuple[str, ...] = Field(
        ("length",), description="Finish reasons that fail the gate (`length`: truncated by the budget)."
    )

    @model_validator(mode="after")
    def _distinct_tags(self) -> FormatSpec:
        tags = [self.think_tag, self.answer_tag, self.result_tag, *self.tool_tags]
        if len(set(tags)) != len(tags) or not all(tags):
            raise ValueError(f"protocol tags must be distinct and non-empty, got {tags}")
        return self

    @cached_property
    def tag_pattern(self) -> re.Pattern[str]:
        names = [self.think_tag, self.answer_tag, self.result_tag, *self.tool_tags]
        return re.compile(r"<(/?)(" + "|".join(re.escape(name) for name in names) + r")>")


@dataclass(frozen=True)
class FormatCheck:
    """Outcome of the format gate: the extracted answer, or why the response failed."""

    answer: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Violation(Exception):
    pass


def check_format(response: str, spec: FormatSpec, finish_reason: str = "answer") -> FormatCheck:
    """Run the format gate on a response and extract its answer (module docstring)."""
    try:
        if finish_reason in spec.violation_finish_reasons:
            raise _Violation(f"finish reason '{finish_reason}' (truncated response)")
        block = _answer_block(response, spec)
        boxed = last_boxed(block)
        if boxed is None and spec.require_boxed:
            raise _Violation(f"no \\boxed{{…}} in <{spec.answer_tag}>")
        answer = (block if boxed is None else boxed).strip()
        if not answer:
            raise _Violation(f"empty <{spec.answer_tag}>")
        return FormatCheck(answer=answer)
    except _Violation as violation:
        return FormatCheck(answer=None, error=str(violation))


def extract_call(segment_text: str, tag: str) -> str | None:
    """The call in a model segment that stopped at ``</tag>``: the text between the last ``<tag>``
    and the first ``</tag>``; None without ``<tag>`` (a malformed call)."""
    head = segment_text.split(f"</{tag}>", 1)[0]
    start = head.rfind(f"<{tag}>")
    return None if start < 0 else head[start + len(tag) + 2 :]


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` in ``text`` with balanced braces, or None if there is none."""
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                return text[start:index]
    return None


def _answer_block(response: str, spec: FormatSpec) -> str:
    """Walk the protocol tags in order; return the answer block's text or raise _Violation."""
    think_open = False
    think_blocks = 0
    open_tool: str | None = None
    awaiting_result: str | None = None
    answer_start: int | None = None
    answer: str | None = None
    position = 0
    while match := spec.tag_pattern.search(response, position):
        closing, name = match.group(1) == "/", match.group(2)
        tag = f"<{'/' if closing else ''}{name}>"
        position = match.end()
        if open_tool is not None:
            if not (closing and name == open_tool):
                raise _Violation(f"<{open_tool}> not closed before {tag}")
            open_tool, awaiting_result = None, name
        elif awaiting_result is not None:
            if closing or name != spec.result_tag:
                raise _Violation(f"<{awaiting_result}> call not followed by <{spec.result_tag}> (got {tag})")
            end = response.find(f"</{spec.result_tag}>", position)
            if end < 0:
                raise _Violation(f"<{spec.result_tag}> not closed")
            position, awaiting_result = end + len(spec.result_tag) + 3, None
        elif name == spec.think_tag:
            if closing != think_open:
                raise _Violation(f"unbalanced <{name}>: {tag} {'without opening' if closing else 'nested'}")
            think_open = not closing
            think_blocks += not closing
        elif name == spec.answer_tag:
            if not closing and (answer_start is not None or answer is not None):
                raise _Violation(f"more than one <{name}>")
            if closing and answer_start is None:
                raise _Violation(f"</{name}> without <{name}>")
            if closing:
                answer, answer_start = response[answer_start : match.start()], None
            else:
                answer_start = match.end()
        elif name == spec.result_tag:
            raise _Violation(f"{tag} without a preceding tool call")
        elif closing:
            raise _Violation(f"{tag} without <{name}>")
        elif answer_start is not None:
            raise _Violation(f"tool call <{name}> inside <{spec.answer_tag}>")
        else:
            open_tool = name
    if awaiting_result is not None:
        raise _Violation(f"<{awaiting_result}> call not followed by <{spec.result_tag}>")
    if open_tool is not None:
        raise _Violation(f"<{open_tool}> not closed")
    if think_open:
        raise _Violation(f"<{spec.think_tag}> not closed")
    if answer_start is not None:
        raise _Violation(f"<{spec.answer_tag}> not closed")
    if spec.require_think and think_blocks == 0:
        raise _Violation(f"no <{spec.think_tag}> block")
    if answer is None:
        raise _Violation(f"no <{spec.answer_tag}>")
    return answer
