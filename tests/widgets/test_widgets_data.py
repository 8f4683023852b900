"""The widgets' pure data layer: bounds, slider specs, flag formatting, labels."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backendai_jupyter.widgets._data import (
    FALLBACK_IMAGE,
    GIB,
    Preset,
    ResourceOptions,
    SessionRow,
    SlotSpec,
    allocatable_bounds,
    entry_label,
    format_bytes,
    remote_join,
    slot_specs,
    slot_text,
    slot_widget_value,
    sort_entries,
)

CHECK = {
    "keypair_remaining": {"cpu": "Infinity", "mem": "Infinity", "cuda.shares": "NaN"},
    "group_remaining": {"cpu": "6", "mem": str(16 * GIB), "cuda.shares": "Infinity"},
    "scaling_group_remaining": {"cpu": "8", "mem": str(12 * GIB), "cuda.shares": "2.5"},
    "presets": [
        {
            "name": "small",
            "resource_slots": {"cpu": "1", "mem": str(GIB)},
            "shared_memory": None,
            "allocatable": True,
        },
        {
            "name": "big",
            "resource_slots": {"cpu": "16", "mem": str(64 * GIB)},
            "shared_memory": str(2 * GIB),
            "allocatable": False,
        },
    ],
}
SLOTS = {"cpu": "count", "mem": "bytes", "cuda.shares": "count", "cuda.device": "count"}


def test_bounds_take_the_smallest_finite_remaining_amount() -> None:
    assert allocatable_bounds(CHECK) == {
        "cpu": Decimal(6),
        "mem": Decimal(12 * GIB),
        "cuda.shares": Decimal("2.5"),
    }


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ({}, {}),
        ({"keypair_remaining": {"cpu": "Infinity"}}, {}),
        ({"keypair_remaining": {"cpu": "-1"}}, {"cpu": Decimal(0)}),  # over-used: nothing left
        ({"keypair_remaining": {"cpu": "junk"}, "group_remaining": "oops"}, {}),
    ],
)
def test_bounds_edge_cases(check: dict[str, object], expected: dict[str, Decimal]) -> None:
    assert allocatable_bounds(check) == expected


def test_slot_specs_order_kinds_and_bounds() -> None:
    specs = slot_specs(SLOTS, allocatable_bounds(CHECK))
    assert [s.name for s in specs] == ["cpu", "mem", "cuda.device", "cuda.shares"]
    cpu, mem, dev, shares = specs
    assert (cpu.kind, cpu.minimum, cpu.maximum, cpu.required) == ("int", 1.0, 6.0, True)
    assert (mem.kind, mem.minimum, mem.maximum, mem.step) == ("bytes", 0.25, 12.0, 0.25)
    # cuda.device is unbounded here (no amount given): a generous default ceiling, whole devices.
    assert (dev.kind, dev.minimum, dev.required) == ("int", 0.0, False)
    assert (shares.kind, shares.maximum, shares.step) == ("float", 2.5, 0.1)
    assert all(s.available for s in specs)


def test_a_slot_with_nothing_left_is_unavailable() -> None:
    (cpu,) = slot_specs({"cpu": "count"}, {"cpu": Decimal(0)})
    assert not cpu.available


@pytest.mark.parametrize(
    ("spec", "value", "text"),
    [
        (SlotSpec("cpu", "int", 1, 8, 1, True, "cpu"), 2, "2"),
        (SlotSpec("mem", "bytes", 0.25, 8, 0.25, True, "mem"), 4.0, "4g"),
        (SlotSpec("mem", "bytes", 0.25, 8, 0.25, True, "mem"), 1.5, "1.5g"),
        (SlotSpec("mem", "bytes", 0.25, 8, 0.25, True, "mem"), 0.25, "256m"),
        (SlotSpec("cuda.shares", "float", 0, 4, 0.1, False, "s"), 0.5, "0.5"),
        (SlotSpec("cuda.shares", "float", 0, 4, 0.1, False, "s"), 0.30000000000000004, "0.3"),
        (SlotSpec("cuda.shares", "float", 0, 4, 0.1, False, "s"), 2.0, "2"),
        (SlotSpec("cuda.device", "int", 0, 4, 1, False, "d"), 0, None),
    ],
)
def test_slot_text(spec: SlotSpec, value: float, text: str | None) -> None:
    assert slot_text(spec, value) == text


def test_slot_widget_value_reads_server_amounts() -> None:
    mem = SlotSpec("mem", "bytes", 0.25, 8, 0.25, True, "mem")
    cpu = SlotSpec("cpu", "int", 1, 8, 1, True, "cpu")
    shares = SlotSpec("cuda.shares", "float", 0, 4, 0.1, False, "s")
    assert slot_widget_value(mem, str(3 * GIB)) == 3.0
    assert slot_widget_value(mem, "512m") == 0.5
    assert slot_widget_value(cpu, "4") == 4.0
    assert slot_widget_value(shares, "0.5") == 0.5
    assert slot_widget_value(shares, "Infinity") == 0.0


def test_preset_and_options_from_check_presets() -> None:
    options = ResourceOptions.build(SLOTS, CHECK, ["img:1"])
    assert options.presets == (
        Preset("small", {"cpu": "1", "mem": str(GIB)}, None, True),
        Preset("big", {"cpu": "16", "mem": str(64 * GIB)}, 2 * GIB, False),
    )
    assert options.images == ("img:1",)
    assert len(options.specs) == 4


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (50 * 2**20, "50.0 MiB"),
        (3 * GIB // 2, "1.5 GiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_session_row_parses_graphql_items() -> None:
    row = SessionRow.from_json(
        {
            "id": "abc",
            "name": "s1",
            "status": "RUNNING",
            "image": "python:3",
            "occupied_slots": '{"cpu": "2", "mem": "4294967296", "cuda.shares": "0"}',
            "created_at": "2025-01-01T00:00:00",
        }
    )
    assert row.key == "abc"
    assert row.slots["cpu"] == "2"
    assert row.label() == "s1  [RUNNING]  python:3  cpu=2 mem=4.0 GiB"
    gpu = SessionRow.from_json({"name": "g", "status": "RUNNING", "image": "py",
                                "occupied_slots": {"cpu": "1.000000", "cuda.shares": "0.500000"}})
    assert gpu.label() == "g  [RUNNING]  py  cpu=1 cuda.shares=0.5"
    assert SessionRow.from_json({"name": "n", "occupied_slots": "not json"}).key == "n"


def test_listing_helpers() -> None:
    assert remote_join("", "a") == "a"
    assert remote_join("a/b", "c") == "a/b/c"
    assert remote_join(".", "/x/") == "x"
    entries = [
        {"name": "z.txt", "type": "file", "size": 2048},
        {"name": "data", "type": "directory", "size": 0},
        {"name": "a.txt", "type": "file", "size": 1},
    ]
    assert [e["name"] for e in sort_entries(entries)] == ["data", "a.txt", "z.txt"]
    assert entry_label(entries[0]) == "z.txt  (2.0 KiB)"
    assert entry_label(entries[1]) == "data/"


def test_fallback_image_is_the_kernels_default() -> None:
    from backendai_jupyter.workspace.settings import DEFAULT_IMAGE

    assert FALLBACK_IMAGE == DEFAULT_IMAGE


@pytest.mark.parametrize(
    ("group", "shares_max", "step", "cpu_max"),
    [
        (None, 2.5, 0.1, 6.0),  # 24.03 / local endpoint: only what check-presets says
        ({"resource_allocation_limit_for_sessions": '{"cpu": "4", "cuda.shares": "2"}',
          "accelerator_quantum_size": None}, 2.0, 0.1, 4.0),  # no agent has more than 2
        ({"resource_allocation_limit_for_sessions": {"cuda.shares": "8"},
          "accelerator_quantum_size": 0.25}, 2.5, 0.25, 6.0),  # free now is the bound
        ({"resource_allocation_limit_for_sessions": {},
          "accelerator_quantum_size": 1.0}, 2.0, 1.0, 6.0),  # whole steps below 2.5
    ],
)
def test_gpu_slider_bounded_by_agents_and_moving_by_the_quantum(
    group: dict[str, object] | None, shares_max: float, step: float, cpu_max: float
) -> None:
    options = ResourceOptions.build(SLOTS, CHECK, (), group)
    specs = {s.name: s for s in options.specs}
    assert (specs["cuda.shares"].maximum, specs["cuda.shares"].step) == (shares_max, step)
    assert specs["cpu"].maximum == cpu_max
