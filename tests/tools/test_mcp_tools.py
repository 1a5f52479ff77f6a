"""MCP servers as tools: a small local MCP server (written and started by the test, over stdio and
over streamable HTTP) whose tools run through a ToolBox with its statuses, timeouts and truncation."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("mcp")

from arpo.tools import ToolStatus  # noqa: E402
from arpo.tools.registry import ToolSpecError, build_toolbox  # noqa: E402

SERVER = '''
import os, sys, time
from pathlib import Path
from mcp.server.mcpserver import MCPServer

app = MCPServer("arpo-test")
Path(sys.argv[1]).write_text(str(os.getpid()))

@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b

@app.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()

@app.tool()
def square(x: int) -> int:
    """Square an integer."""
    return x * x

@app.tool()
def fail(text: str) -> str:
    """Always fails."""
    raise ValueError("boom")

@app.tool()
def nap(seconds: float) -> str:
    """Sleep, then answer."""
    time.sleep(seconds)
    return "awake"

if __name__ == "__main__":
    if len(sys.argv) > 2:
        app.run("streamable-http", port=int(sys.argv[2]))
    else:
        app.run()
'''


@pytest.fixture
def server(tmp_path):
    path = tmp_path / "server.py"
    path.write_text(SERVER)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stdio_server_tools_run_in_a_toolbox_and_stop_with_it(server, tmp_path):
    pid_file = tmp_path / "pid"
    spec = {"mcp": {"command": [sys.executable, str(server), str(pid_file)]}}
    box = build_toolbox([spec], timeout_s=2, max_result_chars=90)
    with box:
        assert box.tags == ["add", "shout", "square", "fail", "nap"]
        assert "Add two integers. Arguments: a: integer, b: integer" in box.get("add").description
        assert "between the tags, the value of text" in box.get("shout").description
        results = box.run_many(
            [
                ("add", '{"a": 2, "b": 40}'),
                ("shout", "hello"),
                ("square", " 12 "),
                ("fail", "x"),
                ("add", "2 40"),
                ("square", "twelve"),
                ("shout", "x" * 200),
            ]
        )
        assert [r.status for r in results] == [ToolStatus.OK] * 3 + [ToolStatus.ERROR] * 3 + [ToolStatus.OK]
        assert [r.text for r in results[:3]] == ["42", "HELLO", "144"]
        assert "fail" in results[3].text
        assert "JSON object" in results[4].text and "expected a, b" in results[4].text
        assert "x must be of type integer" in results[5].text
        assert results[6].truncated and len(results[6].text) < 200
        timed_out = box.run("nap", "30")
        assert timed_out.status is ToolStatus.TIMEOUT
        pid = int(pid_file.read_text())
        assert _alive(pid)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "closing the ToolBox stops the server"


def test_a_spec_picks_tools_and_errors_name_what_is_wrong(server, tmp_path):
    command = [sys.executable, str(server), str(tmp_path / "pid")]
    with build_toolbox([{"mcp": {"command": command}, "tools": ["square"]}]) as box:
        assert box.tags == ["square"]
    with pytest.raises(
        ToolSpecError, match=r"no tool \['cube'\]; it lists \['add', 'fail', 'nap', 'shout', 'square'\]"
    ):
        build_toolbox([{"mcp": {"command": command}, "tools": ["cube"]}])
    crash = [sys.executable, "-c", "import os, sys; sys.stderr.write(os.environ['WHY']); sys.exit(3)"]
    with pytest.raises(ToolSpecError, match="stderr ends with:\ncannot start: no licence"):
        build_toolbox([{"mcp": {"command": crash, "env": {"WHY": "cannot start: no licence"}}}])
    with pytest.raises(ToolSpecError, match="exactly one of mcp.command"):
        build_toolbox([{"mcp": {}}])
    with pytest.raises(ToolSpecError, match="unknown mcp keys"):
        build_toolbox([{"mcp": {"command": command, "port": 1}}])
    with pytest.raises(ToolSpecError, match="cannot be combined"):
        build_toolbox([{"mcp": {"command": command}, "name": "python"}])


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path):
    pid_file = tmp_path / "pid"
    silent = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]
    with pytest.raises(ToolSpecError, match="no tool list within 2"):
        build_toolbox([{"mcp": {"command": silent}, "connect_timeout_s": 2}])
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the server is stopped when the connection is given up"


def test_streamable_http_server(server, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(server), str(tmp_path / "pid"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        spec = {"mcp": {"url": f"http://127.0.0.1:{port}/mcp"}, "tools": ["add"]}
        with build_toolbox([spec]) as box:
            assert box.run("add", '{"a": 1, "b": 2}').text == "3"
    finally:
        process.terminate()
        process.wait(timeout=10)
