"""Pure mapping of execute answers (a REST ``result`` or one websocket frame) to typed events."""

from __future__ import annotations

from typing import Any

from ._exceptions import ProtocolError, ServerError
from ._models import ConsoleItem, ExecEvent, Finished, Output, StepFinished, WaitingInput

__all__ = [
    "CONTINUE_STATUSES",
    "END_STATUSES",
    "events_from_result",
    "output_tail",
    "split_prompt",
]

CONTINUE_STATUSES = {"continued", "clean-finished", "build-finished"}
END_STATUSES = {"finished", "exec-timeout", "error", "server-restarting"}


def split_prompt(items: list[ConsoleItem]) -> tuple[list[ConsoleItem], str]:
    """Detach an ``input()`` prompt from the output that precedes a ``waiting-input``.

    The runner sends the prompt as ordinary stdout right before ``waiting-input``; a Jupyter
    front-end wants it as the ``input_request`` prompt instead. Only the text after the last
    newline of a trailing stdout item is taken.
    """
    if not items or items[-1].kind != "stdout" or not isinstance(items[-1].data, str):
        return items, ""
    head, sep, tail = items[-1].data.rpartition("\n")
    rest = list(items[:-1])
    if sep:
        rest.append(ConsoleItem("stdout", head + sep))
    return rest, tail


def events_from_result(result: dict[str, Any]) -> list[ExecEvent]:
    """Map one execute answer (REST ``result`` or one websocket frame) to events. Pure."""
    status = result.get("status")
    if status == "error":
        raise ServerError(500, title="execution failed on the server", msg=str(result.get("msg")))
    if status == "server-restarting":
        raise ServerError(503, title="the manager is restarting", msg=str(result.get("msg")))
    items = [ConsoleItem.from_json(item) for item in result.get("console") or []]
    options = result.get("options") or {}
    prompt = ""
    if status == "waiting-input":
        items, prompt = split_prompt(items)
    events: list[ExecEvent] = [Output(item) for item in items]
    exit_code = result.get("exitCode")
    if status == "waiting-input":
        is_password = bool(options.get("is_password")) if isinstance(options, dict) else False
        events.append(WaitingInput(prompt=prompt, is_password=is_password))
    elif status == "clean-finished":
        events.append(StepFinished("clean", exit_code))
    elif status == "build-finished":
        events.append(StepFinished("build", exit_code))
    elif status in ("finished", "exec-timeout"):
        events.append(Finished(exit_code, status=str(status)))
    elif status not in CONTINUE_STATUSES:
        raise ProtocolError(f"unexpected execution status from server: {status!r}")
    return events


def output_tail(events: list[ExecEvent], width: int = 60) -> str:
    """A one-line description of where delivered output ended (for :class:`OutputLost`). Pure."""
    for event in reversed(events):
        if isinstance(event, Output) and event.item.kind in ("stdout", "stderr"):
            text = str(event.item.data).rstrip("\n")
            if not text.strip():
                continue
            line = text.rsplit("\n", 1)[-1]
            line = line if len(line) <= width else "…" + line[-(width - 1) :]
            return f"after the {event.item.kind} line {line!r}"
        if isinstance(event, Output):
            return f"after a {event.item.kind} output"
    return "before any output arrived"
