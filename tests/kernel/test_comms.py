"""Comms across the proxy: the pure parts by tables, the remote half in a real ipykernel."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from backendai_jupyter.kernel.comm_messages import (
    CommTracker,
    Pending,
    rewrite_output_capture,
    route_comm,
    split_batches,
)
from backendai_jupyter.kernel.widget_states import manager_state_to_update, merge_update_states
from backendai_jupyter.richchannel import (
    MARK_DONE,
    MARK_PARENT,
    IopubMessage,
    comm_info_code,
    decode_comm_info,
    dispatch_code,
    encode_batch,
)


def fe_msg(msg_type: str, content: dict[str, Any], buffers: list[bytes] | None = None) -> Any:
    """A front-end message as ipykernel hands it to a shell handler."""
    return {
        "header": {"msg_id": f"fe-{msg_type}-{content.get('comm_id')}", "msg_type": msg_type},
        "parent_header": {},
        "metadata": {"version": "2.1.0"} if msg_type == "comm_open" else {},
        "content": content,
        "buffers": [memoryview(b) for b in buffers or []],
    }


ROUTES = [
    # (msg_type, comm_id / target, local comm ids, remote up) -> where
    ("comm_msg", "w1", set(), False, "local"),
    ("comm_open", "jupyter.widget.control", set(), False, "local"),
    ("comm_msg", "local1", {"local1"}, True, "local"),
    ("comm_close", "local1", {"local1"}, True, "local"),
    ("comm_msg", "w1", {"local1"}, True, "remote"),
    ("comm_close", "w1", set(), True, "remote"),
    ("comm_open", "jupyter.widget.control", {"local1"}, True, "remote"),
    ("comm_open", "jupyter.widget", set(), True, "remote"),
]


@pytest.mark.parametrize(("msg_type", "key", "local", "up", "where"), ROUTES)
def test_route(msg_type: str, key: str, local: set[str], up: bool, where: str) -> None:
    content = (
        {"comm_id": "new", "target_name": key} if msg_type == "comm_open" else {"comm_id": key}
    )
    assert route_comm(msg_type, content, local_comms=local, remote_up=up) == where


def pending(n_bytes: int, i: int = 0) -> Pending:
    return Pending(fe_msg("comm_msg", {"comm_id": f"c{i}", "data": {}}, [b"x" * n_bytes]))


@pytest.mark.parametrize(
    ("sizes", "max_messages", "max_bytes", "expected"),
    [
        ([], 4, 100, []),
        ([0, 0, 0], 4, 100, [3]),
        ([0] * 5, 2, 100, [2, 2, 1]),
        ([60, 60, 10], 10, 100, [1, 2]),
        ([500, 1], 10, 100, [1, 1]),  # a big message travels alone, never split or lost
    ],
)
def test_split_batches(
    sizes: list[int], max_messages: int, max_bytes: int, expected: list[int]
) -> None:
    items = [pending(s, i) for i, s in enumerate(sizes)]
    batches = split_batches(items, max_messages, max_bytes)
    assert [len(b) for b in batches] == expected
    assert [p for b in batches for p in b] == items  # order kept


def test_encode_batch_keeps_everything() -> None:
    msgs = [
        fe_msg("comm_open", {"comm_id": "a", "target_name": "t", "data": {"x": 1}}),
        fe_msg("comm_msg", {"comm_id": "a", "data": {"method": "update"}}, [b"\x00\xff", b""]),
    ]
    items = json.loads(base64.b64decode(encode_batch(msgs)))
    assert [i["msg_type"] for i in items] == ["comm_open", "comm_msg"]
    assert items[0]["metadata"] == {"version": "2.1.0"} and items[0]["content"]["data"] == {"x": 1}
    assert [base64.b64decode(b) for b in items[1]["buffers"]] == [b"\x00\xff", b""]
    assert items[1]["header"]["msg_id"] == "fe-comm_msg-a"


def test_remote_code_is_one_expression_and_checks_ids() -> None:
    for code in (dispatch_code("ab12", []), comm_info_code("ab12", None)):
        compile(code, "<hidden>", "eval")
    with pytest.raises(ValueError):
        dispatch_code("x'); import os; ('", [])
    with pytest.raises(ValueError):
        comm_info_code("", "t")


def out_msg(msg_type: str, comm_id: str, state: dict[str, Any]) -> IopubMessage:
    content: dict[str, Any] = {"comm_id": comm_id, "data": {"state": state}}
    if msg_type == "comm_open":
        content["target_name"] = "jupyter.widget"
    else:
        content["data"]["method"] = "update"
    return IopubMessage(msg_type, content)


@pytest.mark.parametrize(
    ("msg", "outputs", "parent", "msg_id"),
    [
        # an Output widget entered remotely: the remote request becomes the front-end's
        (out_msg("comm_msg", "o1", {"msg_id": "remote-req"}), {"o1"}, "fe-req", "fe-req"),
        (
            out_msg("comm_open", "o2", {"_model_name": "OutputModel", "msg_id": "r"}),
            set(),
            "fe-req",
            "fe-req",
        ),
        # left: leaving the context (empty id), other widgets, no parent known
        (out_msg("comm_msg", "o1", {"msg_id": ""}), {"o1"}, "fe-req", ""),
        (out_msg("comm_msg", "s1", {"msg_id": "remote-req"}), {"o1"}, "fe-req", "remote-req"),
        (out_msg("comm_msg", "o1", {"msg_id": "remote-req"}), {"o1"}, None, "remote-req"),
    ],
)
def test_output_capture_follows_the_front_end_request(
    msg: IopubMessage, outputs: set[str], parent: str | None, msg_id: str
) -> None:
    got = rewrite_output_capture(msg, outputs, parent)
    assert got.content["data"]["state"]["msg_id"] == msg_id
    assert got.content["comm_id"] == msg.content["comm_id"] and got.msg_type == msg.msg_type


def test_state_without_msg_id_is_untouched() -> None:
    msg = out_msg("comm_msg", "o1", {"outputs": []})
    assert rewrite_output_capture(msg, {"o1"}, "fe") is msg


LOCAL_MANAGER_STATE = {
    "version_major": 2,
    "version_minor": 0,
    "state": {
        "L1": {
            "model_name": "IntSliderModel",
            "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0",
            "state": {"value": 3},
        },
        "L2": {
            "model_name": "FileUploadModel",
            "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0",
            "state": {"value": [{"name": "a"}]},
            "buffers": [
                {"encoding": "base64", "path": ["value", 0, "content"], "data": "AAE="},
            ],
        },
    },
}


def test_manager_state_to_update() -> None:
    states, paths, buffers = manager_state_to_update(LOCAL_MANAGER_STATE)
    assert set(states) == {"L1", "L2"} and "buffers" not in states["L2"]
    assert states["L1"]["state"] == {"value": 3}
    assert paths == [["L2", "state", "value", 0, "content"]] and buffers == [b"\x00\x01"]
    assert manager_state_to_update({}) == ({}, [], [])


def test_update_states_gets_the_local_widgets() -> None:
    remote = IopubMessage(
        "comm_msg",
        {
            "comm_id": "ctl",
            "data": {
                "method": "update_states",
                "states": {"R1": {"model_name": "ImageModel", "state": {"value": {}}}},
                "buffer_paths": [["R1", "state", "value"]],
            },
        },
        {"version": "1.0.0"},
        (b"remote-bytes",),
    )
    merged = merge_update_states(remote, manager_state_to_update(LOCAL_MANAGER_STATE))
    data = merged.content["data"]
    assert set(data["states"]) == {"R1", "L1", "L2"}
    # every path still names its own buffer
    pairs = dict(zip(map(tuple, data["buffer_paths"]), merged.buffers, strict=True))
    assert pairs == {
        ("L2", "state", "value", 0, "content"): b"\x00\x01",
        ("R1", "state", "value"): b"remote-bytes",
    }
    assert merged.metadata == {"version": "1.0.0"}
    # nothing local, or not an update_states: unchanged
    assert merge_update_states(remote, ({}, [], [])) is remote
    other = IopubMessage("comm_msg", {"comm_id": "ctl", "data": {"method": "custom"}})
    assert merge_update_states(other, manager_state_to_update(LOCAL_MANAGER_STATE)) is other


def test_tracker_follows_comms_both_ways() -> None:
    t = CommTracker()
    t.seen("comm_open", {"comm_id": "s", "target_name": "jupyter.widget", "data": {"state": {}}})
    t.seen(
        "comm_open",
        {
            "comm_id": "o",
            "target_name": "jupyter.widget",
            "data": {"state": {"_model_name": "OutputModel"}},
        },
    )
    t.seen("comm_open", {"comm_id": "c", "target_name": "jupyter.widget.control"})
    t.seen(
        "comm_msg",
        {
            "comm_id": "c",
            "data": {"method": "update_states", "states": {"o2": {"model_name": "OutputModel"}}},
        },
    )
    assert t.remote == {"s": "jupyter.widget", "o": "jupyter.widget", "c": "jupyter.widget.control"}
    assert t.outputs == {"o", "o2"} and t.controls == {"c"}
    t.seen("comm_close", {"comm_id": "o"})
    t.seen("comm_close", {"comm_id": "c"})
    t.seen("comm_msg", {"data": {}})  # no comm id: ignored
    assert t.remote == {"s": "jupyter.widget"} and t.outputs == {"o2"} and not t.controls
    t.reset()
    assert not t.remote and not t.outputs


@pytest.mark.parametrize(
    ("content", "comms"),
    [
        ({"comms": {"a": {"target_name": "t"}}}, {"a": {"target_name": "t"}}),
        ({"comms": {"a": {"target_name": 3}, "b": "x"}}, {}),
        ({"comms": []}, {}),
        (None, {}),
    ],
)
def test_decode_comm_info(content: Any, comms: dict[str, Any]) -> None:
    assert decode_comm_info(content) == comms


# -- the remote half, in a real ipykernel ------------------------------------------------------


@pytest.fixture(scope="module")
def plain_kernel() -> Iterator[Any]:
    """A stock ipykernel standing in for the remote one (the proxy's bootstrap module faked by
    an empty module, as the remote code needs only its name)."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        setup = (
            "import sys, types, ipywidgets as w\n"
            "sys.modules['_backendai_rich'] = types.ModuleType('_backendai_rich')\n"
            "s = w.IntSlider(1); seen = []\n"
            "s.observe(lambda ch: (seen.append(ch['new']), print('new', ch['new'])), 'value')\n"
        )
        assert kc.execute_interactive(setup, timeout=60)["content"]["status"] == "ok"
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_collect(kc: Any, code: str) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    reply = kc.execute_interactive(code, timeout=60, output_hook=msgs.append)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msgs


def stdout(msgs: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")


def test_remote_dispatch_delivers_in_order_with_markers(plain_kernel: Any) -> None:
    kc = plain_kernel
    model_id = stdout(run_collect(kc, "print(s.model_id)")).strip()
    batch = [
        fe_msg(
            "comm_msg",
            {
                "comm_id": model_id,
                "data": {"method": "update", "state": {"value": v}, "buffer_paths": []},
            },
        )
        for v in (4, 5)
    ]
    batch.append(fe_msg("comm_msg", {"comm_id": "gone", "data": {}}))
    msgs = run_collect(kc, dispatch_code("r1", batch))
    seq = [
        (
            m["msg_type"],
            m["content"].get("i", m["content"].get("text", m["content"].get("missing"))),
        )
        for m in msgs
        if m["msg_type"] in (MARK_PARENT, MARK_DONE, "stream")
    ]
    # The markers come before each message's own output; the unknown comm is reported missing.
    assert seq[0] == (MARK_PARENT, 0) and seq[-1] == (MARK_DONE, [2])
    text = "".join(t for k, t in seq if k == "stream")
    assert text == "new 4\nnew 5\n"
    assert [k for k, _ in seq].index(MARK_PARENT, 1) < [k for k, _ in seq].index("stream", 2)
    # ipywidgets echoes the front-end's values back as comm messages
    echoes = [
        m for m in msgs if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model_id
    ]
    assert [m["content"]["data"]["state"]["value"] for m in echoes] == [4, 5]
    assert stdout(run_collect(kc, "print(seen)")).strip() == "[4, 5]"


def test_remote_comm_info_lists_the_remote_comms(plain_kernel: Any) -> None:
    kc = plain_kernel
    model_id = stdout(run_collect(kc, "print(s.model_id)")).strip()
    msgs = run_collect(kc, comm_info_code("r2", "jupyter.widget"))
    info = [m["content"] for m in msgs if m["msg_type"] == "bai_comm_info"]
    assert info and info[0]["id"] == "r2"
    assert decode_comm_info(info[0])[model_id] == {"target_name": "jupyter.widget"}
