"""The outage status line: one display, updated in place; loss notes on stderr. Pure."""

from __future__ import annotations

import pytest

from backendai_jupyter.client import Finished, OutputLost, Reconnecting, Resumed
from backendai_jupyter.workspace.outage_status import (
    OutageStatus,
    lost_text,
    reconnecting_text,
    resumed_text,
)


@pytest.mark.parametrize(
    "event,text",
    [
        (Reconnecting("connection refused", 12.4, 3, 2.0),
         "Backend.AI manager unreachable (connection refused), retrying — 12 s"),
        (Resumed(14.0, 6), "Backend.AI manager reachable again after 14 s; the run goes on"),
    ],
)
def test_status_texts(event: object, text: str) -> None:
    assert (reconnecting_text(event) if isinstance(event, Reconnecting) else resumed_text(event)) == text  # type: ignore[arg-type]


def test_lost_text_says_from_where() -> None:
    lost = OutputLost("the manager restarted", "after the stdout line '7'")
    assert lost_text(lost) == "[Backend.AI] output was lost after the stdout line '7': the manager restarted\n"


def test_one_line_updated_in_place() -> None:
    status = OutageStatus()
    first = status.messages(Reconnecting("connection refused", 0.0, 1, 0.5))
    second = status.messages(Reconnecting("connection refused", 1.0, 2, 1.0))
    done = status.messages(Resumed(3.0, 3))
    assert [m for m, _ in first + second + done] == ["display_data", "update_display_data", "update_display_data"]
    ids = {c["transient"]["display_id"] for _, c in first + second + done}
    assert ids == {status.display_id}
    assert "— 1 s" in second[0][1]["data"]["text/plain"] and not status.in_outage


def test_other_events_send_nothing_and_resumed_alone_shows_nothing() -> None:
    status = OutageStatus()
    assert status.messages(Finished(0)) == [] and status.messages(Resumed(0.0, 1)) == []
    msg_type, content = status.messages(OutputLost("gone", "before any output arrived"))[0]
    assert msg_type == "stream" and content["name"] == "stderr"
