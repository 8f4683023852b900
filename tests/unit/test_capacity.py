"""The pure side of GPU scheduling: allocations, refusals, wait reasons, parallelism."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from backendai_jupyter.client.capacity import (
    Capacity,
    describe_allocation,
    largest,
    parallel_fit,
    parse_slot_map,
    refusal,
    request_amounts,
    scheduler_words,
    session_gpu_facts,
    wait_reason,
)

# A 26.9.6 check-presets answer (trimmed) with 2 mock GPUs in shares mode, as the cluster sends it.
CHECK: dict[str, Any] = {
    "keypair_limits": {"cpu": "Infinity", "mem": "Infinity", "cuda.shares": "Infinity"},
    "keypair_remaining": {"cpu": "Infinity", "mem": "Infinity", "cuda.shares": "Infinity"},
    "group_limits": {"cpu": "NaN", "mem": "NaN", "cuda.shares": "NaN"},
    "group_remaining": {"cpu": "NaN", "mem": "NaN", "cuda.shares": "NaN"},
    "scaling_group_remaining": {"cpu": "7.000000", "mem": "16106127360.000000",
                                "cuda.shares": "2.000000", "cuda.device": "0"},
    "scaling_groups": {"default": {"using": {"cuda.shares": "0"},
                                   "remaining": {"cpu": "6.000000", "mem": "15032385536",
                                                 "cuda.shares": "0.500000"}}},
}
SLOTS = {"cpu": "count", "mem": "bytes", "cuda.shares": "count"}
# accessible_scaling_groups' entry (26.9.6 sends the limit as a JSON string).
GROUP = {"name": "default", "accelerator_quantum_size": None,
         "resource_allocation_limit_for_sessions":
             '{"cpu": "7", "cuda.shares": "2", "mem": "16106127360"}'}

CAP = Capacity.build(SLOTS, CHECK, GROUP)
CAP_NO_AGENTS = Capacity.build(SLOTS, CHECK, None)  # 24.03: no per-agent data for users
LIMITED = Capacity.build(
    SLOTS, {**CHECK, "keypair_limits": {"cuda.shares": "1", "cpu": "Infinity"},
            "group_limits": {"cuda.shares": "1.5", "mem": "4294967296"}}, GROUP)
QUANTUM = Capacity.build(SLOTS, CHECK, {**GROUP, "accelerator_quantum_size": 0.25})
DEVICES = Capacity.build({"cpu": "count", "mem": "bytes", "cuda.device": "count"}, CHECK,
                         {**GROUP, "resource_allocation_limit_for_sessions":
                          {"cpu": "7", "cuda.device": "2"}})


def test_build_reads_the_named_group_and_the_smallest_limits() -> None:
    assert CAP.scaling_group == "default"
    assert CAP.free["cuda.shares"] == D("0.5")  # the group's own remaining wins
    assert CAP.per_agent == {"cpu": D(7), "cuda.shares": D(2), "mem": D(16106127360)}
    assert CAP.limits == {}  # Infinity and NaN are no limits
    assert LIMITED.limits == {"cuda.shares": ("keypair", D(1)), "mem": ("project", D(2**32))}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"cpu": "1", "mem": "1073741824"}, {"cpu": D(1), "mem": D(2**30)}),
        ('{"cuda.shares": "0.5"}', {"cuda.shares": D("0.5")}),
        ("{'cpu': Decimal('1.000000'), 'cuda.shares': Decimal('3.000000')}",
         {"cpu": D(1), "cuda.shares": D(3)}),
        ("None", {}),
        ("", {}),
        ("{broken", {}),
        ({"cpu": "Infinity", "mem": "NaN"}, {}),
        (None, {}),
    ],
)
def test_parse_slot_map(value: Any, expected: dict[str, D]) -> None:
    assert parse_slot_map(value) == expected


@pytest.mark.parametrize(
    ("request_", "cap", "expected"),
    [
        ({"cpu": "1", "mem": "1g", "cuda.shares": "0.5"}, CAP, None),
        ({"cuda.shares": "2"}, CAP, None),  # all of one agent: may wait, never refused
        ({"cuda.shares": "3"}, CAP,
         "cuda.shares=3 can never run: the largest agent in resource group 'default' has 2"),
        ({"cpu": "8"}, CAP,
         "cpu=8 can never run: the largest agent in resource group 'default' has 7"),
        ({"cuda.device": "1"}, CAP,
         "cuda.device=1 can never run: this cluster has no cuda.device slot (cuda.shares)"),
        ({"cuda.shares": "1"}, DEVICES,
         "cuda.shares=1 can never run: this cluster has no cuda.shares slot (cuda.device)"),
        ({"cuda.device": "3"}, DEVICES,
         "cuda.device=3 can never run: the largest agent in resource group 'default' has 2"),
        ({"cuda.shares": "3"}, CAP_NO_AGENTS, None),  # the server does not say: let it decide
        ({"cuda.shares": "1.2"}, LIMITED, "cuda.shares=1.2 can never run: your keypair's limit is 1"),
        ({"mem": "8g"}, LIMITED, "mem=8g can never run: your project's limit is 4g"),
        ({"cuda.shares": "0.3"}, QUANTUM,
         "cuda.shares=0.3 can never run: amounts of cuda.shares are multiples of 0.25"),
        ({"cuda.shares": "0.75"}, QUANTUM, None),
        ({"cuda.shares": "1"}, Capacity.build({"cpu": "count", "mem": "bytes"}, CHECK),
         "cuda.shares=1 can never run: this cluster has no cuda.shares slot (no accelerators)"),
    ],
)
def test_refusal(request_: dict[str, str], cap: Capacity, expected: str | None) -> None:
    found = refusal(request_amounts(request_), cap)
    assert (found.message() if found else None) == expected


def test_refusal_names_slot_asked_and_possible() -> None:
    found = refusal({"cuda.shares": D(3)}, CAP)
    assert found is not None
    assert (found.slot, found.asked, found.possible) == ("cuda.shares", D(3), D(2))


@pytest.mark.parametrize(
    ("request_", "ahead", "info", "expected"),
    [
        ({"cuda.shares": "1"}, 1, "None", "waiting for 1 cuda.shares: 0.5 free, 1 session ahead"),
        ({"cuda.shares": "1", "cpu": "8"}, 0, "",
         "waiting for 1 cuda.shares: 0.5 free; 8 cpu: 6 free"),
        ({"cuda.shares": "0.5"}, 2, "", "waiting in the queue, 2 sessions ahead"),
        ({"cuda.shares": "0.5"}, 0, "", "waiting for the scheduler"),
        ({"cuda.shares": "0.5"}, 0, "predicate-checks-failed",
         "waiting for the scheduler, manager: predicate-checks-failed"),
    ],
)
def test_wait_reason(request_: dict[str, str], ahead: int, info: str, expected: str) -> None:
    assert wait_reason(request_amounts(request_), CAP, ahead, info) == expected


def test_wait_reason_counts_the_keypair_remaining() -> None:
    cap = Capacity.build(SLOTS, {**CHECK, "keypair_remaining": {"cuda.shares": "0"}}, GROUP)
    assert wait_reason({"cuda.shares": D("0.5")}, cap, 0) == (
        "waiting for 0.5 cuda.shares: 0 free"
    )


@pytest.mark.parametrize(
    ("per_case", "cases", "free", "expected"),
    [
        ({"cuda.shares": "0.5"}, 10, "2", 4),
        ({"cuda.shares": "0.5"}, 3, "2", 3),
        ({"cuda.shares": "1", "cpu": "1"}, 5, "1.5", 1),
        ({"cuda.shares": "1"}, 5, "0", 1),  # nothing free now: one at a time, in the queue
        ({"cpu": "1"}, 6, "0", 6),  # no accelerator: cpu and mem do not bound it
    ],
)
def test_parallel_fit(per_case: dict[str, str], cases: int, free: str, expected: int) -> None:
    check = {**CHECK, "scaling_groups": {}, "scaling_group_remaining": {"cuda.shares": free}}
    cap = Capacity.build(SLOTS, check, GROUP)
    assert parallel_fit(request_amounts(per_case), cap, cases) == expected


RESOURCE_TXT = (
    'SLOTS={"cpu":"1","mem":"1073741824","cuda.shares":"0.5"}\n'
    "CUDA_GLOBAL_DEVICE_IDS=0:c59395cd\nCUDA_MEMORY_LIMITS=c59395cd:8589934592\n"
)


@pytest.mark.parametrize(
    ("env", "txt", "expected"),
    [
        ({"GPU_COUNT": "1", "GPU_MODEL_NAME": "CUDA GPU"}, RESOURCE_TXT,
         {"slots": {"cpu": D(1), "mem": D(2**30), "cuda.shares": D("0.5")}, "count": 1,
          "model": "CUDA GPU", "memory": 8589934592}),
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, "", {"count": 2}),
        ({}, "", {}),
        ({"GPU_COUNT": "2"}, "CUDA_MEMORY_LIMITS=a:100,b:200\n", {"count": 2, "memory": 300}),
    ],
)
def test_session_gpu_facts(env: dict[str, str], txt: str, expected: dict[str, Any]) -> None:
    assert session_gpu_facts(env, txt) == expected


@pytest.mark.parametrize(
    ("slots", "facts", "expected"),
    [
        ({"cpu": D(1), "cuda.shares": D("0.500000")},
         {"count": 1, "model": "CUDA GPU", "memory": 8589934592},
         "GPU: cuda.shares 0.5 (1 device, CUDA GPU, 8 GiB)"),
        ({"cpu": D(1), "cuda.device": D(2)}, {"count": 2}, "GPU: cuda.device 2 (2 devices)"),
        ({"cpu": D(1), "mem": D(2**30)}, {}, ""),
        ({}, {"slots": {"cuda.shares": D("0.5")}}, "GPU: cuda.shares 0.5"),
        ({"cuda.shares": D(0)}, {}, ""),
    ],
)
def test_describe_allocation(slots: dict[str, D], facts: dict[str, Any], expected: str) -> None:
    assert describe_allocation(slots, facts) == expected


def test_largest_request_over_cases() -> None:
    cases = [{"cpu": "1", "cuda.shares": "0.5"}, {"cpu": "1", "cuda.shares": "1"},
             {"mem": "2g"}, {"mem": "512m"}]
    assert largest(cases) == {"cpu": "1", "cuda.shares": "1", "mem": "2g"}


@pytest.mark.parametrize(
    ("info", "data", "expected"),
    [
        # 24.03: the scheduler's last message, with the code in statusInfo
        ("no-available-instances",
         {"scheduler": {"msg": "Could not find a contiguous resource region in any agent big "
                               "enough to host the session (id: x, resource group: default)",
                        "retries": 3, "failed_predicates": [], "passed_predicates": []}},
         "Could not find a contiguous resource region in any agent big enough to host the "
         "session"),
        ("predicate-checks-failed",
         '{"scheduler": {"msg": "", "failed_predicates": '
         '[{"name": "keypair_resource_limit", "msg": "Your keypair resource quota is exceeded."}]}}',
         "Your keypair resource quota is exceeded"),
        ("None", None, ""),  # 26.9.6 tells a user nothing
        ("", {"retries": 0}, ""),
        ("some-code", "not json", "some-code"),
    ],
)
def test_scheduler_words(info: str, data: Any, expected: str) -> None:
    assert scheduler_words(info, data) == expected
