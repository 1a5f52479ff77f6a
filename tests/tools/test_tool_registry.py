"""Building tools from specs: by registered name, by import path, and the errors for bad specs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from arpo.tools import registry
from arpo.tools.calculator import Calculator
from arpo.tools.python import PythonTool
from arpo.tools.registry import ToolSpecError, build_tool, build_toolbox, register_tool
from arpo.tools.search import SearchTool

USER_MODULE = textwrap.dedent(
    """
    from arpo.tools.base import Tool, ToolResult

    class Shout(Tool):
        tag = "shout"
        description = "shout: repeats the call in capitals"

        def __init__(self, times: int = 1) -> None:
            super().__init__()
            self.times = times

        def run(self, call):
            return ToolResult(" ".join([call.upper()] * self.times))

    def make_shout(times):
        return Shout(times=times)

    NOT_A_TOOL = "just a string"

    def not_a_tool_factory():
        return 42
    """
)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "arpo_test_user_tools.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "arpo_test_user_tools"


def test_builtin_tools_by_name_with_parameters(tmp_path: Path) -> None:
    assert isinstance(build_tool({"name": "calc"}), Calculator)
    python = build_tool({"name": "python", "timeout_s": 5, "memory_mb": 512, "isolation": "guard"})
    assert isinstance(python, PythonTool)
    assert (python.limits.timeout_s, python.limits.memory_mb, python.isolation) == (5, 512, "guard")
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps({"q": "Page 1: a"}))
    search = build_tool({"name": "search", "backend": "replay", "path": str(cache), "tag": "lookup"})
    assert isinstance(search, SearchTool) and search.tag == "lookup"
    assert search.run("q").text == "Page 1: a"


def test_user_tools_by_import_path(user_module: str) -> None:
    shout = build_tool({"import": f"{user_module}:Shout", "times": 2})
    assert shout.tag == "shout" and shout.run("hey").text == "HEY HEY"
    from_factory = build_tool({"import": f"{user_module}:make_shout", "times": 3})
    assert from_factory.run("a").text == "A A A"


def test_registered_user_tool_by_name(user_module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_tool("shout", f"{user_module}:Shout")
    assert "shout" in registry.known_tools()
    assert build_tool({"name": "shout"}).run("x").text == "X"
    with pytest.raises(ToolSpecError, match="'shout' is already registered"):
        register_tool("shout", f"{user_module}:Shout")


def test_build_toolbox_from_specs(user_module: str) -> None:
    with build_toolbox([{"name": "calc"}, {"import": f"{user_module}:Shout"}], max_workers=2) as box:
        assert box.tags == ["calc", "shout"]
        assert [r.text for r in box.run_many([("calc", "1+1"), ("shout", "ok")])] == ["2", "OK"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("python", "must be a mapping"),
        ({}, "needs exactly one of 'name'"),
        ({"name": "calc", "import": "x:y"}, "needs exactly one of 'name'"),
        ({"name": 3}, "key 'name' must be a string"),
        ({"name": "nope"}, "unknown tool name 'nope'; known: calc, python, search"),
        ({"import": "no_colon"}, "must look like 'package.module:attribute'"),
        ({"import": "arpo_no_such_module_zz:Tool"}, "cannot import module 'arpo_no_such_module_zz'"),
        ({"import": "arpo.tools.calculator:Missing"}, "has no attribute 'Missing'"),
        ({"import": "USER:NOT_A_TOOL"}, "is not a Tool class or factory"),
        ({"import": "USER:not_a_tool_factory"}, "produced int, not an arpo Tool"),
        (
            {"name": "calc", "max_exponentt": 3},
            "unexpected keyword argument 'max_exponentt'; accepted parameters: max_exponent",
        ),
        ({"import": "USER:make_shout"}, "missing a required argument: 'times'"),
        ({"name": "python", "timeout_s": -1}, "tool spec name='python': sandbox limit timeout_s must be > 0"),
        (
            {"name": "search", "backend": "google"},
            "unknown search backend 'google'; known: bm25, dense, replay, http",
        ),
        (
            {"name": "search", "backend": "replay", "path": "x", "file": "x"},
            "search backend 'replay': .*unexpected keyword argument 'file'",
        ),
        (
            {"name": "search", "backend": "replay", "path": "/no/such/cache.json"},
            "/no/such/cache.json does not exist",
        ),
    ],
)
def test_bad_specs_name_what_is_wrong(spec: object, message: str, user_module: str) -> None:
    if isinstance(spec, dict) and isinstance(spec.get("import"), str):
        spec = {**spec, "import": spec["import"].replace("USER", user_module)}
    with pytest.raises(ToolSpecError, match=message):
        build_tool(spec)  # type: ignore[arg-type]
