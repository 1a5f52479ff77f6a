"""A typed Python function as a tool: ``{function: "package.module:function"}`` in a tool spec.

The way TRL's GRPOTrainer and ``apply_chat_template(tools=[...])`` take tools: a function with
type hints and a Google-style docstring (a summary line, then ``Args:`` with one line per
parameter). Its JSON schema comes from transformers' ``get_json_schema``, which reads exactly
those; the tag is the function's name (or ``tag``). Calls:

* natively (``tool_format: chat_template``), the parsed arguments are the function's keyword
  arguments;
* in the tag protocol, a one-parameter function takes the text between its tags as that value
  (converted as its type hint says), others a JSON object of arguments
  (:meth:`~arpo.tools.base.Tool.parse_call`).

The result is the return value as text (``str``; a dict or list as JSON). Arguments that do not
fit the signature, and any exception the function raises, are ``error`` results naming the
exception, which the model sees. The function runs in the trainer's process, in a ToolBox worker
thread, with the ToolBox's timeout (a call that overruns is abandoned, not stopped): give it only
trusted, quick code; untrusted code belongs in the ``python`` tool's sandbox.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from arpo.tools.base import Tool, ToolResult, ToolStatus


class FunctionTool(Tool):
    """A Python function called as a tool (module docstring)."""

    def __init__(self, function: Callable[..., Any], tag: str | None = None) -> None:
        from transformers.utils import get_json_schema

        try:
            schema = get_json_schema(function)["function"]
        except Exception as exc:  # noqa: BLE001 - transformers raises several kinds for a bad docstring
            raise ValueError(
                f"{getattr(function, '__name__', function)!r} cannot be a tool: {exc} (it needs type hints and a "
                "docstring with a summary and an Args: line per parameter)"
            ) from None
        self.function = function
        self.tag = tag or schema["name"]
        self.parameters = schema["parameters"]  # type: ignore[misc]
        self.function_description = schema["description"]
        arguments = ", ".join(self.parameters.get("properties", {}))
        self.description = f"{self.tag}({arguments}): {self.function_description}"
        self.signature = inspect.signature(function)
        super().__init__()

    def run(self, call: str) -> ToolResult:
        try:
            arguments = self.parse_call(call)
            self.signature.bind(**arguments)
        except (ValueError, TypeError) as exc:
            return ToolResult(f"{self.tag}: {exc}", ToolStatus.ERROR)
        try:
            value = self.function(**arguments)
        except Exception as exc:  # noqa: BLE001 - the model sees what went wrong, as with any tool
            return ToolResult(f"{self.tag} failed: {type(exc).__name__}: {exc}", ToolStatus.ERROR)
        return ToolResult(json.dumps(value) if isinstance(value, dict | list) else str(value))
