"""What the widgets show, without the widgets: pure functions and plain async fetchers.

The widget classes only lay out and wire what these functions compute, so the arithmetic
(allocatable bounds, slider specs, ``-r`` flag formatting, listing labels) is tested with plain
values, and the fetchers against the embedded local endpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from ..client import BackendAIError, Client
from ..client.capacity import Capacity, format_amount
from ..client.parsing import format_binary_size, parse_binary_size
from ..client.scheduling import group_infos, pick_group

__all__ = [
    "FALLBACK_IMAGE",
    "GIB",
    "Preset",
    "ResourceOptions",
    "SessionRow",
    "SlotSpec",
    "allocatable_bounds",
    "entry_label",
    "fetch_images",
    "fetch_resource_options",
    "fetch_sessions",
    "format_bytes",
    "remote_join",
    "slot_specs",
    "slot_text",
    "slot_widget_value",
]

GIB = 2**30
# The proxy kernel's default image (kernel/settings.py), repeated so that importing the widgets
# does not import the kernel; a test keeps the two equal.
FALLBACK_IMAGE = "cr.backend.ai/stable/python:3.13-ubuntu24.04"
# Slider ceiling for a slot no limit bounds (an "Infinity" everywhere, e.g. an admin keypair).
UNBOUNDED_MAX = {"cpu": Decimal(64), "mem": Decimal(256 * GIB)}
_REMAINING_KEYS = ("keypair_remaining", "group_remaining", "scaling_group_remaining")
_IMAGES_QUERY = "query { images { name tag registry installed } }"

SlotKind = Literal["int", "float", "bytes"]


def _amount(value: Any) -> Decimal | None:
    """A slot amount as a finite Decimal; ``None`` for "Infinity", "NaN" (hidden) or junk."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def allocatable_bounds(check: Mapping[str, Any]) -> dict[str, Decimal]:
    """The most of each slot one new session may take, from a ``/resource/check-presets`` answer.

    It is the smallest finite value among the keypair's, the project's and the resource group's
    remaining amounts (never below zero). A slot that is unlimited everywhere is left out.
    """
    bounds: dict[str, Decimal] = {}
    for key in _REMAINING_KEYS:
        remaining = check.get(key)
        if not isinstance(remaining, Mapping):
            continue
        for slot, value in remaining.items():
            amount = _amount(value)
            if amount is None:
                continue
            amount = max(amount, Decimal(0))
            bounds[str(slot)] = min(bounds.get(str(slot), amount), amount)
    return bounds


@dataclass(frozen=True)
class Preset:
    """A resource preset; ``slots`` holds the server's strings (mem in bytes)."""

    name: str
    slots: Mapping[str, str]
    shared_memory: int | None = None
    allocatable: bool = True

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Preset:
        slots = d.get("resource_slots") or {}
        shmem = _amount(d.get("shared_memory"))
        return cls(
            name=str(d.get("name", "")),
            slots={str(k): str(v) for k, v in slots.items()} if isinstance(slots, Mapping) else {},
            shared_memory=int(shmem) if shmem is not None and shmem > 0 else None,
            allocatable=bool(d.get("allocatable", True)),
        )


@dataclass(frozen=True)
class SlotSpec:
    """One slider: ``kind`` "bytes" sliders count GiB; bounds are in slider units."""

    name: str
    kind: SlotKind
    minimum: float
    maximum: float
    step: float
    required: bool
    description: str

    @property
    def available(self) -> bool:
        return self.maximum >= self.minimum and self.maximum > 0


def _kind(name: str, unit: str) -> SlotKind:
    if unit == "bytes" or name in ("mem", "shmem"):
        return "bytes"
    if name == "cpu" or name.endswith(".device"):
        return "int"  # whole cores and devices (cuda.device cannot be split)
    return "float"  # fractional accelerators: cuda.shares, ...


def _order(name: str) -> tuple[int, str]:
    return ({"cpu": 0, "mem": 1}.get(name, 2), name)


def slot_specs(
    slots: Mapping[str, str], bounds: Mapping[str, Decimal], quantum: Decimal | None = None
) -> list[SlotSpec]:
    """Slider specs for the known resource slots (``/config/resource-slots``), bounded.

    cpu and mem are required (minimum one core / 256 MiB); accelerators start at zero, which
    means "none"; fractional ones (``cuda.shares``) move by the server's ``quantum`` (0.1 when
    it does not say). A slot whose bound is below its minimum is reported with ``maximum``
    below ``minimum`` (see :attr:`SlotSpec.available`).
    """
    step = float(quantum) if quantum else 0.1
    specs: list[SlotSpec] = []
    for name in sorted(slots, key=_order):
        kind = _kind(name, slots[name])
        bound = bounds.get(name, UNBOUNDED_MAX.get(name, Decimal(8)))
        required = name in ("cpu", "mem")
        if kind == "bytes":
            specs.append(
                SlotSpec(name, kind, 0.25, float(bound / GIB), 0.25, required, f"{name} (GiB)")
            )
        elif kind == "int":
            minimum = 1.0 if required else 0.0
            specs.append(SlotSpec(name, kind, minimum, float(int(bound)), 1.0, required, name))
        else:
            top = float(bound // Decimal(str(step)) * Decimal(str(step)))
            specs.append(SlotSpec(name, kind, 0.0, top, step, required, name))
    return specs


def slot_text(spec: SlotSpec, value: float) -> str | None:
    """The ``-r`` value for a slider position: ``"2"``, ``"4g"``, ``"0.5"``; ``None`` for zero."""
    if value <= 0:
        return None
    if spec.kind == "bytes":
        return format_binary_size(int(round(value * GIB)))
    if spec.kind == "int":
        return str(int(value))
    return format(Decimal(str(round(value, 3))).normalize(), "f")


def slot_widget_value(spec: SlotSpec, text: str) -> float:
    """The slider position for a server amount (``"1073741824"`` or ``"1g"`` for mem)."""
    if spec.kind == "bytes":
        return parse_binary_size(text) / GIB
    amount = _amount(text) or Decimal(0)
    return float(int(amount)) if spec.kind == "int" else float(amount)


def format_bytes(n: float) -> str:
    """``52428800`` -> ``"50.0 MiB"`` (for progress labels and listings)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class ResourceOptions:
    """Everything the resource picker offers: slots with bounds, presets, images."""

    slots: Mapping[str, str]
    bounds: Mapping[str, Decimal]
    presets: tuple[Preset, ...]
    images: tuple[str, ...]
    specs: tuple[SlotSpec, ...] = field(default=())

    @classmethod
    def build(
        cls,
        slots: Mapping[str, str],
        check: Mapping[str, Any],
        images: Sequence[str] = (),
        group_info: Mapping[str, Any] | None = None,
    ) -> ResourceOptions:
        """``group_info``: the resource group's ``accessible_scaling_groups`` entry (26.x): no
        slider goes past what the largest agent has, fractions move by its quantum."""
        capacity = Capacity.build(slots, check, group_info)
        bounds = allocatable_bounds(check)
        for slot, most in capacity.per_agent.items():
            bounds[slot] = min(bounds.get(slot, most), most)
        raw = check.get("presets")
        presets = tuple(Preset.from_json(p) for p in raw or [] if isinstance(p, Mapping))
        return cls(
            slots=dict(slots),
            bounds=bounds,
            presets=presets,
            images=tuple(images),
            specs=tuple(slot_specs(slots, bounds, capacity.quantum)),
        )


async def fetch_images(client: Client, env: Mapping[str, str] | None = None) -> list[str]:
    """Image references to offer: ``BACKEND_IMAGE``, the default, then the server's images.

    The image list comes from the GraphQL ``images`` query (installed images first); servers
    that do not answer it (the local endpoint runs any "image" as local Python) add nothing.
    """
    values = os.environ if env is None else env
    found: list[str] = []
    try:
        data = await client.gql(_IMAGES_QUERY)
    except BackendAIError:
        data = None
    items = data.get("images") if isinstance(data, Mapping) else None
    if isinstance(items, list):
        ranked = sorted(
            (i for i in items if isinstance(i, Mapping) and i.get("name")),
            key=lambda i: not i.get("installed", True),
        )
        for item in ranked:
            ref = f"{item['name']}:{item.get('tag') or 'latest'}"
            registry = item.get("registry")
            found.append(f"{registry}/{ref}" if registry else ref)
    first = [values.get("BACKEND_IMAGE") or "", FALLBACK_IMAGE]
    return list(dict.fromkeys(i for i in (*first, *found) if i))


async def fetch_resource_options(client: Client) -> ResourceOptions:
    """Slots, allocatable bounds and presets (``/resource/check-presets``), and images."""
    slots = await client.resources.resource_slots()
    check = await client.resources.check_presets()
    group = pick_group(await group_infos(client), None)
    images = await fetch_images(client)
    return ResourceOptions.build(slots, check, images, group)


# -- sessions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    """One line of the session dashboard."""

    id: str
    name: str
    status: str
    image: str
    slots: Mapping[str, str]
    created_at: str

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SessionRow:
        slots: Any = d.get("occupied_slots") or {}
        if isinstance(slots, str):  # GraphQL sends it as a JSON string
            try:
                slots = json.loads(slots)
            except ValueError:
                slots = {}
        return cls(
            id=str(d.get("id") or d.get("session_id") or ""),
            name=str(d.get("name") or d.get("session_name") or ""),
            status=str(d.get("status") or ""),
            image=str(d.get("image") or ""),
            slots={str(k): str(v) for k, v in slots.items()} if isinstance(slots, dict) else {},
            created_at=str(d.get("created_at") or ""),
        )

    @property
    def key(self) -> str:
        """What the session API accepts: the id when known, else the name."""
        return self.id or self.name

    def label(self) -> str:
        parts = []
        for slot, value in self.slots.items():
            amount = _amount(value)
            if amount is None or amount == 0:
                continue
            shown = format_bytes(float(amount)) if slot == "mem" else format_amount(slot, amount)
            parts.append(f"{slot}={shown}")
        return f"{self.name}  [{self.status}]  {self.image}  {' '.join(parts)}".rstrip()


async def fetch_sessions(client: Client) -> list[SessionRow]:
    """The caller's live sessions (``compute_session_list``), newest first."""
    items = await client.sessions.list()
    rows = [SessionRow.from_json(d) for d in items]
    return sorted(rows, key=lambda r: r.created_at, reverse=True)


# -- folders -------------------------------------------------------------------------------------


def remote_join(*parts: str) -> str:
    """Join folder-relative path pieces (``""`` is the folder root)."""
    kept = [p.strip("/") for p in parts if p.strip("/") not in ("", ".")]
    return "/".join(kept)


def entry_label(entry: Mapping[str, Any]) -> str:
    """``"data/"`` or ``"big.bin  (50.0 MiB)"`` for a normalised listing entry.

    Plain text: a ``<select>`` option cannot hold an icon, and emoji fonts are not everywhere.
    """
    name = str(entry.get("name", ""))
    if entry.get("type") == "directory":
        return f"{name}/"
    return f"{name}  ({format_bytes(int(entry.get('size') or 0))})"


def sort_entries(entries: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Directories first, then files, each by name."""
    return sorted(entries, key=lambda e: (e.get("type") != "directory", str(e.get("name", ""))))
