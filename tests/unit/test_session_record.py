"""``SessionRecord``: the typed answer of ``sessions.list`` and ``sessions.info`` (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from backendai_jupyter.client import SessionRecord

LIST_ITEM = {
    "id": "4c1d", "name": "bjk-1", "status": "RUNNING", "status_info": None, "image": "python",
    "type": "INTERACTIVE", "created_at": "2026-11-30T04:00:00Z", "result": "UNDEFINED",
    "occupied_slots": '{"cpu": "1"}',
}
INFO = {
    "status": "TERMINATED", "statusInfo": "idle-timeout", "image": "python", "lang": "python",
    "creationTime": "2026-11-30T04:00:00Z", "terminationTime": "2026-11-30T05:00:00Z",
    "servicePorts": [],
}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (SessionRecord.from_list(LIST_ITEM),
         ("4c1d", "bjk-1", "RUNNING", "", "python", "INTERACTIVE", "2026-11-30T04:00:00Z", "",
          "UNDEFINED")),
        (SessionRecord.from_list({"name": "x", "status": "PENDING"}),
         ("", "x", "PENDING", "", "", "", "", "", "")),
        (SessionRecord.from_info(INFO, "bjk-2"),
         ("bjk-2", "bjk-2", "TERMINATED", "idle-timeout", "python", "",
          "2026-11-30T04:00:00Z", "2026-11-30T05:00:00Z", "")),
        (SessionRecord.from_info({}, "s"), ("s", "s", "", "", "", "", "", "", "")),
    ],
)
def test_typed_fields(record: SessionRecord, expected: tuple[str, ...]) -> None:
    got = (record.id, record.name, record.status, record.status_info, record.image, record.type,
           record.created_at, record.terminated_at, record.result)
    assert got == expected


def test_the_whole_record_stays_readable_by_key() -> None:
    record: Any = SessionRecord.from_list(LIST_ITEM)
    assert record["occupied_slots"] == '{"cpu": "1"}' and record.get("tag") is None
    assert dict(record) == LIST_ITEM and record == LIST_ITEM
    assert "secret" not in repr(SessionRecord.from_list({**LIST_ITEM, "x": "secret"}))
