"""Tools the policy calls with ``<tag>...</tag>``: the interface, the executor and built-in tools."""

from arpo.tools.base import Tool, ToolResult, ToolStatus
from arpo.tools.calculator import Calculator
from arpo.tools.toolbox import ToolBox

__all__ = ["Calculator", "Tool", "ToolBox", "ToolResult", "ToolStatus"]
