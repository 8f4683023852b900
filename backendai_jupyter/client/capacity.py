"""What a cluster can give a session, and what a request may take: pure functions.

The numbers come from the server's own answers (see :mod:`.scheduling` for the fetching):

* ``GET /config/resource-slots``: the slot types the agents advertise (``cuda.shares`` on a
  fractional-GPU cluster, ``cuda.device`` on a whole-device one, neither without GPUs);
* ``POST /resource/check-presets``: the keypair's and the project's limits and what is left of
  them, and what is free now in each resource group;
* GraphQL ``accessible_scaling_groups`` (26.x, any user): ``resource_allocation_limit_for_sessions``
  (the most of each slot one agent has, i.e. the largest session that can ever be placed) and
  ``accelerator_quantum_size`` (the fractional-GPU step; ``null`` when the cluster sets none).

Everything here takes and returns plain values so that it is tested by tables: the allocation
a session reports (:func:`describe_allocation`), the refusal of a request that can never run
(:func:`refusal`), the words for a session that waits (:func:`wait_reason`) and the number of
GPU cases that fit at once (:func:`parallel_fit`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from .parsing import format_binary_size, parse_binary_size

__all__ = [
    "Capacity",
    "Refusal",
    "accelerator_slots",
    "amount",
    "describe_allocation",
    "describe_slots",
    "format_amount",
    "largest",
    "parallel_fit",
    "parse_slot_map",
    "refusal",
    "request_amounts",
    "scheduler_words",
    "session_gpu_facts",
    "wait_reason",
]

_BYTES = frozenset({"mem", "shmem"})
_LIMIT_KEYS = (("keypair_limits", "keypair"), ("group_limits", "project"))
_REMAINING_KEYS = (("keypair_remaining", "keypair"), ("group_remaining", "project"))


def amount(value: Any) -> Decimal | None:
    """A slot amount as a finite Decimal; ``None`` for "Infinity", "NaN" (hidden) or junk."""
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def parse_slot_map(value: Any) -> dict[str, Decimal]:
    """A slot map as the server sends it: a dict, a JSON string, or (26.x ``GET /session``) the
    repr of a dict of Decimals (``"{'cpu': Decimal('1.000000'), ...}"``). Junk gives ``{}``."""
    if isinstance(value, str):
        text = value.strip()
        if not text or text == "None":
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            # The repr form: turn Decimal('x') into "x" and quotes into JSON's.
            cleaned = text.replace("Decimal(", "").replace("')", "'").replace("'", '"')
            try:
                value = json.loads(cleaned)
            except ValueError:
                return {}
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, Decimal] = {}
    for slot, raw in value.items():
        number = amount(raw)
        if number is not None:
            out[str(slot)] = number
    return out


def request_amounts(resources: Mapping[str, Any]) -> dict[str, Decimal]:
    """``{"mem": "4g", "cuda.shares": "0.5"}`` → amounts in server units (mem in bytes)."""
    out: dict[str, Decimal] = {}
    for slot, raw in resources.items():
        text = str(raw).strip()
        if slot in _BYTES:
            try:
                out[slot] = Decimal(parse_binary_size(text))
            except ValueError:
                continue
        else:
            number = amount(text)
            if number is not None:
                out[slot] = number
    return out


def accelerator_slots(names: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """The slots that are not cpu/mem (``cuda.shares``, ``cuda.device``, ...), sorted."""
    return sorted(str(n) for n in names if n not in ("cpu", "mem", "shmem"))


def largest(requests: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The largest value of each slot over several requests (``-r`` texts), as text."""
    out: dict[str, str] = {}
    sizes: dict[str, Decimal] = {}
    for request in requests:
        for slot, value in request_amounts(request).items():
            if slot not in sizes or value > sizes[slot]:
                sizes[slot], out[slot] = value, str(request[slot])
    return out


def format_amount(slot: str, value: Decimal) -> str:
    """``mem`` 4294967296 → ``"4g"``; ``cuda.shares`` 0.50 → ``"0.5"``; 2.000000 → ``"2"``."""
    if slot in _BYTES:
        return format_binary_size(int(value))
    text = format(value.normalize(), "f")
    return text


@dataclass(frozen=True)
class Capacity:
    """What one resource group offers a user, from the server's answers (see module doc).

    ``per_agent`` is empty when the server does not say (24.03, the local endpoint): then only
    the limits and the slot types are checked. ``limits`` holds the smallest finite limit of
    each slot and whose it is (``"keypair"`` / ``"project"``).
    """

    scaling_group: str
    slots: Mapping[str, str]
    free: Mapping[str, Decimal]
    per_agent: Mapping[str, Decimal] = field(default_factory=dict)
    limits: Mapping[str, tuple[str, Decimal]] = field(default_factory=dict)
    remaining: Mapping[str, tuple[str, Decimal]] = field(default_factory=dict)
    quantum: Decimal | None = None

    @classmethod
    def build(
        cls,
        slots: Mapping[str, str],
        check: Mapping[str, Any],
        group_info: Mapping[str, Any] | None = None,
        scaling_group: str | None = None,
    ) -> Capacity:
        """From ``/config/resource-slots``, ``/resource/check-presets`` and one entry of
        ``accessible_scaling_groups`` (or ``None``)."""
        groups = check.get("scaling_groups")
        name = scaling_group or ""
        free_raw: Any = check.get("scaling_group_remaining")
        if isinstance(groups, Mapping):
            if not name and len(groups) == 1:
                name = str(next(iter(groups)))
            entry = groups.get(name)
            if isinstance(entry, Mapping) and isinstance(entry.get("remaining"), Mapping):
                free_raw = entry["remaining"]
        info = group_info or {}
        quantum = amount(info.get("accelerator_quantum_size"))
        return cls(
            scaling_group=name,
            slots=dict(slots),
            free=parse_slot_map(free_raw),
            per_agent=parse_slot_map(info.get("resource_allocation_limit_for_sessions")),
            limits=_smallest(check, _LIMIT_KEYS),
            remaining=_smallest(check, _REMAINING_KEYS),
            quantum=quantum if quantum is not None and quantum > 0 else None,
        )


def _smallest(
    check: Mapping[str, Any], keys: Sequence[tuple[str, str]]
) -> dict[str, tuple[str, Decimal]]:
    out: dict[str, tuple[str, Decimal]] = {}
    for key, whose in keys:
        for slot, value in parse_slot_map(check.get(key)).items():
            if slot not in out or value < out[slot][1]:
                out[slot] = (whose, max(value, Decimal(0)))
    return out


@dataclass(frozen=True)
class Refusal:
    """A request that can never run: which slot, what was asked, what is possible."""

    slot: str
    asked: Decimal
    possible: Decimal | None
    why: str

    def message(self) -> str:
        asked = format_amount(self.slot, self.asked)
        return f"{self.slot}={asked} can never run: {self.why}"


def refusal(request: Mapping[str, Decimal], cap: Capacity) -> Refusal | None:
    """The first slot of ``request`` the cluster can never give, or ``None``.

    In order: a slot type the cluster does not have (``cuda.device`` on a fractional-GPU
    cluster), a keypair or project limit below the request, more than any one agent has, and
    a fractional amount that is not a multiple of the cluster's quantum.
    """
    for slot in sorted(request, key=lambda s: (s in ("cpu", "mem"), s)):
        asked = request[slot]
        if asked <= 0:
            continue
        if cap.slots and slot not in cap.slots:
            offered = ", ".join(accelerator_slots(cap.slots)) or "no accelerators"
            return Refusal(slot, asked, None, f"this cluster has no {slot} slot ({offered})")
        if slot in cap.limits and asked > cap.limits[slot][1]:
            whose, limit = cap.limits[slot]
            return Refusal(
                slot, asked, limit,
                f"your {whose}'s limit is {format_amount(slot, limit)}",
            )
        if cap.per_agent:
            most = cap.per_agent.get(slot, Decimal(0))
            if asked > most:
                return Refusal(
                    slot, asked, most,
                    f"the largest agent in resource group {cap.scaling_group or 'default'!r} "
                    f"has {format_amount(slot, most)}",
                )
        if cap.quantum and slot.endswith(".shares") and asked % cap.quantum:
            return Refusal(
                slot, asked, None,
                f"amounts of {slot} are multiples of {format_amount(slot, cap.quantum)}",
            )
    return None


def wait_reason(
    request: Mapping[str, Decimal], cap: Capacity, ahead: int, status_info: str = ""
) -> str:
    """Why a PENDING session waits, in words: the slots it needs beyond what is free now.

    ``"waiting for 1 cuda.shares: 0 free, 1 session ahead"``. ``ahead`` counts the caller's own
    sessions queued before this one (the only part of the queue a plain user can see);
    ``status_info`` is the manager's own word when it gives one.
    """
    short: list[str] = []
    for slot in sorted(request, key=lambda s: (s in ("cpu", "mem"), s)):
        asked = request[slot]
        free = _free_for(slot, cap)
        if asked > 0 and free is not None and asked > free:
            short.append(
                f"{format_amount(slot, asked)} {slot}: {format_amount(slot, free)} free"
            )
    queue = f"{ahead} session{'s' if ahead != 1 else ''} ahead" if ahead else ""
    if short:
        text = "waiting for " + "; ".join(short)
    elif ahead:
        text = "waiting in the queue"
    else:
        text = "waiting for the scheduler"
    parts = [text, queue]
    if status_info and status_info.lower() not in ("none", "pending"):
        parts.append(f"manager: {status_info}")
    return ", ".join(p for p in parts if p)


def scheduler_words(status_info: str, status_data: Any) -> str:
    """The manager's own word on a PENDING session: 24.03 puts the scheduler's last message in
    ``statusData.scheduler.msg`` (and a code in ``statusInfo``); 26.9.6 sends neither to users."""
    data = status_data
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            data = None
    scheduler = data.get("scheduler") if isinstance(data, Mapping) else None
    if isinstance(scheduler, Mapping):
        failed = [str(p.get("msg") or p.get("name")) for p in scheduler.get("failed_predicates")
                  or () if isinstance(p, Mapping)]
        words = "; ".join(failed) or str(scheduler.get("msg") or "")
        # The session's own id and group add nothing the user does not know.
        words = re.sub(r"\s*\(id: [^)]*\)\s*$", "", words.strip())
        if words:
            return words.rstrip(".")
    text = status_info.strip()
    return "" if text.lower() in ("", "none", "pending") else text


def _free_for(slot: str, cap: Capacity) -> Decimal | None:
    free = cap.free.get(slot)
    left = cap.remaining.get(slot)
    if left is not None and (free is None or left[1] < free):
        return left[1]
    return free


def parallel_fit(per_case: Mapping[str, Decimal], cap: Capacity, cases: int) -> int:
    """How many cases asking ``per_case`` fit at once in what is free now (at least 1).

    Only accelerator slots count (cpu and mem queue cheaply); without an accelerator request
    the answer is ``cases``.
    """
    fits: list[int] = []
    for slot in accelerator_slots(per_case):
        asked = per_case[slot]
        free = _free_for(slot, cap)
        if asked > 0 and free is not None:
            fits.append(int(free // asked))
    if not fits:
        return max(cases, 1)
    return max(1, min(min(fits), cases))


def session_gpu_facts(env: Mapping[str, str], resource_txt: str) -> dict[str, Any]:
    """What a session says about its GPUs: its environment and ``/home/config/resource.txt``
    (written by the agent) or, on the local endpoint, ``CUDA_VISIBLE_DEVICES``.

    ``{"slots": {...}, "count": 1, "model": "CUDA GPU", "memory": 8589934592}``; keys are left
    out when the session does not say.
    """
    lines = dict(
        line.split("=", 1) for line in resource_txt.splitlines() if "=" in line
    )
    facts: dict[str, Any] = {}
    slots = parse_slot_map(lines.get("SLOTS", ""))
    if slots:
        facts["slots"] = slots
    count = env.get("GPU_COUNT") or env.get("N_GPUS")
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if count and count.isdigit():
        facts["count"] = int(count)
    elif visible:
        facts["count"] = len([d for d in visible.split(",") if d.strip()])
    if env.get("GPU_MODEL_NAME"):
        facts["model"] = env["GPU_MODEL_NAME"]
    limits = lines.get("CUDA_MEMORY_LIMITS", "")
    total = 0
    for item in limits.split(","):
        _, _, size = item.rpartition(":")
        if size.strip().isdigit():
            total += int(size)
    if total:
        facts["memory"] = total
    return facts


def describe_slots(slots: Mapping[str, Decimal], *, accelerators_only: bool = False) -> str:
    """``cpu 1 · mem 1g · cuda.shares 0.5`` (zero amounts left out)."""
    names = accelerator_slots(slots) if accelerators_only else sorted(
        slots, key=lambda s: ({"cpu": 0, "mem": 1}.get(s, 2), s)
    )
    return " · ".join(
        f"{s} {format_amount(s, slots[s])}" for s in names if slots[s] > 0
    )


def describe_allocation(slots: Mapping[str, Decimal], facts: Mapping[str, Any]) -> str:
    """The GPU part of a session's allocation in words, or ``""`` when it has none.

    ``"GPU: cuda.shares 0.5 (1 device, CUDA GPU, 8 GiB)"``; ``slots`` are the session's occupied
    slots (the API's), ``facts`` what the session itself reported (:func:`session_gpu_facts`).
    """
    reported = facts.get("slots")
    merged = dict(reported) if isinstance(reported, Mapping) and not slots else dict(slots)
    gpu = describe_slots(merged, accelerators_only=True)
    if not gpu:
        return ""
    details: list[str] = []
    count = facts.get("count")
    if isinstance(count, int):
        details.append(f"{count} device{'s' if count != 1 else ''}")
    if facts.get("model"):
        details.append(str(facts["model"]))
    memory = facts.get("memory")
    if isinstance(memory, int) and memory > 0:
        details.append(f"{memory / 2**30:g} GiB")
    return f"GPU: {gpu}" + (f" ({', '.join(details)})" if details else "")
