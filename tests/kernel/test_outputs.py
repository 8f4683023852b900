"""Pure tables for backendai_jupyter.display.outputs and richchannel.frames; every message is schema-validated."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from jupyter_client.session import Session
from jupyter_kernel_test.msgspec_v5 import schema_fragments, validate_message

from backendai_jupyter.display.outputs import (
    console_to_messages,
    media_bundle,
    parse_traceback_text,
    strip_ansi,
)
from backendai_jupyter.richchannel import (
    Frame,
    FrameDecoder,
    IopubMessage,
    encode_frame,
    frame_message,
    frame_to_message,
    read_ready,
    remote_reply,
)

NONCE = "n0nce_TEST-123"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
_session = Session()


def check(msg_type: str, content: dict[str, Any]) -> None:
    validate_message(_session.msg(msg_type, content), msg_type)


CONSOLE_CASES = [
    ("stdout", "hi\n", [("stream", {"name": "stdout", "text": "hi\n"})]),
    ("stderr", "oops\n", [("stream", {"name": "stderr", "text": "oops\n"})]),
    ("stdout", "\r10%\r20%", [("stream", {"name": "stdout", "text": "\r10%\r20%"})]),
    ("stdout", "", []),
    ("log", "runner log", [("stream", {"name": "stderr", "text": "runner log\n"})]),
    ("completion", ["a"], []),
    (
        "media",
        ("image/png", f"data:image/png;base64,{PNG}"),
        [
            (
                "display_data",
                {
                    "data": {"image/png": PNG, "text/plain": "<image/png output>"},
                    "metadata": {},
                    "transient": {},
                },
            )
        ],
    ),
    (
        "media",
        {"type": "image/jpeg", "data": f"data:image/jpeg;base64,{PNG}"},
        [
            (
                "display_data",
                {
                    "data": {"image/jpeg": PNG, "text/plain": "<image/jpeg output>"},
                    "metadata": {},
                    "transient": {},
                },
            )
        ],
    ),
    (
        "media",
        ("image/svg+xml", "<svg/>"),
        [
            (
                "display_data",
                {
                    "data": {"image/svg+xml": "<svg/>", "text/plain": "<image/svg+xml output>"},
                    "metadata": {},
                    "transient": {},
                },
            )
        ],
    ),
    (
        "media",
        ("text/html", "<b>x</b>"),
        [
            (
                "display_data",
                {
                    "data": {"text/html": "<b>x</b>", "text/plain": "<text/html output>"},
                    "metadata": {},
                    "transient": {},
                },
            )
        ],
    ),
    (
        "html",
        "<i>y</i>",
        [
            (
                "display_data",
                {
                    "data": {"text/html": "<i>y</i>", "text/plain": "<HTML output>"},
                    "metadata": {},
                    "transient": {},
                },
            )
        ],
    ),
    (
        "media",
        ("application/json", '{"a": 1}'),
        [
            (
                "display_data",
                {
                    "data": {
                        "application/json": {"a": 1},
                        "text/plain": "<application/json output>",
                    },
                    "metadata": {},
                    "transient": {},
                },
            )
        ],
    ),
]


@pytest.mark.parametrize(("kind", "data", "expected"), CONSOLE_CASES)
def test_console_to_messages(kind: str, data: Any, expected: list[Any]) -> None:
    got = console_to_messages(kind, data)
    assert got == expected
    for msg_type, content in got:
        check(msg_type, content)


def test_media_bundle_keeps_plain_base64() -> None:
    assert media_bundle("image/png", PNG)["image/png"] == PNG


def test_media_bundle_bytes() -> None:
    assert media_bundle("image/png", b"ab")["image/png"] == "YWI="


FRAME_CASES = [
    (
        {
            "t": "display",
            "data": {"text/markdown": "**x**"},
            "metadata": {},
            "transient": {"display_id": "d1"},
        },
        (
            "display_data",
            {"data": {"text/markdown": "**x**"}, "metadata": {}, "transient": {"display_id": "d1"}},
        ),
    ),
    (
        {
            "t": "display",
            "data": {"text/plain": "y"},
            "transient": {"display_id": "d1"},
            "update": True,
        },
        (
            "update_display_data",
            {"data": {"text/plain": "y"}, "metadata": {}, "transient": {"display_id": "d1"}},
        ),
    ),
    ({"t": "display", "data": {"text/plain": "y"}, "update": True}, None),
    (
        {"t": "result", "data": {"text/plain": "2", "text/latex": "$2$"}, "metadata": {}},
        (
            "execute_result",
            {
                "data": {"text/plain": "2", "text/latex": "$2$"},
                "metadata": {},
                "execution_count": 7,
            },
        ),
    ),
    ({"t": "clear", "wait": True}, ("clear_output", {"wait": True})),
    (
        {"t": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["l1", "l2"]},
        ("error", {"ename": "ValueError", "evalue": "bad", "traceback": ["l1", "l2"]}),
    ),
    ({"t": "stream", "name": "stderr", "text": "x"}, ("stream", {"name": "stderr", "text": "x"})),
    ({"t": "ready", "v": 1}, None),
    ({"t": "reply", "id": "1", "content": {}}, None),
]


@pytest.mark.parametrize(("payload", "expected"), FRAME_CASES)
def test_frame_to_message(payload: dict[str, Any], expected: Any) -> None:
    got = frame_to_message(Frame(payload), 7)
    assert got == expected
    if got is not None:
        check(*got)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _msg(msg_type: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"t": "msg", "msg_type": msg_type, "content": content, **extra}


DISPLAY = {"data": {"text/plain": "1"}, "metadata": {}, "transient": {"display_id": "d"}}
COMM_OPEN = {"comm_id": "c1", "target_name": "jupyter.widget", "data": {"state": {}}}
MSG_CASES: list[tuple[dict[str, Any], IopubMessage | None]] = [
    (_msg("display_data", DISPLAY), IopubMessage("display_data", DISPLAY)),
    (_msg("update_display_data", DISPLAY), IopubMessage("update_display_data", DISPLAY)),
    (_msg("update_display_data", {"data": {}, "metadata": {}, "transient": {}}), None),
    (
        _msg("execute_result", {"data": {"text/plain": "5"}, "metadata": {}, "execution_count": 1}),
        IopubMessage(
            "execute_result", {"data": {"text/plain": "5"}, "metadata": {}, "execution_count": 7}
        ),
    ),
    (_msg("clear_output", {"wait": False}), IopubMessage("clear_output", {"wait": False})),
    (
        _msg("comm_open", COMM_OPEN, metadata={"version": "2.1.0"}, buffers=[_b64(b"\0\1")]),
        IopubMessage("comm_open", COMM_OPEN, {"version": "2.1.0"}, (b"\0\1",)),
    ),
    (
        _msg("comm_msg", {"comm_id": "c1", "data": {}}, buffers=[_b64(b"a"), _b64(b"")]),
        IopubMessage("comm_msg", {"comm_id": "c1", "data": {}}, {}, (b"a", b"")),
    ),
    (
        _msg("comm_close", {"comm_id": "c1", "data": {}}),
        IopubMessage("comm_close", {"comm_id": "c1", "data": {}}),
    ),
    (_msg("comm_msg", {"comm_id": "c1"}, buffers=["*not base64*"]), None),
    (_msg("comm_msg", {"comm_id": "c1"}, buffers="abc"), None),
    (_msg("status", {"execution_state": "idle"}), None),
    (_msg("Display Data", DISPLAY), None),
    (_msg("display_data", ["not", "an", "object"]), None),  # type: ignore[arg-type]
    ({"t": "msg", "content": DISPLAY}, None),
    (
        {"t": "display", "data": {"text/plain": "y"}},
        IopubMessage("display_data", {"data": {"text/plain": "y"}, "metadata": {}, "transient": {}}),
    ),
    ({"t": "execute_reply", "content": {"status": "ok"}}, None),
    ({"t": "ready", "v": 2, "nonce": "x"}, None),
]


@pytest.mark.parametrize(("payload", "expected"), MSG_CASES)
def test_frame_message(payload: dict[str, Any], expected: IopubMessage | None) -> None:
    got = frame_message(Frame(payload), 7)
    assert got == expected
    if got is not None:
        if got.msg_type in schema_fragments:  # the spec module has no comm schemas
            check(got.msg_type, got.content)
        assert frame_to_message(Frame(payload), 7) == got.short


REPLY_CASES: list[tuple[dict[str, Any] | None, dict[str, Any]]] = [
    (None, {"payload": [], "user_expressions": {}}),
    (
        {
            "status": "ok",
            "execution_count": 3,
            "payload": [{"source": "page", "data": {"text/plain": "help"}, "start": 0}, "junk"],
            "user_expressions": {"a": {"status": "ok", "data": {"text/plain": "1"}}},
        },
        {
            "payload": [{"source": "page", "data": {"text/plain": "help"}, "start": 0}],
            "user_expressions": {"a": {"status": "ok", "data": {"text/plain": "1"}}},
        },
    ),
    ({"payload": "x", "user_expressions": []}, {"payload": [], "user_expressions": {}}),
]


@pytest.mark.parametrize(("content", "expected"), REPLY_CASES)
def test_remote_reply(content: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    frame = None if content is None else Frame({"t": "execute_reply", "content": content})
    assert remote_reply(frame) == expected


def test_read_ready_finds_the_announced_nonce() -> None:
    nonce = "AbCdEfGhIjKlMnOpQrStUv"
    ready = {"t": "ready", "v": 2, "nonce": nonce}
    frame = encode_frame(nonce, ready)
    found = read_ready("noise\n" + frame + "more")
    assert found == (nonce, Frame(ready))
    # a frame whose mark differs from the nonce it names, or no ready frame: nothing
    other = "ZyXwVuTsRqPoNmLkJiHgFe"
    assert read_ready(encode_frame(other, ready)) is None
    assert read_ready(encode_frame(nonce, {"t": "msg", "nonce": nonce})) is None
    assert read_ready("plain text") is None


def _decode_all(decoder: FrameDecoder, chunks: list[str]) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.flush())
    merged: list[Any] = []
    for part in out:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return merged


def test_frames_split_at_every_position() -> None:
    frame = encode_frame(NONCE, {"t": "display", "data": {"text/plain": "é"}})
    text = "before\r" + frame + "middle\n" + frame + "after"
    want = [
        "before\r",
        Frame({"t": "display", "data": {"text/plain": "é"}}),
        "middle\n",
        Frame({"t": "display", "data": {"text/plain": "é"}}),
        "after",
    ]
    for i in range(len(text) + 1):
        assert _decode_all(FrameDecoder(NONCE), [text[:i], text[i:]]) == want, i
    # One character at a time.
    assert _decode_all(FrameDecoder(NONCE), list(text)) == want


def test_text_is_not_held_back_without_a_marker_prefix() -> None:
    d = FrameDecoder(NONCE)
    assert d.feed("progress 10%\r") == ["progress 10%\r"]
    assert d.pending == 0
    assert d.feed("x\x1b]BA") == ["x"]
    assert d.pending == 4
    assert d.feed("D") == ["\x1b]BAD"]


def test_forged_or_broken_frames_pass_through_as_text() -> None:
    other = encode_frame("someone-else", {"t": "error", "ename": "X"})
    broken = f"\x1b]BAI;{NONCE};not*base64\x07"
    not_object = f"\x1b]BAI;{NONCE};{base64.b64encode(json.dumps([1]).encode()).decode()}\x07"
    for text in (other, broken, not_object):
        assert _decode_all(FrameDecoder(NONCE), [text]) == [text]


def test_unterminated_frame_is_released_by_flush() -> None:
    d = FrameDecoder(NONCE)
    assert d.feed(f"\x1b]BAI;{NONCE};abc") == []
    assert d.flush() == [f"\x1b]BAI;{NONCE};abc"]


def test_bad_nonce_rejected() -> None:
    with pytest.raises(ValueError):
        FrameDecoder("a;b")


TRACEBACKS = [
    (
        "\x1b[31mZeroDivisionError\x1b[39m: division by zero\n",
        ("ZeroDivisionError", "division by zero"),
    ),
    (
        "Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'k'\n",
        ("KeyError", "'k'"),
    ),
    (
        "---\nCell In[1], line 1\n----> 1 raise KeyboardInterrupt\n\nKeyboardInterrupt: \n",
        ("KeyboardInterrupt", ""),
    ),
    ("mod.CustomError: boom\n", ("mod.CustomError", "boom")),
    ("", ("RemoteError", "the remote code failed")),
]


@pytest.mark.parametrize(("text", "expected"), TRACEBACKS)
def test_parse_traceback_text(text: str, expected: tuple[str, str]) -> None:
    assert parse_traceback_text(text) == expected


def test_strip_ansi() -> None:
    assert strip_ansi("\x1b[1;31mred\x1b[0m") == "red"


def test_decoder_split_anywhere_equals_unsplit() -> None:
    """Thousands of frames in one chunk (a widget update loop) or a stream cut at random points
    (the runner's records): the same text and frames, in the same order."""
    import random

    rnd = random.Random(10)
    frame = encode_frame(NONCE, {"t": "msg", "msg_type": "comm_msg", "content": {"n": 1}})
    pieces = ["hi\n", "\x1b]BA", "\x1b]BAI;other;eA==\x07", frame, "\r50%", "\x1b]BAI;" + NONCE]
    for _ in range(300):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 10)))
        whole = FrameDecoder(NONCE)
        expected = whole.feed(text) + whole.flush()
        split = FrameDecoder(NONCE)
        got: list[str | Frame] = []
        i = 0
        while i < len(text):
            step = rnd.randint(1, 30)
            got += split.feed(text[i : i + step])
            i += step
        got += split.flush()
        assert _joined(got) == _joined(expected), text
    many = FrameDecoder(NONCE).feed(frame * 5000)
    assert len(many) == 5000 and all(isinstance(p, Frame) for p in many)


def _joined(parts: list[str | Frame]) -> list[str | Frame]:
    out: list[str | Frame] = []
    for p in parts:
        if isinstance(p, str) and out and isinstance(out[-1], str):
            out[-1] += p
        elif p != "":
            out.append(p)
    return out
