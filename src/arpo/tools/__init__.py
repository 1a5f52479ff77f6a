"""Tools the policy calls with ``<tag>...</tag>``: the interface, the executor, the registry and built-in tools.

Built-in tools: ``calc`` (:class:`Calculator`), ``python`` (:class:`PythonTool`, sandboxed) and
``search`` (:class:`SearchTool` with a ``bm25``, ``replay`` or ``http`` backend). Build them from
specs with :func:`build_tool` / :func:`build_toolbox`; a ``{mcp: ...}`` spec stands for the tools
of an MCP server (:mod:`arpo.tools.mcp`). docs/tools.md documents every option.
"""

from arpo.tools.base import Tool, ToolResult, ToolStatus
from arpo.tools.calculator import Calculator
from arpo.tools.python import PythonTool
from arpo.tools.registry import (
    ToolSpecError,
    build_tool,
    build_toolbox,
    build_tools,
    known_tools,
    register_tool,
)
from arpo.tools.search import SearchBackend, SearchTool
from arpo.tools.toolbox import ToolBox

__all__ = [
    "Calculator",
    "PythonTool",
    "SearchBackend",
    "SearchTool",
    "Tool",
    "ToolBox",
    "ToolResult",
    "ToolSpecError",
    "ToolStatus",
    "build_tool",
    "build_toolbox",
    "build_tools",
    "known_tools",
    "register_tool",
]
