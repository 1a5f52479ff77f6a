"""Kernel isolation for the sandboxed call: Linux namespaces, mounts and privilege drops.

Runs inside the sandbox (stdlib + ctypes only). :func:`enter_namespaces` is called by the call's
launcher before it forks; afterwards every process it starts lives in

- a new **user namespace** when the caller is not root (uid/gid 0 inside map to the caller's ids;
  root needs none, it holds the capabilities already);
- a new **network namespace**: only a loopback interface, which is down, so every ``connect``,
  to 127.0.0.1 included, fails with "Network is unreachable";
- a new **PID namespace**: the host's processes, the tool's own process included, are invisible
  and cannot be signalled; when the namespace's first process exits, the kernel kills every
  process left in it, so nothing the code started outlives the call;
- new **IPC** and **UTS** namespaces;
- a new **mount namespace**, private, in which the namespace's init builds the minimal root
  file system the code sees (:mod:`rootfs`).

When root runs the sandbox, the code's process drops to a fresh unprivileged uid
(:func:`drop_to_uid`); in a user namespace it drops every capability (:func:`drop_capabilities`).

Every failure raises :class:`SandboxSetupError` naming the step; the caller fails closed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
LINUX_CAPABILITY_VERSION_3 = 0x20080522

libc = ctypes.CDLL(None, use_errno=True)


class SandboxSetupError(RuntimeError):
    """A namespace, mount or privilege step failed; the code must not run."""


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def check(result: int, what: str) -> None:
    if result == -1:
        raise SandboxSetupError(f"{what}: {os.strerror(ctypes.get_errno())}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    check(
        libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
        f"mount {fstype or 'bind'} on {target}",
    )


def set_readonly(path: str, readonly: bool, recursive: bool) -> None:
    attr = _MountAttr(
        attr_set=MOUNT_ATTR_RDONLY if readonly else 0, attr_clr=0 if readonly else MOUNT_ATTR_RDONLY
    )
    flags = AT_RECURSIVE if recursive else 0
    check(
        libc.mount_setattr(AT_FDCWD, path.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr)),
        f"mount_setattr {'ro' if readonly else 'rw'} on {path} (needs Linux >= 5.12)",
    )


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(text)
    except OSError as exc:
        raise SandboxSetupError(f"write {path}: {exc.strerror}") from None


def unreachable_ancestor(path: str) -> str | None:
    """The topmost directory above ``path`` that "other" users cannot traverse, if any."""
    current = "/"
    for part in path.strip("/").split("/")[:-1]:
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return current
    return None


def interpreter_paths() -> list[str]:
    """Directories the interpreter imports from: prefixes and every existing ``sys.path`` entry."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path}
    return sorted(p for p in candidates if p and os.path.isabs(p) and os.path.isdir(p))


def enter_namespaces() -> bool:
    """Unshare all namespaces (a user namespace first when not root); returns whether one was made.

    The mount tree is built afterwards by the PID namespace's init (:func:`rootfs.build_root`).
    """
    in_user_ns = os.geteuid() != 0
    if in_user_ns:
        uid, gid = os.geteuid(), os.getegid()
        check(libc.unshare(CLONE_NEWUSER), "unshare user namespace")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    check(libc.unshare(flags), "unshare mount/network/pid/ipc/uts namespaces")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    return in_user_ns


def mount_proc(target: str) -> None:
    """A proc showing only this PID namespace at ``target``; where a container masks parts of
    /proc and so forbids a fresh proc mount, an empty read-only directory instead."""
    try:
        mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except SandboxSetupError:
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")


def become_namespace_init() -> None:
    """In the PID namespace's first process: not dumpable (so the code, which may share its uid
    in a user namespace, cannot ptrace it or read its memory) and dies with the launcher."""
    check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")
    die_with_parent(signal.SIGKILL)


def drop_to_uid(uid: int) -> None:
    """Root only: become ``uid``/``uid`` with no supplementary groups (all capabilities are lost)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def drop_capabilities() -> None:
    """User-namespace root: empty the bounding set and every capability set."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1:
            if ctypes.get_errno() == errno.EINVAL:
                break  # past the last capability this kernel knows
            check(-1, f"drop capability {cap}")
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    check(libc.capset(header, data), "capset")


def forbid_new_privileges() -> None:
    """``execve`` will not grant privileges (setuid bits and file capabilities are ignored)."""
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def die_with_parent(signal_number: int) -> None:
    check(libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
