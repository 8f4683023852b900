"""The first process of a session's sandbox: ``python -I -S sandbox_init.py [--map UID:GID]``.

Stdlib only. Its standard input is a Unix socket shared with the endpoint. It

1. (``--map``: the endpoint runs as root, bwrap made the mount/PID/IPC/network namespaces)
   makes the session's **user namespace**: it forks; the child ``unshare``\\ s a user namespace
   and the parent maps the child's uid/gid 1000 (``work``) to the unprivileged host ids
   ``UID:GID`` and nothing else (no host root inside), drops every capability and waits for
   the child, exiting as it does. The child becomes uid/gid 1000 and goes on. The other
   namespaces stay owned by the host's user namespace, so nothing in the session can mount,
   unmount or reconfigure its network, whatever it does in its own user namespace. (Without
   ``--map``, bwrap made the user namespace itself: the endpoint is not root.)
2. says ``ready`` to the endpoint on that socket, with its credentials (``SCM_CREDENTIALS``:
   the kernel translates them, so the endpoint learns the host pid whose namespaces every
   session process joins, and checks the host uid);
3. makes sockets *in the session's network namespace* for the endpoint: for each byte ``s`` it
   reads, it sends back (``SCM_RIGHTS``) one new unconnected TCP socket, which the endpoint
   connects to a port of the session's loopback (``netns.py``);
4. exits at EOF on that socket (the endpoint closed it or died): the sandbox, and with it every
   process of the session, ends with the endpoint.

It is not dumpable (``PR_SET_DUMPABLE`` 0): the session's code, same uid, cannot ptrace it into
sending something else; the endpoint checks what it receives anyway.
"""

from __future__ import annotations

import array
import ctypes
import os
import socket
import struct
import sys

_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_CLONE_NEWUSER = 0x10000000
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
SESSION_ID = 1000

_libc = ctypes.CDLL(None, use_errno=True)


def _drop_capabilities() -> None:
    for cap in range(64):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    _libc.capset(header, (ctypes.c_uint32 * 6)())


def _exit_like(status: int) -> None:
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _into_user_namespace(uid: int, gid: int) -> None:
    """Step 1: returns in the child, uid/gid 1000 of a new user namespace mapped to
    ``uid:gid``; the parent never returns."""
    up_r, up_w = os.pipe()  # child → parent: unshared
    go_r, go_w = os.pipe()  # parent → child: mapped
    child = os.fork()
    if child == 0:
        os.close(up_r)
        os.close(go_w)
        if _libc.unshare(_CLONE_NEWUSER) != 0:
            os._exit(126)
        os.write(up_w, b"u")
        if os.read(go_r, 1) != b"m":
            os._exit(126)
        os.setresgid(SESSION_ID, SESSION_ID, SESSION_ID)
        os.setresuid(SESSION_ID, SESSION_ID, SESSION_ID)
        _drop_capabilities()
        return
    os.close(up_w)
    os.close(go_r)
    if os.read(up_r, 1) != b"u":
        os._exit(126)
    for name, text in (("setgroups", "deny"), ("uid_map", f"{SESSION_ID} {uid} 1\n"),
                       ("gid_map", f"{SESSION_ID} {gid} 1\n")):
        with open(f"/proc/{child}/{name}", "w") as f:
            f.write(text)
    os.write(go_w, b"m")
    _drop_capabilities()
    for fd in (0, 1, 2):
        os.close(fd)
    while True:
        try:
            _, status = os.waitpid(child, 0)
        except InterruptedError:
            continue
        _exit_like(status)


def _serve(chan: socket.socket) -> int:
    creds = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
    chan.sendmsg([b"ready"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
    while True:
        try:
            request = chan.recv(1)
        except InterruptedError:
            continue
        except OSError:
            return 0
        if not request:
            return 0
        if request != b"s":
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as made:
            fds = array.array("i", [made.fileno()])
            try:
                chan.sendmsg([b"s"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            except OSError:
                return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--map"]:
        uid, _, gid = argv[1].partition(":")
        _into_user_namespace(int(uid), int(gid))
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    return _serve(socket.socket(fileno=0))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
