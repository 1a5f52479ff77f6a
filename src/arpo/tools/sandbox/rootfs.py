"""The sandbox's file system: a minimal root, built in the call's own mount namespace, pivoted into.

Runs inside the sandbox's PID-namespace init (stdlib + ctypes only), after the launcher has
unshared the namespaces (:mod:`namespaces`). What the code sees (``namespaces`` mode):

==============================================  ==============================================
path                                            what it is
==============================================  ==============================================
``/usr``, ``/bin``, ``/sbin``, ``/lib*``         the host's, read-only (symlinks kept as symlinks):
                                                system libraries and tools the interpreter needs
the interpreter's prefixes                      read-only, at their host paths: ``sys.prefix``,
                                                ``sys.base_prefix`` and the exec prefixes (the
                                                interpreter, its standard library, its
                                                site-packages). Nothing else of the folders
                                                above them: a virtualenv inside a repository
                                                shows the virtualenv, not the repository
``/etc``                                        only what the dynamic linker and the C library
                                                read: ``ld.so.cache``, ``ld.so.conf(.d)``,
                                                ``localtime``, ``alternatives``, plus a
                                                ``passwd`` and ``group`` naming root and the
                                                sandbox uid
``/tmp``                                        the working directory (also ``HOME`` and
                                                ``TMPDIR``): a fresh tmpfs of ``workdir_bytes``,
                                                the only writable place besides ``/dev/shm``
                                                (a prefix under ``/tmp`` is bound inside it,
                                                read-only)
``/dev``                                        ``null``, ``zero``, ``full``, ``random``,
                                                ``urandom``, ``fd``/``stdin``/``stdout``/``stderr``
                                                links, a fresh ``shm`` tmpfs
``/proc``                                       a fresh proc of the sandbox's PID namespace (an
                                                empty directory where a container forbids it)
anything else                                   absent: no home folders, ``/root``, project or
                                                data folders, ``/var``, ``/run``, ``/sys``, ``/mnt``
==============================================  ==============================================

Editable installs and other ``sys.path`` entries outside the prefixes are not visible (they
point into source trees). The root itself and every bind are read-only (``mount_setattr`` with
``AT_RECURSIVE``, Linux >= 5.12).

How: every source is opened (``O_PATH``) first; a tmpfs is mounted over ``/tmp`` as the new
root (sources under ``/tmp`` stay reachable through their descriptors), filled with bind mounts,
then ``pivot_root(".", ".")`` stacks the old root on the new one and a lazy unmount detaches it,
so nothing of the host's tree remains reachable. ``/proc`` is mounted before the pivot: a user
namespace may mount proc only while a full proc is visible in its mount namespace.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import namespaces  # noqa: E402  (a sibling, imported by path inside the child)

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives")
DEVICES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}
WORKDIR = "/tmp"
"""The working directory inside the sandbox."""
STAGING = "/tmp"
"""Where the new root is built: the host's ``/tmp`` is covered by it, in this namespace only."""

MNT_DETACH = 0x2


@dataclass(frozen=True)
class Source:
    """A host path to show in the sandbox: bound (a directory or file) or recreated (a symlink)."""

    path: str
    link: str | None
    fd: int | None


def interpreter_prefixes() -> list[str]:
    """The interpreter's prefixes, outermost only, excluding those under the system paths."""
    prefixes = sorted(
        {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    )
    kept: list[str] = []
    for prefix in prefixes:
        covered = [*SYSTEM_PATHS, *kept]
        if os.path.isdir(prefix) and not any(prefix == c or prefix.startswith(c + "/") for c in covered):
            kept.append(prefix)
    return kept


def _open(path: str) -> Source | None:
    if os.path.islink(path):
        return Source(path, os.readlink(path), None)
    if not os.path.exists(path):
        return None
    return Source(path, None, os.open(path, os.O_PATH | os.O_CLOEXEC))


def _place(source: Source, root: str) -> None:
    """Recreate ``source`` under ``root``: a symlink, or a recursive bind of its descriptor."""
    target = root + source.path
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if source.link is not None:
        os.symlink(source.link, target)
        return
    assert source.fd is not None
    if os.path.isdir(f"/proc/self/fd/{source.fd}"):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    namespaces.mount(f"/proc/self/fd/{source.fd}", target, None, namespaces.MS_BIND | namespaces.MS_REC)
    os.close(source.fd)


def build_root(workdir_bytes: int, sandbox_uid: int | None) -> None:
    """Build the minimal root, pivot into it and make it read-only; cwd becomes :data:`WORKDIR`.

    ``sandbox_uid``: the uid root drops to, which owns the working directory (None in a user
    namespace, where uid 0 inside is the caller).
    """
    sources = [s for p in (*SYSTEM_PATHS, *interpreter_prefixes()) if (s := _open(p)) is not None]
    sources += [s for e in ETC_ENTRIES if (s := _open(f"/etc/{e}")) is not None]
    devices = [s for d in DEVICES if (s := _open(f"/dev/{d}")) is not None]
    flags = namespaces.MS_NOSUID | namespaces.MS_NODEV
    namespaces.mount("tmpfs", STAGING, "tmpfs", flags, "size=1m,mode=0755")
    root = STAGING
    # The working directory first: a prefix under /tmp (a virtualenv in a temporary clone) is then
    # bound inside it, read-only, instead of being covered by it.
    os.makedirs(root + WORKDIR, mode=0o755, exist_ok=True)
    owner = f",uid={sandbox_uid},gid={sandbox_uid}" if sandbox_uid is not None else ""
    namespaces.mount("tmpfs", root + WORKDIR, "tmpfs", flags, f"size={workdir_bytes},mode=0700{owner}")
    for source in sources:
        _place(source, root)
    _write_identity(root, sandbox_uid)
    os.mkdir(root + "/dev", 0o755)
    namespaces.mount(
        "tmpfs", root + "/dev", "tmpfs", namespaces.MS_NOSUID | namespaces.MS_NOEXEC, "size=64k,mode=0755"
    )
    for device in devices:
        _place(device, root)
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{root}/dev/{name}")
    os.mkdir(root + "/dev/shm")
    namespaces.mount("tmpfs", root + "/dev/shm", "tmpfs", flags, "size=64m,mode=1777")
    os.mkdir(root + "/proc", 0o555)
    namespaces.mount_proc(root + "/proc")
    os.chdir(root)
    namespaces.check(namespaces.libc.pivot_root(b".", b"."), "pivot_root")
    namespaces.check(namespaces.libc.umount2(b".", MNT_DETACH), "detach the host's root")
    os.chdir("/")
    namespaces.set_readonly("/", readonly=True, recursive=True)
    for writable in (WORKDIR, "/dev/shm"):
        namespaces.set_readonly(writable, readonly=False, recursive=False)
    os.chdir(WORKDIR)


def _write_identity(root: str, sandbox_uid: int | None) -> None:
    """``/etc/passwd`` and ``/etc/group`` with root and the sandbox uid, home ``/tmp``."""
    users = [(0, "root", "/root")]
    if sandbox_uid is not None:
        users.append((sandbox_uid, "sandbox", WORKDIR))
    os.makedirs(root + "/etc", mode=0o755, exist_ok=True)
    with open(root + "/etc/passwd", "w") as handle:
        handle.writelines(f"{name}:x:{uid}:{uid}:{name}:{home}:/bin/sh\n" for uid, name, home in users)
    with open(root + "/etc/group", "w") as handle:
        handle.writelines(f"{name}:x:{uid}:\n" for uid, name, _ in users)
