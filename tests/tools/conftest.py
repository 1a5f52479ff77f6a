"""Shared fixtures for the tool tests: sandboxed Python tools per isolation mode, process checks."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arpo.tools.python import PythonTool
from arpo.tools.sandbox.runner import namespaces_failure

from .sample_corpus import DOCUMENTS, write_corpus

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
ISOLATIONS = ["namespaces", "guard"]


def skip_unless_isolation_available(isolation: str) -> None:
    if isolation == "namespaces":
        failure = namespaces_failure(sys.executable)
        if failure is not None:
            pytest.skip(f"Linux namespaces unavailable here: {failure}")


def processes_of_uid(uid: int) -> list[int]:
    """PIDs of live processes whose real uid is ``uid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        if int(uid_line.split()[1]) == uid:
            found.append(int(entry))
    return found


def children_of(pid: int) -> list[int]:
    """PIDs of live (or zombie) processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


@pytest.fixture(scope="module", params=ISOLATIONS)
def hostile_tool(request: pytest.FixtureRequest) -> Iterator[PythonTool]:
    """A Python tool with small limits; as root it runs every call as one pinned, unused uid."""
    skip_unless_isolation_available(request.param)
    uid = 1_900_000_000 + secrets.randbelow(10_000_000) if os.geteuid() == 0 else None
    tool = PythonTool(
        isolation=request.param,
        timeout_s=3.0,
        cpu_s=2,
        memory_mb=256,
        file_size_mb=4,
        workdir_mb=16,
        max_processes=8,
        max_output_bytes=64 * 1024,
        sandbox_uid=uid,
    )
    yield tool
    tool.close()


@pytest.fixture
def world_writable_dir() -> Iterator[Path]:
    """A directory under the system temp dir that any uid may write to (so permissions alone protect nothing)."""
    path = Path(tempfile.mkdtemp(prefix="arpo-victim-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def no_leftover_processes(hostile_tool: PythonTool) -> Iterator[None]:
    """After the test: no child of this process remains but the tool's sandbox server, the server
    runs no call, and (as root) no process of the sandbox uid remains."""
    before = set(children_of(os.getpid()))
    yield
    deadline = time.monotonic() + 5.0  # the kernel tears a PID namespace down asynchronously
    while True:
        server = hostile_tool.runner.server_pid
        leftovers = set(children_of(os.getpid())) - before - {server}
        if server is not None:
            leftovers |= set(children_of(server))
        uid = hostile_tool.runner.sandbox_uid
        if uid is not None:
            leftovers |= set(processes_of_uid(uid))
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leftovers, f"processes survived the call: {sorted(leftovers)}"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus.jsonl", DOCUMENTS)
