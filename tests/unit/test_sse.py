"""Tests for the pure Server-Sent-Events decoder and encoder."""

from __future__ import annotations

import pytest

from backendai_jupyter.client._exceptions import ParseError, ProtocolError
from backendai_jupyter.client._sse import ServerSentEvent, SSEDecoder, encode_event

E = ServerSentEvent

# (stream, expected events); each stream is also fed byte by byte and in every 2-way split.
DECODE_CASES: list[tuple[str, bytes, list[ServerSentEvent]]] = [
    ("empty", b"", []),
    ("one data", b"data: hi\n\n", [E(data="hi")]),
    ("no space", b"data:hi\n\n", [E(data="hi")]),
    ("only one space stripped", b"data:  hi \n\n", [E(data=" hi ")]),
    ("multi data", b"data: a\ndata: b\n\n", [E(data="a\nb")]),
    ("empty data line", b"data\n\n", [E(data="")]),
    ("data colon only", b"data:\n\n", [E(data="")]),
    ("two empty data lines", b"data\ndata\n\n", [E(data="\n")]),
    ("trailing empty data", b"data: a\ndata:\n\n", [E(data="a\n")]),
    ("named", b"event: add\ndata: 1\n\n", [E(event="add", data="1")]),
    ("empty name is message", b"event:\ndata: 1\n\n", [E(data="1")]),
    ("last event name wins", b"event: a\nevent: b\ndata: 1\n\n", [E(event="b", data="1")]),
    ("named without data", b"event: server_close\n\n", [E(event="server_close")]),
    ("blank block ignored", b"\n\n\n", []),
    ("comment", b": ping\n\n", []),
    ("comment inside", b"data: a\n: note\ndata: b\n\n", [E(data="a\nb")]),
    ("crlf", b"event: x\r\ndata: 1\r\n\r\n", [E(event="x", data="1")]),
    ("cr", b"data: 1\rdata: 2\r\r", [E(data="1\n2")]),
    ("mixed endings", b"data: 1\r\ndata: 2\rdata: 3\n\r\n", [E(data="1\n2\n3")]),
    ("colon in value", b"data: a: b\n\n", [E(data="a: b")]),
    ("unknown field", b"foo: bar\ndata: 1\n\n", [E(data="1")]),
    ("field case matters", b"Data: 1\n\n", []),
    ("field without colon", b"event\ndata: 1\n\n", [E(data="1")]),
    ("id", b"id: 7\ndata: 1\n\n", [E(data="1", id="7")]),
    ("id persists", b"id: 7\ndata: 1\n\ndata: 2\n\n", [E(data="1", id="7"), E(data="2", id="7")]),
    (
        "empty id resets",
        b"id: 7\ndata: 1\n\nid\ndata: 2\n\n",
        [E(data="1", id="7"), E(data="2", id="")],
    ),
    (
        "id with NUL ignored",
        b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n",
        [E(data="a", id="1"), E(data="b", id="1")],
    ),
    ("id without data sets id", b"id: 3\n\ndata: a\n\n", [E(data="a", id="3")]),
    ("retry", b"retry: 1500\ndata: a\n\n", [E(data="a", retry=1500)]),
    ("retry per event", b"retry: 10\ndata: a\n\ndata: b\n\n", [E(data="a", retry=10), E(data="b")]),
    ("retry not digits", b"retry: 1.5\ndata: a\n\n", [E(data="a")]),
    ("retry negative", b"retry: -1\ndata: a\n\n", [E(data="a")]),
    ("retry unicode digits", "retry: \u0661\ndata: a\n\n".encode(), [E(data="a")]),
    ("utf8", "data: 한글 ✓\n\n".encode(), [E(data="한글 ✓")]),
    ("bom", b"\xef\xbb\xbfdata: a\n\n", [E(data="a")]),
    ("invalid utf8 replaced", b"data: \xff\n\n", [E(data="\ufffd")]),
    ("incomplete event dropped", b"data: a\n\ndata: b\n", [E(data="a")]),
    ("incomplete line dropped", b"data: a\n\ndata: b", [E(data="a")]),
    ("json", b'event: s\ndata: {"a": [1,\ndata: 2]}\n\n', [E(event="s", data='{"a": [1,\n2]}')]),
    (
        "aiohttp_sse frame",
        b"id: 1\r\nevent: bgtask_done\r\ndata: {}\r\nretry: 50\r\n\r\n: ping\r\n\r\n",
        [E(event="bgtask_done", data="{}", id="1", retry=50)],
    ),
]


DECODE_PARAMS = [pytest.param(stream, events, id=name) for name, stream, events in DECODE_CASES]


def _decode(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.flush()


@pytest.mark.parametrize(("stream", "expected"), DECODE_PARAMS)
def test_decode_whole(stream: bytes, expected: list[ServerSentEvent]) -> None:
    assert _decode([stream]) == expected


@pytest.mark.parametrize(("stream", "expected"), DECODE_PARAMS)
def test_decode_any_split(stream: bytes, expected: list[ServerSentEvent]) -> None:
    assert _decode([stream[i : i + 1] for i in range(len(stream))]) == expected
    for cut in range(len(stream) + 1):
        assert _decode([stream[:cut], stream[cut:]]) == expected, cut


def test_cr_then_lf_in_next_chunk_is_one_line_end() -> None:
    decoder = SSEDecoder()
    # The CR ends the blank line, so the event is dispatched without waiting for more bytes.
    assert decoder.feed(b"data: a\r\r") == [E(data="a")]
    # The LF that follows belongs to that CR: it must not count as another (blank) line.
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r\n") == [E(data="b")]


def test_cr_lf_split_with_empty_chunk_between() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n\n") == [E(data="a")]


def test_events_are_returned_as_soon_as_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\ndata: 2\n") == [E(data="1")]
    assert decoder.feed(b"\n") == [E(data="2")]


def test_last_event_id_and_retry_properties() -> None:
    decoder = SSEDecoder()
    assert (decoder.last_event_id, decoder.retry) == (None, None)
    decoder.feed(b"id: a\nretry: 100\ndata: x\n\n")
    assert (decoder.last_event_id, decoder.retry) == ("a", 100)
    decoder.feed(b"retry: nope\nid: b\x00\ndata: y\n\n")
    assert (decoder.last_event_id, decoder.retry) == ("a", 100)
    decoder.feed(b"retry: 7\n")  # applies at once, even before the event is complete
    assert decoder.retry == 7


def test_flush_discards_partial_event_and_keeps_reconnect_state() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 5\nretry: 9\ndata: a\n\nevent: x\ndata: half")
    assert decoder.flush() == []
    assert (decoder.last_event_id, decoder.retry) == ("5", 9)
    # A fresh stream (reconnection) starts clean, including an optional BOM.
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == [E(data="b", id="5")]


def test_flush_drops_split_utf8() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: ✓".encode()[:-1]) == []
    assert decoder.flush() == []
    assert decoder.feed(b"data: ok\n\n") == [E(data="ok")]


def test_bom_only_stripped_at_start() -> None:
    assert _decode([b"data: a\n\n\xef\xbb\xbfdata: b\n\n"]) == [E(data="a")]


def test_long_line_in_many_chunks() -> None:
    payload = b"x" * 100_000
    chunks = [b"data: "] + [payload[i : i + 7] for i in range(0, len(payload), 7)] + [b"\n\n"]
    assert _decode(chunks) == [E(data=payload.decode())]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("[1, 2]", [1, 2]),
        ("null", None),
        ('"s"', "s"),
    ],
)
def test_json(data: str, expected: object) -> None:
    assert E(data=data).json() == expected


@pytest.mark.parametrize("data", ["", "{", "nan?", "{'a': 1}", "x" * 500])
def test_json_error(data: str) -> None:
    with pytest.raises(ProtocolError) as info:
        E(event="status", data=data).json()
    message = str(info.value)
    assert "\n" not in message
    assert "'status'" in message
    assert repr(data[:20]).rstrip("'") in message


ENCODE_CASES: list[tuple[dict[str, object], bytes]] = [
    ({"event": None, "data": "hi"}, b"data: hi\r\n\r\n"),
    ({"event": "x", "data": "hi"}, b"event: x\r\ndata: hi\r\n\r\n"),
    ({"event": "x", "data": ""}, b"event: x\r\ndata: \r\n\r\n"),
    ({"event": None, "data": "a\nb\r\nc\rd"}, b"data: a\r\ndata: b\r\ndata: c\r\ndata: d\r\n\r\n"),
    ({"event": None, "data": "a\n"}, b"data: a\r\ndata: \r\n\r\n"),
    (
        {"event": "e", "data": "{}", "id": "7", "retry": 30},
        b"id: 7\r\nevent: e\r\ndata: {}\r\nretry: 30\r\n\r\n",
    ),
    ({"event": None, "data": "d", "id": ""}, b"id: \r\ndata: d\r\n\r\n"),
    ({"event": None, "data": "d", "retry": 0}, b"data: d\r\nretry: 0\r\n\r\n"),
    ({"event": None, "data": "✓"}, "data: ✓\r\n\r\n".encode()),
]


@pytest.mark.parametrize(("kwargs", "expected"), ENCODE_CASES)
def test_encode(kwargs: dict[str, object], expected: bytes) -> None:
    assert encode_event(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "expected"), ENCODE_CASES)
def test_encode_round_trip(kwargs: dict[str, object], expected: bytes) -> None:
    (event,) = _decode([expected])
    assert event.event == (kwargs["event"] or "message")
    assert event.data == "\n".join(str(kwargs["data"]).replace("\r\n", "\n").split("\r"))
    assert event.id == kwargs.get("id")
    assert event.retry == kwargs.get("retry")


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"event": "a\nb", "data": ""}, "'a\\nb'"),
        ({"event": "a\rb", "data": ""}, "'a\\rb'"),
        ({"event": None, "data": "", "id": "1\n2"}, "'1\\n2'"),
        ({"event": None, "data": "", "id": "1\x002"}, "'1\\x002'"),
        ({"event": None, "data": "", "retry": -5}, "-5"),
    ],
)
def test_encode_errors(kwargs: dict[str, object], bad: str) -> None:
    with pytest.raises(ParseError) as info:
        encode_event(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert bad in message
