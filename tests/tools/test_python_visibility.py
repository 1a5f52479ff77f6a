"""What model-written code can see of the host in namespaces mode: the minimal root of
:mod:`arpo.tools.sandbox.rootfs` and nothing else (docs/tools.md, "What the code can see").

Every path probed here exists on the host and is readable by the test's own user; from inside
the sandbox, listing it or reading it must fail. Guard mode makes no such promise (it refuses
writes, not reads) and is not tested here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from arpo.tools.base import ToolStatus
from arpo.tools.python import PythonTool

from .conftest import REPO, skip_unless_isolation_available

PROBE = """
import json, os
seen = {}
for path in PATHS:
    try:
        if os.path.isdir(path):
            seen[path] = 'listed: ' + ', '.join(sorted(os.listdir(path))[:3])
        else:
            with open(path, 'rb') as handle:
                seen[path] = 'read: ' + repr(handle.read(40))
    except OSError as exc:
        seen[path] = type(exc).__name__
print(json.dumps(seen))
"""

HOST_LOCATIONS = [
    "/root",
    "/home",
    os.path.expanduser("~"),
    os.path.expanduser("~/.ssh"),
    os.path.expanduser("~/.bashrc"),
    os.path.expanduser("~/.cache"),
    "/etc/shadow",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/ssh",
    "/var",
    "/run",
    "/sys",
    "/mnt",
    "/opt",
    "/srv",
    "/boot",
]
"""Typical places of secrets, other users' files and host configuration."""


@pytest.fixture(scope="module")
def tool() -> Iterator[PythonTool]:
    skip_unless_isolation_available("namespaces")
    tool = PythonTool(isolation="namespaces")
    yield tool
    tool.close()


@pytest.fixture
def planted_secret() -> Iterator[Path]:
    """A world-readable file holding a secret, in a world-readable folder inside the repository."""
    folder = Path(tempfile.mkdtemp(prefix=".arpo-secret-", dir=REPO))
    folder.chmod(0o755)
    secret = folder / "credentials"
    secret.write_text(f"token={secrets.token_hex(8)}\n")
    secret.chmod(0o644)
    yield secret
    shutil.rmtree(folder, ignore_errors=True)


def probe(tool: PythonTool, paths: list[str]) -> dict[str, str]:
    result = tool.run(f"PATHS = {paths!r}\n{PROBE}")
    assert result.status is ToolStatus.OK, result.text
    return json.loads(result.text)


def test_host_locations_cannot_be_listed_or_read(tool: PythonTool) -> None:
    paths = sorted({p for p in HOST_LOCATIONS if os.path.lexists(p)} - {os.path.realpath(sys.base_prefix)})
    assert paths, "no probe location exists on this host"
    seen = probe(tool, paths)
    leaked = {path: what for path, what in seen.items() if what.startswith(("listed", "read"))}
    # /root may exist in the sandbox only as an empty stand-in holding the interpreter's prefix.
    prefix_parents = {
        str(parent) for p in (sys.prefix, sys.base_prefix) for parent in Path(os.path.realpath(p)).parents
    }
    leaked = {p: w for p, w in leaked.items() if p not in prefix_parents}
    assert not leaked, leaked


def test_the_repository_and_a_world_readable_secret_in_it_are_invisible(
    tool: PythonTool, planted_secret: Path
) -> None:
    paths = [str(REPO / "README.md"), str(REPO / "src"), str(planted_secret), str(planted_secret.parent)]
    seen = probe(tool, paths)
    assert seen == dict.fromkeys(paths, "FileNotFoundError"), seen


def test_only_the_minimal_root_is_listed(tool: PythonTool) -> None:
    top = {Path(os.path.realpath(p)).parts[1] for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    allowed = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "proc", "tmp"} | top
    listed = set(json.loads(tool.run("import os, json\nprint(json.dumps(os.listdir('/')))").text))
    assert listed <= allowed, listed - allowed
    assert {"usr", "etc", "tmp", "proc", "dev"} <= listed
    etc = set(json.loads(tool.run("import os, json\nprint(json.dumps(os.listdir('/etc')))").text))
    assert etc <= {
        "ld.so.cache",
        "ld.so.conf",
        "ld.so.conf.d",
        "localtime",
        "alternatives",
        "passwd",
        "group",
    }


def test_proc_shows_the_sandbox_not_the_host(tool: PythonTool) -> None:
    host_init = Path("/proc/1/cmdline").read_bytes()
    code = "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\nopen('/proc/1/cmdline', 'rb').read()"
    pids, cmdline = tool.run(code).text.splitlines()
    assert pids == "[1, 2]"  # the namespace's init and the code itself
    assert cmdline != repr(host_init)


def test_the_interpreter_and_its_libraries_still_work(tool: PythonTool) -> None:
    code = (
        "import numpy, sqlite3, ssl, decimal, zoneinfo, subprocess, sys\n"
        "print(numpy.arange(4).sum())\n"
        "print(subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout.strip())\n"
        "open('/dev/null', 'w').write('x')\n"
        "print(len(open('/dev/urandom', 'rb').read(8)))"
    )
    result = tool.run(code)
    assert result.status is ToolStatus.OK, result.text
    assert result.text.splitlines()[:3] == ["6", "42", "8"]


def test_the_root_is_read_only_but_tmp_and_dev_shm_are_writable(tool: PythonTool) -> None:
    code = (
        "import os\n"
        "for path in ('/usr/arpo-x', '/etc/arpo-x', '/arpo-x', '/dev/arpo-x', '/tmp/arpo-x', '/dev/shm/arpo-x'):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print(path, 'written')\n"
        "    except OSError as exc:\n"
        "        print(path, exc.strerror)\n"
    )
    lines = tool.run(code).text.splitlines()
    assert lines[:4] == [
        f"{p} Read-only file system" for p in ("/usr/arpo-x", "/etc/arpo-x", "/arpo-x", "/dev/arpo-x")
    ]
    assert lines[4:] == ["/tmp/arpo-x written", "/dev/shm/arpo-x written"]
