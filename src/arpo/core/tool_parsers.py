"""Parsers of native tool calls: the text of one assistant turn → the calls it makes.

With ``rollout.tool_format: chat_template`` (:mod:`arpo.tasks.chat_tools`) a model calls tools the
way its chat template taught it, not with ARPO's tags. A parser reads a finished assistant turn
(decoded, special tokens kept) and returns one :class:`ParsedCall` per call, in order. A call it
cannot read is returned with ``error`` set: the rollout does not run it and shows the model that
message as the tool's result, so malformed JSON costs a call and teaches the model, as a failing
tool would. A turn with no call is the final answer.

Built in (``rollout.tool_parser``):

* ``hermes`` (also ``qwen``): ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, any
  number per turn — Qwen2.5/Qwen3, Hermes 2/3 and the many fine-tunes that use their templates.
  ``arguments`` may also be a JSON string holding the object; an opened ``<tool_call>`` that never
  closes is an error.
* ``llama3_json``: Llama 3.1/3.2's JSON tool calls — the whole turn (after an optional
  ``<|python_tag|>``) is ``{"name": ..., "parameters": {...}}`` (or ``"arguments"``), or several
  such objects separated by ``;``. A turn that does not start with ``{`` has no call.

Any other value is an import path ``"package.module:function"`` of a function with the same
signature, ``(text: str) -> list[ParsedCall]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arpo.core.import_path import builtin_or_import


@dataclass(frozen=True)
class ParsedCall:
    """One tool call of an assistant turn; ``error`` says why it could not be read."""

    name: str
    arguments: dict[str, Any]
    error: str | None = None


Parser = Callable[[str], list[ParsedCall]]

_HERMES = re.compile(r"<tool_call>(.*?)(</tool_call>|$)", re.DOTALL)


def _call(data: Any, arguments_keys: tuple[str, ...]) -> ParsedCall:
    """A call from a decoded JSON value ``{"name": ..., <arguments key>: {...}}``."""
    if not isinstance(data, dict):
        return ParsedCall("", {}, f"a tool call must be a JSON object, got {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        return ParsedCall("", {}, 'a tool call needs a "name" string')
    arguments = next((data[key] for key in arguments_keys if key in data), {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return ParsedCall(name, {}, f"the arguments of {name} are not JSON ({exc.msg} at char {exc.pos})")
    if not isinstance(arguments, dict):
        return ParsedCall(name, {}, f"the arguments of {name} must be a JSON object")
    return ParsedCall(name, arguments)


def parse_hermes(text: str) -> list[ParsedCall]:
    """Hermes/Qwen ``<tool_call>`` JSON blocks (module docstring)."""
    calls = []
    for match in _HERMES.finditer(text):
        body, closed = match.group(1).strip(), bool(match.group(2))
        if not closed:
            calls.append(ParsedCall("", {}, "<tool_call> was not closed with </tool_call>"))
            continue
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            calls.append(ParsedCall("", {}, f"the tool call is not JSON ({exc.msg} at char {exc.pos})"))
            continue
        calls.append(_call(data, ("arguments", "parameters")))
    return calls


def parse_llama3_json(text: str) -> list[ParsedCall]:
    """Llama 3.x JSON tool calls (module docstring)."""
    body = text.replace("<|python_tag|>", "").strip()
    for end in ("<|eom_id|>", "<|eot_id|>"):
        body = body.removesuffix(end).strip()
    if not body.startswith("{"):
        return []
    calls, decoder, position = [], json.JSONDecoder(), 0
    while position < len(body):
        try:
            data, position = decoder.raw_decode(body, position)
        except json.JSONDecodeError as exc:
            return [*calls, ParsedCall("", {}, f"the tool call is not JSON ({exc.msg} at char {exc.pos})")]
        calls.append(_call(data, ("parameters", "arguments")))
        position = len(body) - len(body[position:].lstrip().removeprefix(";").lstrip())
    return calls


PARSERS: dict[str, Parser] = {"hermes": parse_hermes, "qwen": parse_hermes, "llama3_json": parse_llama3_json}


def get_parser(name: str) -> Parser:
    """A built-in parser by name, or a function by import path; ValueError naming the choices."""
    return builtin_or_import(name, PARSERS, "tool parser")
