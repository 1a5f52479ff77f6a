"""Building tools from specs: built-in tools by name, user tools by import path.

A spec is a mapping with exactly one of

- ``"name"``: a registered tool (``calc``, ``python``, ``search``, or one added with
  :func:`register_tool`), e.g. ``{"name": "python", "timeout_s": 5}``;
- ``"import"``: ``"package.module:Attribute"``, a :class:`~arpo.tools.base.Tool` subclass or a
  function returning a Tool, e.g. ``{"import": "mypkg.tools:Wiki", "lang": "en"}``, so a user
  adds a tool without editing this package;
- ``"function"``: ``"package.module:function"``, a plain typed Python function with a docstring,
  called as a tool (:class:`~arpo.tools.function.FunctionTool`), e.g. ``{"function":
  "mypkg.tools:convert_units"}``;

and every other key is passed to it as a keyword argument. A spec with ``"mcp"`` instead
(``{"mcp": {"command": ["python", "server.py"]}, "tools": ["add"]}``) stands for the tools of an
MCP server (:mod:`arpo.tools.mcp`): :func:`build_tools` and :func:`build_toolbox` take it. Parameters are checked against the
factory's signature before it is called, and every failure raises :class:`ToolSpecError` naming
the spec and the key or value at fault. Built-in tools are imported only when built.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from arpo.core.import_path import import_object
from arpo.tools.base import Tool
from arpo.tools.function import FunctionTool
from arpo.tools.toolbox import ToolBox

ToolFactory = Callable[..., Tool]

_REGISTRY: dict[str, ToolFactory | str] = {
    "calc": "arpo.tools.calculator:Calculator",
    "python": "arpo.tools.python:PythonTool",
    "search": "arpo.tools.search:build_search_tool",
}
SPEC_KEYS = ("name", "import", "function")


class ToolSpecError(ValueError):
    """A tool spec is malformed or names something that cannot be built."""


def register_tool(name: str, factory: ToolFactory | str) -> None:
    """Make ``{"name": name, ...}`` build tools with ``factory`` (a callable or ``"module:Attribute"``)."""
    if name in _REGISTRY:
        raise ToolSpecError(f"a tool named {name!r} is already registered")
    _REGISTRY[name] = factory


def known_tools() -> list[str]:
    return sorted(_REGISTRY)


def call_with_params(factory: Callable[..., Any], params: Mapping[str, Any], context: str) -> Any:
    """``factory(**params)``, with unknown or missing parameters reported against the signature."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no introspectable signature: let the call report
        signature = None
    if signature is not None:
        try:
            signature.bind(**params)
        except TypeError as exc:
            accepted = [name for name in signature.parameters if name not in ("self", "args", "kwargs")]
            raise ToolSpecError(f"{context}: {exc}; accepted parameters: {', '.join(accepted)}") from None
    try:
        return factory(**params)
    except ToolSpecError as exc:
        raise ToolSpecError(f"{context}: {exc}") from exc
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as exc:
        raise ToolSpecError(f"{context}: {exc}") from exc


def build_tool(spec: Mapping[str, Any]) -> Tool:
    """The tool a spec describes; see the module docstring."""
    if not isinstance(spec, Mapping):
        raise ToolSpecError(f"a tool spec must be a mapping like {{'name': 'python'}}, got {spec!r}")
    chosen = [key for key in SPEC_KEYS if key in spec]
    if len(chosen) != 1:
        raise ToolSpecError(
            f"tool spec {dict(spec)!r} needs exactly one of 'name' (one of {', '.join(known_tools())}), "
            "'import' ('package.module:Attribute'), 'function' ('package.module:function') or 'mcp' "
            "(an MCP server's tools)"
        )
    key = chosen[0]
    target = spec[key]
    if not isinstance(target, str):
        raise ToolSpecError(f"tool spec key {key!r} must be a string, got {target!r}")
    if key == "name":
        if target not in _REGISTRY:
            raise ToolSpecError(f"unknown tool name {target!r}; known: {', '.join(known_tools())}")
        factory = _REGISTRY[target]
    elif key == "function":
        try:
            function = import_object(target)
        except ValueError as exc:
            raise ToolSpecError(f"tool spec function={target!r}: {exc}") from None
        factory = functools.partial(FunctionTool, function)
    else:
        factory = target
    if isinstance(factory, str):
        try:
            factory = import_object(factory)
        except ValueError as exc:
            raise ToolSpecError(f"tool spec {key}={target!r}: {exc}") from None
    if not callable(factory):
        raise ToolSpecError(f"tool spec {key}={target!r} is not a Tool class or factory: {factory!r}")
    params = {k: v for k, v in spec.items() if k != key}
    tool = call_with_params(factory, params, f"tool spec {key}={target!r}")
    if not isinstance(tool, Tool):
        raise ToolSpecError(f"tool spec {key}={target!r} produced {type(tool).__name__}, not an arpo Tool")
    return tool


def build_tools(spec: Mapping[str, Any]) -> list[Tool]:
    """The tools a spec describes: those of an MCP server for ``{"mcp": ...}``, else :func:`build_tool`'s one."""
    if not (isinstance(spec, Mapping) and "mcp" in spec):
        return [build_tool(spec)]
    if any(key in spec for key in SPEC_KEYS):
        raise ToolSpecError(f"tool spec {dict(spec)!r}: 'mcp' cannot be combined with 'name' or 'import'")
    from arpo.tools.mcp import build_mcp_tools

    return call_with_params(build_mcp_tools, dict(spec), f"tool spec mcp={spec['mcp']!r}")


def build_toolbox(specs: Sequence[Mapping[str, Any]], **toolbox_options: Any) -> ToolBox:
    """A :class:`ToolBox` of the tools ``specs`` describe; options go to the ToolBox."""
    tools: list[Tool] = []
    try:
        for spec in specs:
            tools.extend(build_tools(spec))
        return ToolBox(tools, **toolbox_options)
    except BaseException:
        for tool in tools:
            tool.close()
        raise
