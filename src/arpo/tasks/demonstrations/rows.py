"""The project's own layouts: demonstration rows and ``arpo eval`` sample records → conversations.

**Demonstration rows** (``demos``; :meth:`arpo.tasks.toolworld.Demo.to_row`, what ``arpo toolworld
build`` and ``arpo data gsm8k-demos`` write): ``prompt`` (chat messages) and ``segments``, each
``{role: model|tool, text, tag?, call?, status?}``, a tool segment's text being the tool's output
before wrapping; ``task_id`` names the row.

**Sample records** (``records``; :class:`arpo.eval.records.SampleRecord`, ``records.jsonl`` of
``arpo eval``): ``prompt_messages`` and ``segments`` (``{role, text}``: each node of the sampled
trajectory decoded, a tool segment's text wrapped by the result template as the model saw it),
``tool_calls`` (one per tool segment, with its status), ``finish_reason``, ``score`` and
``correct``. Records written before ``prompt_messages``/``segments`` existed cannot be re-split
exactly (the rendered prompt and response are text) and are refused with that reason. A record
is kept only when its response ended (``finish_reason`` is not ``length``: a cut-off response
has no ending to learn) and it passes the filter: ``correct_only`` keeps ``correct`` samples,
``min_score`` those with ``score ≥ min_score`` — rejection-sampling fine-tuning on a model's own
successes.

Both hold explicit segments, so model text is taken as it is (no inline results), then held to
the rollout's rules (:mod:`arpo.tasks.demonstrations.response`); the call of each tool segment
is read from the model text before it, as the rollout reads it.
"""

from __future__ import annotations

from typing import Any

from arpo.tasks.demonstrations.conversation import Conversation, ResponseProtocol
from arpo.tasks.demonstrations.response import ResponseBuilder
from arpo.tasks.layouts import RowReader

SEGMENT_ROLES = ("model", "tool")


def conversation_from_demo_row(row: RowReader, protocol: ResponseProtocol) -> Conversation:
    """The conversation of a demonstration row (module docstring)."""
    id = row.text("task_id") if row.data.get("task_id") is not None else str(row.number)
    response = ResponseBuilder(protocol, row)
    for field, segment in _segments(row):
        if segment["role"] == "model":
            response.add_text(segment["text"], f"{field}.text", inline=False)
        else:
            status = segment.get("status") or "ok"
            response.add_result(segment["text"], f"{field}.text", status)
    return Conversation(id, row.chat_messages("prompt"), response.segments("segments"))


def keep_record(row: RowReader, correct_only: bool, min_score: float | None) -> bool:
    """Whether a sample record ended and passes the filter (module docstring)."""
    if row.get("finish_reason") == "length":
        return False
    if correct_only and row.get("correct") is not True:
        return False
    if min_score is not None:
        score = row.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise row.error("score", f"expected a number, got {type(score).__name__}")
        return score >= min_score
    return True


def conversation_from_record(row: RowReader, protocol: ResponseProtocol) -> Conversation:
    """The conversation of a sample record (module docstring)."""
    for field in ("prompt_messages", "segments"):
        if row.data.get(field) is None:
            raise row.error(
                field,
                "missing: this record was written before arpo eval stored the prompt messages and the "
                "response's segments, so it cannot be re-split exactly; re-run arpo eval",
            )
    segments = _segments(row)
    calls = row.get("tool_calls")
    tools = sum(segment["role"] == "tool" for _, segment in segments)
    if not isinstance(calls, list) or len(calls) != tools:
        raise row.error("tool_calls", f"expected one entry per tool segment ({tools})")
    statuses = iter(call.get("status", "ok") if isinstance(call, dict) else "ok" for call in calls)
    before, after = protocol.result_parts
    response = ResponseBuilder(protocol, row)
    for field, segment in segments:
        text = segment["text"]
        if segment["role"] == "model":
            response.add_text(text, f"{field}.text", inline=False)
            continue
        if not (text.startswith(before) and text.endswith(after)):
            raise row.error(
                f"{field}.text",
                f"a tool segment must be wrapped by result_template {protocol.result_template!r}",
            )
        response.add_result(text[len(before) : len(text) - len(after)], f"{field}.text", next(statuses))
    sample = f"{row.text('task_id')}#{row.data.get('sample', 0)}"
    return Conversation(sample, row.chat_messages("prompt_messages"), response.segments("segments"))


def _segments(row: RowReader) -> list[tuple[str, dict[str, Any]]]:
    """``(field, segment)`` of each ``{role: model|tool, text}`` in ``segments``."""
    segments = row.get("segments")
    if not isinstance(segments, list):
        raise row.error("segments", f"expected a list of segments, got {type(segments).__name__}")
    for index, segment in enumerate(segments):
        field = f"segments[{index}]"
        if not isinstance(segment, dict) or segment.get("role") not in SEGMENT_ROLES:
            raise row.error(f"{field}.role", f"expected a segment whose role is one of {list(SEGMENT_ROLES)}")
        if not isinstance(segment.get("text"), str):
            raise row.error(f"{field}.text", f"expected a string, got {type(segment.get('text')).__name__}")
    return [(f"segments[{index}]", segment) for index, segment in enumerate(segments)]
