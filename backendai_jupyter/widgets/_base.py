"""Plumbing shared by the widgets: the client, background actions, status line, progress rows.

Every action runs on the workspace loop (:meth:`~...workspace.Workspace.submit`): a button callback
returns at once with a ``concurrent.futures.Future``, so the kernel never waits on the network.
The coroutine updates the widgets itself when it is done; ipywidgets allows trait changes from
another thread (its docs' "updating a widget in the background" example does exactly this).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import ipywidgets as w

from ..client import Client
from ..workspace import current
from ..workspace.loop import BackgroundLoop
from ._data import format_bytes

__all__ = ["ClientRef", "Progress", "WidgetBase"]

T = TypeVar("T")


class ClientRef:
    """The client a widget talks through: the caller's, or the workspace's (the one the magics
    and the proxy kernel use, with their ``%backendai config``)."""

    def __init__(self, client: Client | None) -> None:
        self._client = client

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        return await current().client()

    async def close(self) -> None:
        """The caller's client and the workspace's are closed by their owners."""


def _escape(text: object) -> str:
    return html.escape(str(text))


class WidgetBase:
    """A composite widget: ``self.widget`` is the ipywidgets tree it displays as."""

    widget: w.Box

    def __init__(self, client: Client | None, loop: BackgroundLoop | None) -> None:
        self._client = ClientRef(client)
        self._loop = loop or current().loop
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._pending_lock = threading.Lock()
        self.status = w.HTML(layout=w.Layout(min_height="1.6em"))

    # -- display ---------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def close(self) -> concurrent.futures.Future[None]:
        """Close the widgets and the client this widget built (if it built one)."""
        _close_tree(self.widget)
        return self._loop.submit(self._client.close())

    # -- status ----------------------------------------------------------------------------------

    def _info(self, text: str) -> None:
        self.status.value = f"<span class='bai-status'>{_escape(text)}</span>"

    def _error(self, text: str) -> None:
        self.status.value = (
            f"<span class='bai-error' style='color:#c62828'>error: {_escape(text)}</span>"
        )

    # -- background actions ----------------------------------------------------------------------

    def _submit(
        self, coro: Coroutine[Any, Any, T], busy: str | None = None
    ) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the background loop; show ``busy`` meanwhile and any error after."""
        if busy:
            self._info(busy)

        async def guarded() -> T:
            try:
                return await coro
            except asyncio.CancelledError:
                self._info("cancelled")
                raise
            except Exception as e:
                self._error(f"{type(e).__name__}: {e}")
                raise

        future = self._loop.submit(guarded())
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def wait(self, timeout: float | None = 60) -> None:
        """Wait until every action started so far has finished; re-raise the first failure.

        For scripts and tests: in a notebook, a cell that waits here holds the kernel.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._pending_lock:
                pending = list(self._pending)
            if not pending:
                return
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, not_done = concurrent.futures.wait(pending, timeout=left)
            for future in done:
                if not future.cancelled() and future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            if not_done:
                raise TimeoutError(f"{len(not_done)} widget action(s) still running")
            # Finished actions may have started others (a refresh after an upload): loop.

    async def client(self) -> Client:
        return await self._client.get()


def _close_tree(widget: w.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


class Progress:
    """One transfer's progress bar and label; updates are throttled (≤ 10 per second)."""

    def __init__(self, title: str, interval: float = 0.1) -> None:
        self.title = title
        self.bar = w.FloatProgress(
            value=0.0, min=0.0, max=1.0, bar_style="info", layout=w.Layout(width="40%")
        )
        self.label = w.Label(f"{title}: starting")
        self.widget = w.HBox([self.bar, self.label])
        self._interval = interval
        self._last = 0.0
        self.done = 0
        self.total = 0

    def update(self, done: int, total: int) -> None:
        """The ``progress(done_bytes, total_bytes)`` callback of the folder transfers."""
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self._last < self._interval and not (total > 0 and done >= total):
            return
        self._last = now
        if total > 0:
            self.bar.value = min(1.0, done / total)
            self.label.value = f"{self.title}: {format_bytes(done)} / {format_bytes(total)}"
        else:
            self.label.value = f"{self.title}: {format_bytes(done)}"

    def finish(self, ok: bool = True, note: str = "") -> None:
        self.bar.value = 1.0 if ok else self.bar.value
        self.bar.bar_style = "success" if ok else "danger"
        size = format_bytes(self.total or self.done)
        self.label.value = f"{self.title}: {'done' if ok else 'failed'} ({size}){note}"


def on_click(button: w.Button, action: Callable[[], object]) -> None:
    """Wire a button to a no-argument action (the action returns at once)."""
    button.on_click(lambda _b: action())
