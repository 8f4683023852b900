"""Typed, frozen views of what the server returns. Raw dicts are parsed here, once.

Each model keeps the raw JSON in ``raw`` so that callers can reach fields a newer server added.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ConsoleItem",
    "ExecEvent",
    "Finished",
    "FolderInfo",
    "Output",
    "OutputLost",
    "Reconnecting",
    "Resumed",
    "ServicePort",
    "SessionInfo",
    "SessionRecord",
    "StepFinished",
    "WaitingInput",
]


@dataclass(frozen=True)
class ServicePort:
    name: str
    protocol: str
    ports: tuple[int, ...]
    url_template: str | None = None
    allowed_arguments: Any = None
    allowed_envs: Any = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ServicePort:
        ports = d.get("ports") or d.get("container_ports") or ()
        return cls(
            name=str(d.get("name", "")),
            protocol=str(d.get("protocol", "tcp")),
            ports=tuple(int(p) for p in ports),
            url_template=d.get("url_template"),
            allowed_arguments=d.get("allowed_arguments"),
            allowed_envs=d.get("allowed_envs"),
        )


@dataclass(frozen=True)
class SessionInfo:
    """The answer to a create (get-or-create) request."""

    id: str
    name: str
    status: str
    created: bool
    service_ports: tuple[ServicePort, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_create(cls, d: dict[str, Any], fallback_name: str) -> SessionInfo:
        ports = d.get("servicePorts", d.get("service_ports")) or []
        return cls(
            id=str(d.get("sessionId", "")),
            name=str(d.get("sessionName") or fallback_name),
            status=str(d.get("status", "")),
            created=bool(d.get("created", True)),
            service_ports=tuple(ServicePort.from_json(p) for p in ports if isinstance(p, dict)),
            raw=d,
        )


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True, eq=False)
class SessionRecord(Mapping[str, Any]):
    """One session as ``sessions.list`` (GraphQL) or ``sessions.info`` (REST) reports it.

    The fields every caller needs are typed (``""`` when the server did not send them, e.g. a
    field ``list`` was not asked for); the server's whole record stays readable by key
    (``record["occupied_slots"]``, ``record.get("tag")``), so a field a newer server added is
    never out of reach. Compares equal to a mapping with the same record.
    """

    id: str
    name: str
    status: str
    status_info: str = ""
    image: str = ""
    type: str = ""
    created_at: str = ""
    terminated_at: str = ""
    result: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_list(cls, d: dict[str, Any]) -> SessionRecord:
        """A ``compute_session_list`` item (snake_case fields)."""
        return cls(
            id=_text(d.get("id") or d.get("session_id")),
            name=_text(d.get("name") or d.get("session_name")),
            status=_text(d.get("status")),
            status_info=_text(d.get("status_info")),
            image=_text(d.get("image")),
            type=_text(d.get("type") or d.get("session_type")),
            created_at=_text(d.get("created_at")),
            terminated_at=_text(d.get("terminated_at")),
            result=_text(d.get("result")),
            raw=d,
        )

    @classmethod
    def from_info(cls, d: dict[str, Any], session: str) -> SessionRecord:
        """A ``GET /session/{id}`` answer (camelCase fields; it names no id or name)."""
        return cls(
            id=_text(d.get("sessionId") or d.get("id") or session),
            name=_text(d.get("sessionName") or d.get("name") or session),
            status=_text(d.get("status")),
            status_info=_text(d.get("statusInfo") or d.get("status_info")),
            image=_text(d.get("image") or d.get("lang")),
            type=_text(d.get("sessionType") or d.get("type")),
            created_at=_text(d.get("creationTime") or d.get("created_at")),
            terminated_at=_text(d.get("terminationTime") or d.get("terminated_at")),
            result=_text(d.get("result")),
            raw=d,
        )

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


@dataclass(frozen=True)
class FolderInfo:
    name: str
    id: str
    host: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FolderInfo:
        return cls(
            name=str(d.get("name", "")), id=str(d.get("id", "")), host=str(d.get("host", "")), raw=d
        )


# -- execution events -------------------------------------------------------------------------

ConsoleKind = Literal["stdout", "stderr", "media", "html", "log", "completion", "display"]


@dataclass(frozen=True)
class ConsoleItem:
    """One console record: ``["stdout", "text"]``, ``["media", [mime, data]]``, ``["html", ...]``.

    ``media`` data is normalised to ``(mime, data)`` whatever form the server used (a list, or the
    runner's JSON ``{"type", "data"}`` object).
    """

    kind: str
    data: Any

    @classmethod
    def from_json(cls, item: Any) -> ConsoleItem:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            kind, data = str(item[0]), item[1]
        else:
            return cls("stdout", str(item))
        if kind == "media":
            data = _normalise_media(data)
        return cls(kind, data)


def _normalise_media(data: Any) -> tuple[str, Any]:
    if isinstance(data, (list, tuple)) and len(data) == 2:
        return str(data[0]), data[1]
    if isinstance(data, dict):
        return str(data.get("type", "application/octet-stream")), data.get("data")
    if isinstance(data, str):
        try:
            parsed = json.loads(data)
        except ValueError:
            # The stock runner sends raw HTML as a media record (protocol.md §4.3).
            return "text/html", data
        return _normalise_media(parsed)
    return "text/plain", str(data)


@dataclass(frozen=True)
class Output:
    """Output produced by the running code."""

    item: ConsoleItem


@dataclass(frozen=True)
class WaitingInput:
    """The code called ``input()``/``getpass()``; answer with ``Execution.send_input``."""

    prompt: str = ""
    is_password: bool = False


@dataclass(frozen=True)
class StepFinished:
    """A batch-mode ``clean`` or ``build`` step ended."""

    step: Literal["clean", "build"]
    exit_code: int | None


@dataclass(frozen=True)
class Finished:
    """The run ended; ``exit_code`` is 0 on success, 1 for an exception (26.x), 130 if killed."""

    exit_code: int | None
    status: str = "finished"


@dataclass(frozen=True)
class Reconnecting:
    """The connection to the manager failed during a run; the client is retrying.

    ``reason`` is one line (``connection refused``, ``503 the manager is restarting``, ...);
    ``elapsed`` the seconds since the first failure of this outage; ``attempt`` counts from 1;
    ``delay`` is the wait before the next attempt. Front-ends update one status line with it.
    """

    reason: str
    elapsed: float
    attempt: int
    delay: float


@dataclass(frozen=True)
class Resumed:
    """The manager answers again and the run goes on where it was: nothing was lost."""

    elapsed: float
    attempts: int


@dataclass(frozen=True)
class OutputLost:
    """The server lost the run: output after what was already delivered will not arrive.

    ``reason`` says why in one line; ``after`` describes the last output delivered (its tail),
    so that a front-end can say from where output is missing.
    """

    reason: str
    after: str


ExecEvent = (
    Output | WaitingInput | StepFinished | Finished | Reconnecting | Resumed | OutputLost
)
