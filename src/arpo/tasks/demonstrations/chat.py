"""Chat layouts: OpenAI ``messages`` and ShareGPT / LLaMA-Factory ``conversations`` → conversations.

Both become a list of turns with roles system, user, assistant (text and tool calls) and tool
(a result); then one rule makes a :class:`~arpo.tasks.demonstrations.Conversation`:

- everything up to and including the **last user turn** is the prompt (system, user and plain
  assistant turns; rendered later with the chat template, generation prompt opened);
- the turns after it are the **one response**, in the rollout's tag protocol: assistant text is
  model text, and result-template parts inside it (``…<python>x</python><result>3</result>…``,
  the ARPO authors' cold-start data) are tool results (*inline*); each tool call becomes
  ``<name>body</name>`` in the model's text, with body the single string argument when the
  arguments hold exactly one field and it is a string (``{"code": …}`` → the code), else the
  arguments as JSON; each tool turn is a tool result, for the calls in order. Several calls in one
  assistant turn are made one after another, each followed by its result (the rollout runs one
  call per model turn); results are matched to calls by order (ids are not read).
  The response is then held to the rollout's rules (:mod:`arpo.tasks.demonstrations.response`).

Tool calls or results before the last user turn are errors: only the response may use tools.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from arpo.tasks.demonstrations.conversation import Conversation, ResponseProtocol
from arpo.tasks.demonstrations.response import ResponseBuilder
from arpo.tasks.layouts import RowReader
from arpo.tasks.record import ChatMessage

TurnRole = Literal["system", "user", "assistant", "tool"]
OPENAI_ROLES: tuple[TurnRole, ...] = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES: dict[str, TurnRole | Literal["function_call"]] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "function_call",
    "observation": "tool",
    "tool": "tool",
}


@dataclass(frozen=True)
class Call:
    """A tool call: the tool's name and its arguments (a JSON string or a parsed value)."""

    name: str
    arguments: Any
    field: str


@dataclass(frozen=True)
class Turn:
    role: TurnRole
    text: str
    field: str
    """Where ``text`` is in the row."""
    calls: tuple[Call, ...] = ()


def call_body(call: Call, row: RowReader) -> str:
    """The text between the call's tags (module docstring)."""
    arguments = call.arguments
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise row.error(f"{call.field}.arguments", f"not valid JSON ({error.msg})") from None
    if isinstance(arguments, dict) and len(arguments) == 1:
        (value,) = arguments.values()
        if isinstance(value, str):
            return value
    return json.dumps(arguments, ensure_ascii=False)


def conversation_from_turns(
    turns: Sequence[Turn], row: RowReader, protocol: ResponseProtocol, field: str, id: str
) -> Conversation:
    """The conversation of ``turns`` (module docstring); ``field`` holds the turns."""
    last_user = max((i for i, turn in enumerate(turns) if turn.role == "user"), default=None)
    if last_user is None:
        raise row.error(field, "no user message: the prompt ends with the last user message")
    prompt = []
    for turn in turns[: last_user + 1]:
        if turn.role == "tool" or turn.calls:
            raise row.error(
                turn.field,
                "a tool call or result before the last user message: only the response may use tools",
            )
        prompt.append(ChatMessage(turn.role, turn.text))
    response = ResponseBuilder(protocol, row)
    waiting: deque[Call] = deque()
    for turn in turns[last_user + 1 :]:
        if turn.role == "tool":
            response.add_result(turn.text, turn.field)
        elif turn.role == "assistant":
            response.add_text(turn.text, turn.field, inline=True)
            waiting.extend(turn.calls)
        else:
            raise row.error(turn.field, f"a {turn.role} message after the last user message")
        if waiting:
            call = waiting.popleft()
            response.add_call(call.name, call_body(call, row), f"{call.field}.name")
    return Conversation(id, tuple(prompt), response.segments(field))


def openai_turns(row: RowReader) -> list[Turn]:
    """The turns of an OpenAI ``messages`` row: ``{role, content, tool_calls?}`` each."""
    messages = _list(row, "messages")
    turns = []
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            raise row.error(field, f"expected an object {{role, content}}, got {type(message).__name__}")
        role = message.get("role")
        if role not in OPENAI_ROLES:
            raise row.error(f"{field}.role", f"unknown role {role!r}; expected one of {list(OPENAI_ROLES)}")
        calls = _openai_calls(row, message.get("tool_calls"), f"{field}.tool_calls")
        text = _content(row, message.get("content"), f"{field}.content", optional=bool(calls))
        turns.append(Turn(role, text, f"{field}.content", calls))
    return turns


def sharegpt_turns(row: RowReader) -> list[Turn]:
    """The turns of a ShareGPT row: ``conversations`` of ``{from, value}`` (or ``{role, content}``)
    and an optional ``system`` string first."""
    turns = []
    if row.data.get("system") is not None:
        turns.append(Turn("system", _content(row, row.data["system"], "system"), "system"))
    for index, item in enumerate(_list(row, "conversations")):
        field = f"conversations[{index}]"
        if not isinstance(item, dict):
            raise row.error(field, f"expected an object {{from, value}}, got {type(item).__name__}")
        role_key, text_key = ("from", "value") if item.get("from") is not None else ("role", "content")
        name = item.get(role_key)
        role = SHAREGPT_ROLES.get(name) if isinstance(name, str) else None
        if role is None:
            raise row.error(
                f"{field}.{role_key}", f"unknown role {name!r}; expected one of {list(SHAREGPT_ROLES)}"
            )
        where = f"{field}.{text_key}"
        text = _content(row, item.get(text_key), where)
        if role == "function_call":
            turns.append(Turn("assistant", "", where, _sharegpt_calls(row, text, where)))
        else:
            turns.append(Turn(role, text, where))
    return turns


def _list(row: RowReader, field: str) -> list[Any]:
    value = row.get(field)
    if not isinstance(value, list):
        raise row.error(field, f"expected a list, got {type(value).__name__}")
    return value


def _content(row: RowReader, value: Any, field: str, optional: bool = False) -> str:
    """A message's text: a string, or a list of ``{type: text, text}`` parts (joined); null only
    where ``optional`` (an assistant message with tool calls)."""
    if value is None and optional:
        return ""
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in value):
        return "".join(part["text"] for part in value)
    if not isinstance(value, str):
        raise row.error(field, f"expected a string (or a list of text parts), got {type(value).__name__}")
    return value


def _openai_calls(row: RowReader, value: Any, field: str) -> tuple[Call, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise row.error(field, f"expected a list of tool calls, got {type(value).__name__}")
    calls = []
    for index, item in enumerate(value):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict):
            raise row.error(f"{field}[{index}]", "expected {type: function, function: {name, arguments}}")
        calls.append(_call(row, function, f"{field}[{index}].function"))
    return tuple(calls)


def _sharegpt_calls(row: RowReader, text: str, field: str) -> tuple[Call, ...]:
    """A ``function_call`` value: JSON ``{name, arguments}`` or a list of them."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise row.error(field, f"expected JSON {{name, arguments}} ({error.msg})") from None
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, dict) for item in items):
        raise row.error(field, "expected JSON {name, arguments} or a list of them")
    return tuple(_call(row, item, field) for item in items)


def _call(row: RowReader, function: dict[str, Any], field: str) -> Call:
    name = function.get("name")
    if not isinstance(name, str):
        raise row.error(f"{field}.name", f"expected the tool's name, got {type(name).__name__}")
    if function.get("arguments") is None:
        raise row.error(f"{field}.arguments", "missing or null")
    return Call(name, function["arguments"], field)
