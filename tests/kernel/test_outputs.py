"""Pure tables for backendai_jupyter.display.outputs; every message is schema-validated."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from jupyter_client.session import Session
from jupyter_kernel_test.msgspec_v5 import validate_message

from backendai_jupyter.display.outputs import (
    Frame,
    FrameDecoder,
    console_to_messages,
    encode_frame,
    frame_to_message,
    media_bundle,
    parse_traceback_text,
    strip_ansi,
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
