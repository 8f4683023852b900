"""The one sync → async bridge: a daemon thread running the workspace's event loop.

Magics and widget callbacks are synchronous, and the kernel's own loop is busy running them, so
blocking on it (``run_until_complete``, ``nest_asyncio``) is not an option. Instead, coroutines are
shipped to a private loop in a background thread with ``run_coroutine_threadsafe``; the caller
either waits for the result (:func:`run`) or gets a ``concurrent.futures.Future`` back
(:func:`submit`, for widget callbacks that must not freeze the kernel).

The workspace's client and kernel session live on this loop (an aiohttp session belongs to one
loop), in a plain IPython kernel and in the proxy kernel alike (:mod:`backendai_jupyter.workspace`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["BackgroundLoop", "Inbox", "get_loop", "run", "submit"]

T = TypeVar("T")
N = TypeVar("N")

_END = object()  # the work is done: the waiting thread stops serving the inbox


class Inbox(Generic[N]):
    """Items a coroutine on the loop hands to the thread that waits for it in
    :meth:`BackgroundLoop.run` (a magic's output notes, an ``input()`` question): ``post`` from
    any thread; ``handle`` runs in the waiting thread, in order. That thread sleeps until an
    item or the end of the work arrives (no polling)."""

    def __init__(self, handle: Callable[[N], None]) -> None:
        self._handle = handle
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._watched: set[concurrent.futures.Future[Any]] = set()

    def post(self, item: N) -> None:
        self._items.put(item)

    def serve(self, future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
        """Handle items until ``future`` is done; its result. Callable again after an
        interrupt (to wait for the clean-up); ``TimeoutError`` after ``timeout`` seconds."""
        if future not in self._watched:
            self._watched.add(future)
            future.add_done_callback(lambda _: self._items.put(_END))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._items.get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"the work did not finish within {timeout:g} s") from None
            if item is _END:
                break
            self._handle(item)
        while not self._items.empty():  # items posted after the end (none, normally)
            item = self._items.get_nowait()
            if item is not _END:
                self._handle(item)
        return future.result()


class BackgroundLoop:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str = "backendai-jupyter-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._hops_lock = threading.Lock()
        self.hops = 0
        """Coroutines handed to the loop from other threads so far (thread hops; a remote cell
        of the proxy kernel costs one)."""
        # Stop the loop when this object goes away (or at interpreter exit).
        self._finalizer = weakref.finalize(self, _stop, self.loop, self._thread)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("BackgroundLoop.submit() called from its own loop thread")
        with self._hops_lock:
            self.hops += 1
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        timeout: float | None = None,
        cleanup_timeout: float = 60,
        *,
        inbox: Inbox[Any] | None = None,
    ) -> T:
        """Run ``coro`` on the loop and wait for it; meanwhile handle what it posts to ``inbox``
        (in this thread).

        On ``KeyboardInterrupt`` (the user pressed "interrupt") the task is cancelled and its
        cleanup — ``finally`` blocks that destroy sessions, say — is awaited before re-raising.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("BackgroundLoop.run() called from its own loop thread")
        holder: list[asyncio.Task[Any]] = []

        async def tracked() -> T:
            task = asyncio.current_task()
            if task is not None:
                holder.append(task)
            return await coro

        future = self.submit(tracked())
        try:
            if inbox is not None:
                return inbox.serve(future, timeout)
            return future.result(timeout)
        except KeyboardInterrupt:
            if holder:
                self.loop.call_soon_threadsafe(holder[0].cancel)
            else:
                future.cancel()
            try:
                future.result(cleanup_timeout)
            except BaseException:
                pass
            raise

    def close(self) -> None:
        self._finalizer()


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    if not thread.is_alive():
        loop.close()


_default: BackgroundLoop | None = None
_lock = threading.Lock()


def get_loop() -> BackgroundLoop:
    """The process-wide background loop, started on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = BackgroundLoop()
        return _default


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    return get_loop().run(coro, timeout)


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    return get_loop().submit(coro)
