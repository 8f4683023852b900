"""The first process of a session's sandbox: ``python -I -S sandbox_init.py`` (stdlib only).

It runs inside the session (its user, mount, PID and network namespaces) with its standard
input a Unix socket shared with the endpoint, and does two things:

* says ``ready`` on stdout once it runs (the sandbox's mounts are in place by then), and lives
  until that socket reaches EOF — the endpoint closed it or died, however it died — so the
  sandbox, and with it every process of the session, ends with the endpoint;
* makes sockets *in the session's network namespace* for the endpoint: for each byte ``s`` it
  reads, it sends back (``SCM_RIGHTS``) one new, unconnected TCP socket. The endpoint connects
  it itself to a port on the session's loopback (a service, the kernel): the only way into
  the session's network, and one that names no path the session could redirect.

It is not dumpable (``PR_SET_DUMPABLE`` 0), so the session's code, same uid, cannot ptrace it
into sending something else; the endpoint checks what it receives anyway (``netns.py``).
"""

from __future__ import annotations

import array
import ctypes
import os
import socket
import sys

_PR_SET_DUMPABLE = 4


def main() -> int:
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    chan = socket.socket(fileno=0)
    os.write(1, b"ready\n")
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


if __name__ == "__main__":
    sys.exit(main())
