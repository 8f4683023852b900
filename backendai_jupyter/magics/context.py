"""What a ``%backendai`` command gets: :class:`Context`, the magic's small public surface."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..client import Client, ClientConfig
from ..client.apps import AppProxy
from ..workspace import Inbox, Workspace
from .output import Emit, Note, Screen
from .results import RunResult, SweepResult

__all__ = ["CLEANUP_TIMEOUT", "Context"]

T = TypeVar("T")

CLEANUP_TIMEOUT = 60.0  # seconds an interrupted run may take to destroy its sessions


class Context:
    """One per magics instance; every command's ``run`` gets it first.

    Thread rule: the client and everything it returns live on the workspace loop; a command
    (on the magic's thread) reaches them only through :meth:`call` and :meth:`stream`.
    """

    def __init__(self, workspace: Workspace, shell: Any = None) -> None:
        self.workspace = workspace
        self.shell = shell
        self.screen = Screen(shell)
        self.proxies: dict[int, AppProxy] = {}
        """``%backendai app``'s running proxies by local port (stopped at unload/exit)."""
        self.last_result: RunResult | SweepResult | None = None
        """The latest ``run`` (or sweep), also when it was interrupted."""

    @property
    def client_config(self) -> ClientConfig:
        return self.workspace.client_config()

    @property
    def client(self) -> Client:
        """The workspace's client (use it only inside :meth:`call`/:meth:`stream` work)."""
        return self.workspace.run(self.workspace.client())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the workspace loop and wait for it."""
        return self.workspace.run(coro)

    def stream(
        self,
        work: Callable[[Emit], Coroutine[Any, Any, T]],
        handle: Callable[[Note], None] | None = None,
    ) -> T:
        """Run ``work(emit)`` on the workspace loop; show what it emits in this cell as it
        comes (``handle``: the screen, or a command's own handler). ``KeyboardInterrupt``
        cancels the work, waits for its clean-up and is raised again."""
        inbox: Inbox[Note] = Inbox(handle or self.screen.show)
        self.screen.begin()
        return self.workspace.loop.run(work(inbox.post), cleanup_timeout=CLEANUP_TIMEOUT,
                                       inbox=inbox)

    def close(self) -> None:
        """Stop every app proxy (``%unload_ext``; also registered with ``atexit`` while proxies
        run: the kernel's shutdown ends the process normally)."""
        proxies = list(self.proxies.values())
        self.proxies.clear()
        for proxy in proxies:
            try:
                self.call(proxy.aclose())
            except Exception:  # the loop may already be gone at exit
                pass

    def status(self, text: str) -> None:
        """One status line (``✓ Session ... terminated.``) on stderr."""
        self.screen.status(text)
