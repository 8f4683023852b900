"""In-process checks of the answers the official CLI depends on (no venv, no cluster needed).

The GraphQL root fields the 26.9.6 CLI sends (``keypair`` for ``ps``/``session list``,
``compute_session`` for ``session info``, ``vfolder_list`` for ``vfolder list``) and the
``sessionName``-filtered event stream, with the values a real 26.9.6 manager answered
(cluster-facts §5, §6 and live queries against it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from backendai_jupyter.client import Client, ClientConfig, parse_endpoints
from backendai_jupyter.server import ServerConfig, create_app
from backendai_jupyter.server.manager.gql import GqlError, parse
from backendai_jupyter.server.manager.state import KEYPAIRS

from .conftest import IMAGE

# The queries exactly as the 26.9.6 CLI sends them (captured on the wire).
KEYPAIR_Q = "query { keypair { user_id access_key secret_key is_active is_admin } }"
SESSION_Q = (
    "query($id: UUID!) {  compute_session(id: $id) {    name priority id main_kernel_id image tag"
    " created_at terminated_at status status_info status_data occupying_slots idle_checks"
    " containers { id cluster_role cluster_idx cluster_hostname session_id image registry status"
    " status_info status_data status_changed agent container_id resource_opts occupied_slots"
    " preopen_ports live_stat last_stat id } dependencies { name id }  }}"
)
LIST_Q = (
    "query($limit:Int!, $offset:Int!, $status: String, $access_key: String, $filter: String,"
    " $order: String) {\n  compute_session_list(\n      limit:$limit, offset:$offset,"
    " status:$status, access_key:$access_key, filter:$filter, order:$order) {\n    items { name"
    " priority id group_name type image status status_info status_changed result }\n"
    "    total_count\n  }\n}"
)
VFOLDER_Q = (
    "query($limit:Int!, $offset:Int!, $group_id: UUID, $filter: String, $order: String) {\n"
    "  vfolder_list(\n      limit:$limit, offset:$offset, group_id:$group_id, filter:$filter,"
    " order:$order) {\n    items { host name status created_at creator group permission"
    " ownership_type }\n    total_count\n  }\n}"
)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    app = create_app(ServerConfig(data_dir=tmp_path / "data", capacity={"cpu": "4", "mem": "8g"}))
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    kp = next(iter(app[KEYPAIRS].values()))
    config = ClientConfig(
        endpoints=parse_endpoints(str(server.make_url("")).rstrip("/")),
        access_key=kp.access_key,
        secret_key=kp.secret_key,
    )
    c = Client(config)
    try:
        yield c
    finally:
        await c.close()
        await server.close()


async def _gql(client: Client, query: str, variables: dict[str, Any] | None = None) -> Any:
    await client.connect()
    return await client.http.json(
        "POST", "/admin/gql", json={"query": query, "variables": variables or {}}
    )


def test_parser_handles_aliases_literals_and_nesting() -> None:
    (sel,) = parse('query Q($a: Int!) { x: compute_session_list(limit: $a, status: "RUNNING",'
                   " flag: true, ids: [1, 2]) { items { name containers { id } } } }", {"a": 5})
    assert (sel.alias, sel.name) == ("x", "compute_session_list")
    assert sel.args == {"limit": 5, "status": "RUNNING", "flag": True, "ids": [1, 2]}
    items = sel.fields[0]
    assert [f.name for f in items.fields] == ["name", "containers"]
    assert items.fields[1].fields[0].name == "id"
    with pytest.raises(GqlError):
        parse("mutation { x }")


async def test_keypair_query(client: Client) -> None:
    body = await _gql(client, KEYPAIR_Q)
    assert body["errors"] is None
    kp = body["data"]["keypair"]
    assert kp["access_key"] == client.config.access_key and kp["is_active"] is True
    assert kp["user_id"] == "user@localhost"  # the keypair's user_id is the owner's email
    assert kp["is_admin"] is True  # the local user is the superadmin of its endpoint
    bad = await _gql(client, "query { keypair { user_id bogus } }")
    assert bad == {"data": None, "errors": [{"message": "Cannot query field 'bogus' on type 'KeyPair'."}]}
    root = await _gql(client, "query { nosuch { x } }")
    assert root["errors"][0]["message"] == "Cannot query field 'nosuch' on type 'Query'."


async def test_compute_session_and_list(client: Client) -> None:
    info = await client.sessions.create(IMAGE, name="cf-gql", resources={"cpu": "1", "mem": "1g"})
    try:
        data = (await _gql(client, SESSION_Q, {"id": info.id}))["data"]["compute_session"]
        assert data["name"] == "cf-gql" and data["id"] == info.id and data["priority"] == 10
        assert data["status"] == "RUNNING" and data["status_info"] is None
        assert json.loads(data["occupying_slots"]) == {"cpu": "1", "mem": "1073741824"}
        assert json.loads(data["idle_checks"])["session_lifetime"]["remaining"] is None
        (kernel,) = data["containers"]
        assert kernel["id"] == data["main_kernel_id"] and kernel["session_id"] == info.id
        assert (kernel["cluster_role"], kernel["cluster_idx"], kernel["cluster_hostname"]) == (
            "main", 1, "main1"
        )
        assert data["dependencies"] == []
        none = await _gql(client, SESSION_Q, {"id": "00000000-0000-0000-0000-000000000000"})
        assert none == {"data": {"compute_session": None}, "errors": None}

        variables = {"status": "RUNNING", "access_key": None, "filter": None, "order": None,
                     "limit": 20, "offset": 0}
        page = (await _gql(client, LIST_Q, variables))["data"]["compute_session_list"]
        assert page["total_count"] == 1
        (item,) = page["items"]
        assert item["type"] == "INTERACTIVE" and item["result"] == "UNDEFINED"
        assert item["group_name"] == "default" and item["priority"] == 10
        # 26.9.6 rejects status names it no longer has, quoting them.
        bad = await _gql(client, LIST_Q, {**variables, "status": "RUNNING,RESIZING"})
        assert bad["errors"][0]["message"] == "'RESIZING'"
        # ... which the project's own client retries without them.
        assert [s["name"] for s in await client.sessions.list()] == ["cf-gql"]
    finally:
        await client.sessions.destroy(info.id)


async def test_vfolder_list_includes_trash(client: Client) -> None:
    await client.folders.create("cf-one")
    await client.folders.create("cf-two")
    await client.folders.delete("cf-two")
    variables = {"group_id": None, "filter": None, "order": None, "limit": 20, "offset": 0}
    page = (await _gql(client, VFOLDER_Q, variables))["data"]["vfolder_list"]
    assert page["total_count"] == 2
    by_name = {i["name"]: i for i in page["items"]}
    assert by_name["cf-one"]["status"] == "ready"
    assert by_name["cf-two"]["status"] == "delete-pending"
    one = by_name["cf-one"]
    assert (one["host"], one["permission"], one["ownership_type"]) == ("local:default", "rw", "user")
    assert one["creator"] == "user@localhost" and one["group"] is None
    assert "T" in one["created_at"]  # ISO 8601 here (the REST list uses a space)


async def test_session_name_stream_has_no_kernel_events(client: Client) -> None:
    info = await client.sessions.create(IMAGE, name="cf-events")
    named: list[tuple[str, str]] = []
    wild: list[str] = []

    async def listen(into: list[Any], **filters: Any) -> None:
        async for ev in client.events.session(**filters):
            reason = json.loads(ev.data)["reason"]
            into.append((ev.event, reason) if filters else ev.event)
            if ev.event == "session_terminated":
                return

    tasks = [
        asyncio.create_task(listen(named, session_name="cf-events")),
        asyncio.create_task(listen(wild)),
    ]
    await asyncio.sleep(0.3)
    await client.sessions.destroy(info.id)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
    # As observed on 26.9.6: no kernel_* events by name, no kernel_terminating at all, and
    # session_terminated says who finished the job.
    assert named == [
        ("session_terminating", "user-requested"),
        ("session_terminated", "triggered-by-scheduler"),
    ]
    assert wild == ["session_terminating", "kernel_terminated", "session_terminated"]
