"""Hostile code through the Python tool, in each isolation mode (``hostile_tool`` is parametrized
over namespaces and guard): every case is contained with a clear result, nothing it started
outlives the call, and the test process stays healthy."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arpo.tools.base import ToolStatus
from arpo.tools.python import PythonTool

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

REFUSALS = ("Read-only file system", "not allowed", "No such file or directory")
"""How a write outside the working directory fails: read-only mounts (namespaces mode, paths the
sandbox shows), absent folders (namespaces mode: the host's folders do not exist in the sandbox's
root), the audit hook (guard mode)."""


def test_busy_loop_is_stopped_by_the_cpu_or_wall_limit(hostile_tool: PythonTool) -> None:
    result = hostile_tool.run("while True:\n    pass")
    assert result.status is ToolStatus.TIMEOUT
    assert "CPU time limit" in result.text or "Timed out" in result.text


def test_sleeping_loop_is_killed_at_the_wall_timeout(hostile_tool: PythonTool) -> None:
    result = hostile_tool.run("import time\nprint('started')\nwhile True:\n    time.sleep(0.1)")
    assert result.status is ToolStatus.TIMEOUT
    assert result.text == "started\nTimed out after 3 s; the process was killed."


def test_fork_bomb_is_capped_by_the_process_limit(hostile_tool: PythonTool) -> None:
    code = (
        "import os, time\n"
        "children = 0\n"
        "for _ in range(10_000):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "    except OSError as exc:\n"
        "        print('fork refused after', children, 'children:', type(exc).__name__)\n"
        "        break\n"
        "    children += 1\n"
    )
    result = hostile_tool.run(code)
    assert result.status is ToolStatus.OK, result.text
    assert result.text.startswith("fork refused after ")
    assert int(result.text.split()[3]) < hostile_tool.limits.max_processes


def test_classic_fork_bomb_ends_and_leaves_nothing(hostile_tool: PythonTool) -> None:
    result = hostile_tool.run("import os\nwhile True:\n    os.fork()")
    assert result.status is not ToolStatus.OK
    assert "BlockingIOError" in result.text or "PermissionError" in result.text or "Timed out" in result.text


@pytest.mark.parametrize(
    "code",
    [
        "x = bytearray(8 * 1024**3)",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024**2))",
    ],
    ids=["one-huge-allocation", "growing"],
)
def test_memory_bomb_hits_the_memory_limit(hostile_tool: PythonTool, code: str) -> None:
    result = hostile_tool.run(code)
    assert result.status is ToolStatus.LIMIT
    assert result.text == "MemoryError: the memory limit was reached"


def test_a_gigabyte_of_output_is_cut_and_the_process_killed(hostile_tool: PythonTool) -> None:
    code = "import sys\nblock = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(block)"
    result = hostile_tool.run(code)
    assert result.status is ToolStatus.LIMIT
    assert result.text.endswith(
        f"Output exceeded {hostile_tool.limits.max_output_bytes} bytes; the process was killed."
    )
    assert len(result.text) < hostile_tool.limits.max_output_bytes + 200


def test_a_file_larger_than_the_file_size_limit_is_refused(hostile_tool: PythonTool) -> None:
    result = hostile_tool.run("with open('big.bin', 'wb') as f:\n    f.write(b'0' * (8 * 1024**2))")
    assert result.status is ToolStatus.LIMIT
    assert result.text.endswith("OSError: [Errno 27] File too large")


def test_filling_the_disk_stops_at_the_working_directory_size(hostile_tool: PythonTool) -> None:
    if hostile_tool.isolation != "namespaces":
        pytest.skip("guard mode bounds each file (RLIMIT_FSIZE), not the total written")
    code = "for i in range(100):\n    with open(f'part{i}.bin', 'wb') as f:\n        f.write(b'0' * (3 * 1024**2))"
    result = hostile_tool.run(code)
    assert result.status is ToolStatus.LIMIT
    assert result.text.endswith("OSError: [Errno 28] No space left on device")


def test_writing_outside_the_working_directory_fails(
    hostile_tool: PythonTool, world_writable_dir: Path
) -> None:
    target = world_writable_dir / "escaped.txt"
    result = hostile_tool.run(f"open({str(target)!r}, 'w').write('escaped')")
    assert result.status is ToolStatus.ERROR
    assert any(reason in result.text for reason in REFUSALS), result.text
    assert not target.exists()


def test_deleting_project_files_fails(hostile_tool: PythonTool, world_writable_dir: Path) -> None:
    project = world_writable_dir / "project"
    (project / "src").mkdir(parents=True)
    victim = project / "src" / "important.py"
    victim.write_text("KEEP = True\n")
    for path in (project, project / "src"):
        path.chmod(0o777)
    victim.chmod(0o666)
    code = f"import os, shutil\nos.remove({str(victim)!r})\nshutil.rmtree({str(project)!r})"
    result = hostile_tool.run(code)
    assert result.status is ToolStatus.ERROR
    assert any(reason in result.text for reason in REFUSALS), result.text
    assert victim.read_text() == "KEEP = True\n"


def test_the_parent_environment_is_not_visible(
    hostile_tool: PythonTool, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "arpo-test-secret-" + os.urandom(4).hex()
    monkeypatch.setenv("ARPO_TEST_SECRET", secret)
    code = (
        "import os, glob\n"
        "print(sorted(os.environ))\n"
        "found = []\n"
        f"for path in glob.glob('/proc/[0-9]*/environ') + ['/proc/{os.getpid()}/environ']:\n"
        "    try:\n"
        "        with open(path, 'rb') as f:\n"
        f"            if {secret.encode()!r} in f.read():\n"
        "                found.append(path)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('found:', found)\n"
    )
    result = hostile_tool.run(code)
    assert result.status is ToolStatus.OK, result.text
    assert "ARPO_TEST_SECRET" not in result.text
    assert result.text.splitlines()[-1] == "found: []"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    yield server
    server.close()


def test_network_connections_fail(hostile_tool: PythonTool, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    result = hostile_tool.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
    assert result.status is ToolStatus.ERROR
    assert "Network is unreachable" in result.text or "network access is not allowed" in result.text, (
        result.text
    )
    with pytest.raises(TimeoutError):
        listener.accept()


@pytest.mark.parametrize("target", ["test process", "parent"])
def test_signalling_the_parent_process_fails(hostile_tool: PythonTool, target: str) -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        pid = str(os.getpid()) if target == "test process" else "os.getppid()"
        result = hostile_tool.run(f"import os, signal\nos.kill({pid}, signal.SIGUSR1)\nprint('sent')")
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert received == []
    assert result.status is not ToolStatus.OK, result.text
    assert "sent" not in result.text


def test_the_tool_still_works_after_hostile_code(hostile_tool: PythonTool) -> None:
    assert hostile_tool.run("sum(range(10))").text == "45"
