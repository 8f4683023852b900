"""The session dashboard: the caller's sessions with status, terminate and logs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from typing import Any

import ipywidgets as w

from ..client import Client
from ..workspace.loop import BackgroundLoop
from ._base import WidgetBase, on_click
from ._data import SessionRow, fetch_sessions

__all__ = ["SessionDashboard"]


class SessionDashboard(WidgetBase):
    """List the caller's live sessions; terminate one or show its container logs.

    "auto-refresh" re-lists every ``interval`` seconds on the background loop while it is ticked.
    """

    def __init__(
        self,
        client: Client | None = None,
        *,
        loop: BackgroundLoop | None = None,
        interval: float = 5.0,
    ) -> None:
        super().__init__(client, loop)
        self.rows: list[SessionRow] = []
        self.interval = interval
        self._auto: concurrent.futures.Future[None] | None = None
        self.sessions = w.Select(options=[], rows=8, layout=w.Layout(width="700px"))
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.terminate_button = w.Button(
            description="Terminate", icon="stop", button_style="danger"
        )
        self.logs_button = w.Button(description="Logs", icon="file-text")
        self.auto_refresh = w.Checkbox(value=False, description="auto-refresh", indent=False)
        self.logs = w.Textarea(
            value="",
            placeholder="logs",
            disabled=True,
            layout=w.Layout(width="700px", height="200px"),
        )
        on_click(self.refresh_button, self.refresh)
        on_click(self.terminate_button, self._terminate_clicked)
        on_click(self.logs_button, self._logs_clicked)
        self.auto_refresh.observe(self._auto_toggled, names="value")
        self.widget = w.VBox(
            [
                w.HTML("<b>Backend.AI sessions</b>"),
                self.sessions,
                w.HBox(
                    [
                        self.refresh_button,
                        self.terminate_button,
                        self.logs_button,
                        self.auto_refresh,
                    ]
                ),
                self.status,
                self.logs,
            ]
        )
        self.widget.add_class("bai-session-dashboard")
        self.sessions.add_class("bai-sessions")
        self.refresh()

    @property
    def selected(self) -> SessionRow | None:
        key = self.sessions.value
        return next((r for r in self.rows if r.key == key), None)

    # -- actions ---------------------------------------------------------------------------------

    def refresh(self) -> concurrent.futures.Future[list[SessionRow]]:
        """Re-list the sessions."""
        return self._submit(self._reload(), "listing sessions…")

    async def _reload(self) -> list[SessionRow]:
        client = await self.client()
        rows = await fetch_sessions(client)
        keep = self.sessions.value
        self.rows = rows
        self.sessions.options = [(r.label(), r.key) for r in rows]
        keys = [r.key for r in rows]
        self.sessions.value = keep if keep in keys else (keys[0] if keys else None)
        self._info(f"{len(rows)} session(s)")
        return rows

    def terminate(self, key: str | None = None) -> concurrent.futures.Future[list[SessionRow]]:
        """Destroy a session (default: the selected one), then re-list."""
        target = key or self._need_selection()

        async def destroy() -> list[SessionRow]:
            client = await self.client()
            await client.sessions.destroy(target)
            rows = await self._reload()
            self._info(f"terminated {target}")
            return rows

        return self._submit(destroy(), f"terminating {target}…")

    def show_logs(self, key: str | None = None) -> concurrent.futures.Future[str]:
        """Fetch a session's container logs into the text area."""
        target = key or self._need_selection()

        async def fetch() -> str:
            client = await self.client()
            text = await client.sessions.logs(target)
            self.logs.value = text
            self._info(f"logs of {target}: {len(text.splitlines())} line(s)")
            return text

        return self._submit(fetch(), f"fetching logs of {target}…")

    def _need_selection(self) -> str:
        row = self.selected
        if row is None:
            raise ValueError("select a session first")
        return row.key

    # -- handlers --------------------------------------------------------------------------------

    def _terminate_clicked(self) -> None:
        try:
            self.terminate()
        except ValueError as e:
            self._error(str(e))

    def _logs_clicked(self) -> None:
        try:
            self.show_logs()
        except ValueError as e:
            self._error(str(e))

    def _auto_toggled(self, change: dict[str, Any]) -> None:
        if change["new"] and self._auto is None:
            self._auto = self._loop.submit(self._poll())
        elif not change["new"] and self._auto is not None:
            self._auto.cancel()
            self._auto = None

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # shown on the status line by _reload's caller
                await self._reload()
            await asyncio.sleep(self.interval)

    def close(self) -> concurrent.futures.Future[None]:
        if self._auto is not None:
            self._auto.cancel()
            self._auto = None
        return super().close()
