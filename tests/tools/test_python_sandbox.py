"""The Python tool's behaviour on ordinary code: output, notebook-style display, error text,
per-call working directory and environment, limits, concurrency through a ToolBox."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from arpo.tools.base import ToolStatus
from arpo.tools.python import NO_OUTPUT, PythonTool, strip_code_fence
from arpo.tools.toolbox import ToolBox

from .conftest import ISOLATIONS, skip_unless_isolation_available


@pytest.fixture(scope="module")
def tool() -> PythonTool:
    return PythonTool(timeout_s=20.0)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("x = 6 * 7\nx", "42"),
        ("print('a')\nprint('b')", "a\nb"),
        ("'text'", "'text'"),
        ("print('shown')\nNone", "shown"),
        ("def f(n):\n    return n * 2\n\nf(21)", "42"),
        ("import math\nmath.factorial(20)", "2432902008176640000"),
        ("pass", NO_OUTPUT),
        ("```python\nprint(1 + 1)\n```", "2"),
    ],
)
def test_output_and_trailing_expression(tool: PythonTool, code: str, expected: str) -> None:
    result = tool.run(code)
    assert result.status is ToolStatus.OK, result.text
    assert result.text == expected


def test_strip_code_fence_leaves_plain_code_alone() -> None:
    assert strip_code_fence("print('```')") == "print('```')"
    assert strip_code_fence("```py\nx = 1\n```") == "x = 1\n"


def test_exception_text_is_short_deterministic_and_free_of_host_paths(tool: PythonTool) -> None:
    code = "import json\nprint('before')\n\ndef parse():\n    return json.loads('{')\n\nparse()"
    first, second = tool.run(code), tool.run(code)
    assert first.status is ToolStatus.ERROR
    assert first.text == second.text
    assert first.text == (
        "before\n"
        "Traceback (most recent call last):\n"
        "  line 7, in <module>\n"
        "    parse()\n"
        "  line 5, in parse\n"
        "    return json.loads('{')\n"
        "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_host_paths_in_messages_are_hidden(isolation: str) -> None:
    """The interpreter's prefix is hidden; the working directory is the sandbox's own ``/tmp`` in
    namespaces mode (the same on every machine) and a hidden host folder in guard mode."""
    skip_unless_isolation_available(isolation)
    tool = PythonTool(isolation=isolation)
    result = tool.run("import os, json\nraise RuntimeError(os.getcwd() + ' | ' + json.__file__)")
    tool.close()
    assert result.status is ToolStatus.ERROR
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    workdir = "/tmp" if isolation == "namespaces" else "..."
    assert result.text.endswith(f"RuntimeError: {workdir} | .../lib/python{version}/json/__init__.py")


def test_syntax_error(tool: PythonTool) -> None:
    result = tool.run("for i in range(3)\n    print(i)")
    assert result.status is ToolStatus.ERROR
    assert result.text == "  line 1\n    for i in range(3)\nSyntaxError: expected ':'"


def test_sys_exit_zero_is_ok_and_other_statuses_are_errors(tool: PythonTool) -> None:
    assert tool.run("import sys\nprint('done')\nsys.exit(0)").text == "done"
    result = tool.run("import sys\nsys.exit(3)")
    assert (result.status, result.text) == (ToolStatus.ERROR, "SystemExit: 3")


def test_stdin_is_empty(tool: PythonTool) -> None:
    result = tool.run("input()")
    assert result.status is ToolStatus.ERROR
    assert result.text.endswith("EOFError: EOF when reading a line")


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_each_call_gets_a_fresh_working_directory_that_is_removed(isolation: str) -> None:
    skip_unless_isolation_available(isolation)
    tool = PythonTool(isolation=isolation)
    first = tool.run(
        "import os\nopen('note.txt', 'w').write('x')\nprint(os.getcwd())\nsorted(os.listdir('.'))"
    )
    second = tool.run("import os\nsorted(os.listdir('.'))")
    tool.close()
    workdir, listing = first.text.splitlines()
    # namespaces mode: an interpreter prefix under /tmp (a virtualenv in a temporary clone) is
    # bound read-only inside the working directory
    shown = [] if isolation == "guard" else prefix_folders_under_tmp()
    assert listing == str(sorted(["note.txt", *shown]))
    assert second.text == str(shown)
    if isolation == "guard":  # a host folder, removed after the call
        assert not os.path.exists(workdir)
    else:  # the sandbox's own tmpfs: nothing of it on the host
        assert workdir == "/tmp"
        assert not os.path.exists("/tmp/note.txt")


def prefix_folders_under_tmp() -> list[str]:
    """Top-level folders of ``/tmp`` holding one of the interpreter's prefixes, sorted."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return sorted({p.split("/")[2] for p in prefixes if p.startswith("/tmp/")})


def test_no_state_is_kept_between_calls(tool: PythonTool) -> None:
    assert tool.run("secret_value = 1").status is ToolStatus.OK
    assert tool.run("secret_value").text.endswith("NameError: name 'secret_value' is not defined")


def test_environment_is_scrubbed_and_extendable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARPO_PARENT_ONLY", "1")
    tool = PythonTool(env={"ARPO_GIVEN": "yes"})
    result = tool.run(
        "import os\nprint(os.environ.get('ARPO_PARENT_ONLY'), os.environ['ARPO_GIVEN'])\nos.environ['HOME'] == os.getcwd()"
    )
    assert result.text == "None yes\nTrue"


def test_code_is_run_exactly_once_even_with_empty_output(
    tool: PythonTool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = tool.runner.run
    monkeypatch.setattr(tool.runner, "run", lambda code: calls.append(code) or original(code))
    assert tool.run("x = 1").text == NO_OUTPUT
    assert len(calls) == 1


def test_code_longer_than_the_limit_is_refused_without_running() -> None:
    tool = PythonTool(max_code_chars=10)
    result = tool.run("print('this is too long')")
    assert result.status is ToolStatus.LIMIT
    assert "limit is 10" in result.text


def test_empty_call_is_an_error(tool: PythonTool) -> None:
    assert tool.run("   \n").status is ToolStatus.ERROR


def test_cpu_limit_ends_a_busy_loop_with_a_timeout_status() -> None:
    tool = PythonTool(cpu_s=1, timeout_s=20.0)
    result = tool.run("while True:\n    pass")
    assert result.status is ToolStatus.TIMEOUT
    assert result.text == "CPU time limit of 1 s exceeded."


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout_s": 0}, "timeout_s must be > 0"),
        ({"memory_mb": -1}, "memory_mb must be > 0"),
        ({"isolation": "chroot"}, "isolation must be one of"),
        ({"max_code_chars": 0}, "max_code_chars must be > 0"),
    ],
)
def test_bad_configuration_is_rejected_with_the_field_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PythonTool(**kwargs)


def test_close_kills_a_running_call() -> None:
    tool = PythonTool(timeout_s=60.0, cpu_s=60)
    results = []
    worker = threading.Thread(target=lambda: results.append(tool.run("import time\ntime.sleep(60)")))
    worker.start()
    deadline = time.monotonic() + 30
    while not tool.runner._active and time.monotonic() < deadline:
        time.sleep(0.01)
    tool.close()
    worker.join(30)
    assert not worker.is_alive()
    assert results[0].status is ToolStatus.ERROR
    assert "killed by signal 9" in results[0].text


def test_64_concurrent_calls_through_an_8_worker_pool_are_all_correct() -> None:
    with ToolBox([PythonTool(timeout_s=60.0)], max_workers=8, timeout_s=120.0) as box:
        results = box.run_many([("python", f"n = {i}\nprint(n * n)") for i in range(64)])
    assert [r.status for r in results] == [ToolStatus.OK] * 64
    assert [r.text for r in results] == [str(i * i) for i in range(64)]
    assert box.metrics()["python/ok"] == 64


def test_a_dead_sandbox_server_is_restarted_on_the_next_call() -> None:
    tool = PythonTool(timeout_s=20.0)
    assert tool.run("print(1)").text == "1"
    first = tool.runner.server_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    os.waitpid(first, 0)
    assert tool.run("print(2)").text == "2"
    assert tool.runner.server_pid not in (None, first)
    tool.close()


def test_closing_the_tool_stops_its_sandbox_server() -> None:
    tool = PythonTool(timeout_s=20.0)
    assert tool.run("print(1)").text == "1"
    server = tool.runner.server_pid
    assert server is not None
    tool.close()
    assert tool.runner.server_pid is None
    with pytest.raises(ChildProcessError):  # already reaped by close(): no zombie, no process
        os.waitpid(server, os.WNOHANG)
    with pytest.raises(RuntimeError, match="the python tool was closed"):  # and no new server starts
        tool.run("print(2)")
    assert tool.runner.server_pid is None
