"""The Tool interface: what the rollout loop needs from a tool.

A tool is identified by its *tag*: the model calls it by writing ``<tag>call text</tag>``
(ARPO's ``<python>...</python>`` and ``<search>...</search>``, DESIGN.md §1); the rollout loop
stops generation at the closing tag, passes the text between the tags to :meth:`Tool.run`, and
appends the returned text, wrapped in result tags, as a ``tool`` segment of the rollout tree.

``run`` never raises for a bad call: a tool reports problems through :class:`ToolResult.status`
so the model sees a short, deterministic message and the metrics can count it. Exceptions that
escape anyway are caught by the executor (:class:`arpo.tools.toolbox.ToolBox`) and turned into
``error`` results.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

TAG_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
SCALARS = {"integer": int, "number": float}
"""JSON-schema scalar types a one-parameter call's text is converted to (:meth:`Tool.parse_call`)."""


class ToolStatus(str, Enum):
    """Outcome of one tool call."""

    OK = "ok"
    """The tool ran and returned its answer."""
    ERROR = "error"
    """The call was malformed or the tool failed; the text says why."""
    TIMEOUT = "timeout"
    """The call exceeded its wall-clock limit and was stopped."""
    LIMIT = "limit"
    """A budget stopped the call: it was refused without running (e.g. the trajectory's tool-call
    limit was reached, the code is too long) or a resource limit ended it (memory, file size,
    output size)."""


@dataclass(frozen=True)
class ToolResult:
    """What a tool call returns: the text shown to the model plus structured metadata."""

    text: str
    status: ToolStatus = ToolStatus.OK
    latency_s: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status is ToolStatus.OK


class Tool(ABC):
    """A tool the policy can call with ``<tag>call</tag>``.

    Subclasses set :attr:`tag` (the call tag, e.g. ``"python"``) and :attr:`description` (one
    paragraph for the system prompt), and implement :meth:`run`. ``run`` may be called from
    several threads at once. Tools with counters override :meth:`metrics`; tools holding
    processes, files or connections override :meth:`close`.
    """

    tag: str
    description: str
    function_description: str | None = None
    """The description in the tool's function schema (:meth:`schema`), for chat templates that
    describe tools as JSON; None: :attr:`description`. Set it when the description talks about tags."""
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "What the tool reads between its tags."}},
        "required": ["input"],
    }
    """The JSON schema of the tool's arguments when it is called natively (``tool_format:
    chat_template``): :meth:`call_text` turns them into the text :meth:`run` takes."""

    def __init__(self) -> None:
        tag = getattr(self, "tag", None)
        if not isinstance(tag, str) or not TAG_PATTERN.match(tag):
            raise ValueError(
                f"{type(self).__name__}.tag must be a word like 'python' (letters, digits, '_' or '-'), "
                f"got {tag!r}"
            )
        if not isinstance(getattr(self, "description", None), str):
            raise ValueError(f"{type(self).__name__}.description must be a string")

    @property
    def open_tag(self) -> str:
        return f"<{self.tag}>"

    @property
    def close_tag(self) -> str:
        return f"</{self.tag}>"

    def schema(self) -> dict[str, Any]:
        """The tool as a function for a chat template's ``tools``: ``{"type": "function", "function":
        {"name", "description", "parameters"}}`` (the layout transformers' templates read)."""
        description = self.function_description or self.description
        return {
            "type": "function",
            "function": {"name": self.tag, "description": description, "parameters": self.parameters},
        }

    def call_text(self, arguments: dict[str, Any]) -> str:
        """The text :meth:`run` takes for a native call's JSON arguments (:func:`text_from_arguments`);
        ValueError naming a missing or unknown argument."""
        try:
            return text_from_arguments(self.parameters, arguments)
        except ValueError as exc:
            raise ValueError(f"{self.tag}: {exc}") from None

    def parse_call(self, call: str) -> dict[str, Any]:
        """The JSON arguments a call's text stands for (:func:`arguments_from_text`), the inverse of
        :meth:`call_text`; ValueError saying what was expected."""
        return arguments_from_text(self.parameters, call)

    @abstractmethod
    def run(self, call: str) -> ToolResult:
        """Execute one call (the text between the tags) and return its result."""

    def metrics(self) -> dict[str, int]:
        """Counters since construction (e.g. cache hits); empty by default."""
        return {}

    def close(self) -> None:  # noqa: B027  (optional hook, deliberately empty by default)
        """Release processes, files and connections; the default holds none."""


def _type(prop: dict[str, Any]) -> tuple[str | None, bool]:
    """A JSON-schema property's type and whether it may be null (``["integer", "null"]``)."""
    kind = prop.get("type")
    if isinstance(kind, list):
        others = [k for k in kind if k != "null"]
        return (others[0] if len(others) == 1 else None), "null" in kind
    return kind, kind == "null"


def text_from_arguments(parameters: dict[str, Any], arguments: dict[str, Any]) -> str:
    """A call's text for JSON ``arguments`` under the JSON schema ``parameters``: a tool with one
    parameter gets its value (a string as is, anything else as JSON; nothing when it is optional
    and absent), others the JSON object."""
    properties = parameters.get("properties", {})
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        raise ValueError(f"no argument {unknown}; the arguments: {', '.join(properties) or 'none'}")
    missing = [name for name in parameters.get("required", []) if name not in arguments]
    if missing:
        raise ValueError(f"missing the argument(s) {missing}")
    if len(properties) != 1:
        return json.dumps(arguments)
    (name,) = properties
    if name not in arguments:
        return ""
    value = arguments[name]
    return value if isinstance(value, str) else json.dumps(value)


def arguments_from_text(parameters: dict[str, Any], text: str) -> dict[str, Any]:
    """The inverse of :func:`text_from_arguments`: a tool with one parameter takes the text as its
    value (converted to an integer, number or boolean, ``null`` for a nullable one, parsed as
    JSON for an array or object, as the schema says; no argument when the text is empty and the
    parameter optional), others a JSON object. ValueError saying what was expected."""
    properties = parameters.get("properties", {})
    if len(properties) == 1:
        (name, prop), stripped = next(iter(properties.items())), text.strip()
        kind, nullable = _type(prop)
        if not stripped and name not in parameters.get("required", []):
            return {}
        if nullable and stripped == "null":
            return {name: None}
        if kind == "boolean":
            if stripped.lower() not in ("true", "false"):
                raise ValueError(f"{name} must be true or false, got {stripped!r}")
            return {name: stripped.lower() == "true"}
        try:
            if kind in SCALARS:
                return {name: SCALARS[kind](stripped)}
            return {name: json.loads(stripped) if kind in ("array", "object") else text}
        except ValueError:
            raise ValueError(f"{name} must be of type {kind}, got {stripped!r}") from None
    try:
        arguments = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"the arguments must be a JSON object ({exc.msg} at char {exc.pos})") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"the arguments must be a JSON object, got {type(arguments).__name__}")
    return arguments
