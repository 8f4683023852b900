"""Tests for the pure flag and range-expression parsers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backendai_jupyter.client._exceptions import ConfigError, ParseError
from backendai_jupyter.client.parsing import (
    MAX_VALUES,
    Case,
    ResourceSpec,
    expand_ranges,
    format_binary_size,
    parse_binary_size,
    parse_bool,
    parse_env,
    parse_env_range,
    parse_mounts,
    parse_range,
    parse_resource_flags,
    parse_resources,
)


def _raises(func: Callable[..., Any], *args: Any, mentions: str, **kwargs: Any) -> str:
    """Assert a one-line ParseError that quotes ``mentions``; return its message."""
    with pytest.raises(ParseError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert mentions in message
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    return message


# ------------------------------------------------------------------- binary sizes

G = 2**30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1024", 1024),
        ("1024b", 1024),
        ("1k", 1024),
        ("1K", 1024),
        ("1kb", 1024),
        ("1KiB", 1024),
        ("512m", 512 * 2**20),
        ("8g", 8 * G),
        ("8G", 8 * G),
        ("8gb", 8 * G),
        ("8GiB", 8 * G),
        ("8 g", 8 * G),
        (" 8g ", 8 * G),
        ("1.5g", 3 * 2**29),
        (".5g", 2**29),
        ("2.t", 2 * 2**40),
        ("1p", 2**50),
        ("0.1k", 102),  # truncated to whole bytes, like Backend.AI
    ],
)
def test_parse_binary_size(text: str, expected: int) -> None:
    assert parse_binary_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "g", "-1g", "1x", "1 gigabyte", "1ib", "1e3", "1,5g", "1.5.2g", "1gg", "0x10"]
)
def test_parse_binary_size_errors(text: str) -> None:
    _raises(parse_binary_size, text, mentions=repr(text))


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0"),
        (1, "1"),
        (1000, "1000"),
        (1023, "1023"),
        (1024, "1k"),
        (1025, "1025"),
        (1536, "1.5k"),
        (512 * 2**20, "512m"),
        (G, "1g"),
        (3 * 2**29, "1.5g"),
        (5 * 2**28, "1.25g"),
        (1536 * 2**30, "1.5t"),
        (2**50, "1p"),
        (2**60, "1024p"),
        (G + 1, str(G + 1)),
    ],
)
def test_format_binary_size(n: int, expected: str) -> None:
    assert format_binary_size(n) == expected
    assert parse_binary_size(expected) == n


def test_format_binary_size_negative() -> None:
    with pytest.raises(ValueError, match="-1"):
        format_binary_size(-1)


# ---------------------------------------------------------------------- resources


@pytest.mark.parametrize(
    ("items", "resources", "opts"),
    [
        ([], {}, {}),
        (["cpu=4"], {"cpu": "4"}, {}),
        (["cpu=0.5"], {"cpu": "0.5"}, {}),
        (["cpu=2.0"], {"cpu": "2"}, {}),
        (["cpu=04"], {"cpu": "4"}, {}),
        (["CPU=1"], {"cpu": "1"}, {}),
        ([" cpu = 1 "], {"cpu": "1"}, {}),
        (["mem=8g"], {"mem": "8g"}, {}),
        (["mem=8G"], {"mem": "8g"}, {}),
        (["mem=8GiB"], {"mem": "8g"}, {}),
        (["mem=8gb"], {"mem": "8g"}, {}),
        (["mem=512m"], {"mem": "512m"}, {}),
        (["mem=1.5g"], {"mem": "1.5g"}, {}),
        (["mem=1.50g"], {"mem": "1.5g"}, {}),
        (["mem=1048576"], {"mem": "1048576"}, {}),
        (["mem=1024b"], {"mem": "1024"}, {}),
        (["cuda.shares=0.5"], {"cuda.shares": "0.5"}, {}),
        (["cuda.shares=2"], {"cuda.shares": "2"}, {}),
        (["cuda.device=2"], {"cuda.device": "2"}, {}),
        (["rocm.device=1"], {"rocm.device": "1"}, {}),
        (["tpu.device=8"], {"tpu.device": "8"}, {}),
        (["shmem=64m"], {}, {"shmem": "64m"}),
        (["shmem=1G"], {}, {"shmem": "1g"}),
        (
            ["cpu=3", "mem=2g", "cuda.shares=0.5", "shmem=64m"],
            {"cpu": "3", "mem": "2g", "cuda.shares": "0.5"},
            {"shmem": "64m"},
        ),
        (["custom_slot=3"], {"custom_slot": "3"}, {}),
    ],
)
def test_parse_resource_flags(
    items: list[str], resources: dict[str, str], opts: dict[str, str]
) -> None:
    spec = parse_resource_flags(items)
    assert spec == ResourceSpec(resources=resources, resource_opts=opts)
    assert list(spec.resources) == list(resources)  # input order is kept


@pytest.mark.parametrize(
    ("items", "mentions"),
    [
        (["cpu"], "'cpu'"),
        (["cpu="], "'cpu='"),
        (["=4"], "'=4'"),
        (["cpu:4"], "'cpu:4'"),
        (["1cpu=4"], "'1cpu=4'"),
        (["cuda-device=1"], "'cuda-device=1'"),
        (["a.b.c=1"], "'a.b.c=1'"),
        (["cuda.=1"], "'cuda.=1'"),
        (["cpu=0"], "'cpu=0'"),
        (["cpu=-1"], "'cpu=-1'"),
        (["cpu=four"], "'cpu=four'"),
        (["cpu=1e3"], "'cpu=1e3'"),
        (["cpu=2g"], "'cpu=2g'"),
        (["cpu=inf"], "'cpu=inf'"),
        (["cpu=nan"], "'cpu=nan'"),
        (["cuda.shares=0"], "'cuda.shares=0'"),
        (["cuda.shares=1m"], "'cuda.shares=1m'"),
        (["cuda.device=1.5"], "'cuda.device=1.5'"),
        (["cuda.device=0"], "'cuda.device=0'"),
        (["cuda.device=-2"], "'cuda.device=-2'"),
        (["mem=0"], "'mem=0'"),
        (["mem=0g"], "'mem=0g'"),
        (["mem=-1g"], "'mem=-1g'"),
        (["mem=8x"], "'mem=8x'"),
        (["mem=1.5"], "'mem=1.5'"),
        (["mem=g"], "'mem=g'"),
        (["shmem=lots"], "'shmem=lots'"),
        (["cpu=1", "cpu=2"], "'cpu=2'"),
        (["cpu=1", "CPU=2"], "'CPU=2'"),
        (["shmem=1m", "shmem=2m"], "'shmem=2m'"),
        (["cpu=1\n2"], "'cpu=1\\n2'"),
        (["cp\nu=1"], "'cp\\nu=1'"),
    ],
)
def test_parse_resource_flags_errors(items: list[str], mentions: str) -> None:
    _raises(parse_resource_flags, items, mentions=mentions)


def test_resource_unit_hint() -> None:
    message = _raises(parse_resource_flags, ["cpu=2g"], mentions="'cpu=2g'")
    assert "mem" in message


def test_parse_resources() -> None:
    assert parse_resources(["cpu=1", "mem=1g"]) == {"cpu": "1", "mem": "1g"}
    _raises(parse_resources, ["cpu=1", "shmem=1g"], mentions="'shmem'")
    _raises(parse_resources, ["cpu=x"], mentions="'cpu=x'")


# ------------------------------------------------------------------------ booleans


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True), ("true", True), ("TRUE", True), (" yes ", True), ("on", True), ("y", True),
        ("0", False), ("false", False), ("No", False), ("off", False), ("n", False),
        ("", False), ("  ", False),
    ],
)
def test_parse_bool(text: str, expected: bool) -> None:
    assert parse_bool("keep", text) is expected


@pytest.mark.parametrize("text", ["maybe", "2", "tru", "yes please", "-1"])
def test_parse_bool_errors(text: str) -> None:
    message = _raises(parse_bool, "keep", text, mentions=repr(text))
    assert message == f"keep must be true or false, got {text!r}"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "keep must be true or false, got 'maybe'"),
        ({"expected": "a boolean (true/false)"}, "keep must be a boolean (true/false), got 'maybe'"),
    ],
)
def test_parse_bool_error_class_and_wording(kwargs: dict[str, Any], message: str) -> None:
    # Configuration readers raise a plain ConfigError (not a ParseError) in their own words.
    with pytest.raises(ConfigError) as info:
        parse_bool("keep", "maybe", error=ConfigError, **kwargs)
    assert type(info.value) is ConfigError and str(info.value) == message


# ------------------------------------------------------------------ env and mounts


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], {}),
        (["A=1"], {"A": "1"}),
        (["A="], {"A": ""}),
        (["A=b=c"], {"A": "b=c"}),
        (["_x9=  spaced "], {"_x9": "  spaced "}),
        (["CASENO=$X"], {"CASENO": "$X"}),
        (["A=1", "B=2"], {"A": "1", "B": "2"}),
        (["PATH=/a:/b"], {"PATH": "/a:/b"}),
    ],
)
def test_parse_env(items: list[str], expected: dict[str, str]) -> None:
    assert parse_env(items) == expected


@pytest.mark.parametrize(
    ("items", "mentions"),
    [
        (["A"], "'A'"),
        (["=1"], "'=1'"),
        (["1A=x"], "'1A=x'"),
        (["A-B=x"], "'A-B=x'"),
        ([" A=x"], "' A=x'"),
        (["Ä=x"], "'Ä=x'"),
        (["A=1", "A=2"], "'A=2'"),
    ],
)
def test_parse_env_errors(items: list[str], mentions: str) -> None:
    _raises(parse_env, items, mentions=mentions)


@pytest.mark.parametrize(
    ("items", "names", "mapping"),
    [
        ([], [], {}),
        (["data"], ["data"], {}),
        (["data:/data/in"], ["data"], {"data": "/data/in"}),
        (["data:relative/dir"], ["data"], {"data": "relative/dir"}),
        (["data=/mnt"], ["data"], {"data": "/mnt"}),
        (["data:/a:b"], ["data"], {"data": "/a:b"}),
        (["my-folder.v2"], ["my-folder.v2"], {}),
        (["b", "a:x"], ["b", "a"], {"a": "x"}),
    ],
)
def test_parse_mounts(items: list[str], names: list[str], mapping: dict[str, str]) -> None:
    assert parse_mounts(items) == (names, mapping)


@pytest.mark.parametrize(
    ("items", "mentions"),
    [
        ([""], "''"),
        ([":/path"], "':/path'"),
        (["data:"], "'data:'"),
        (["data:  "], "'data:  '"),
        (["da ta"], "'da ta'"),
        (["a/b"], "'a/b'"),
        (["data", "data:/x"], "'data:/x'"),
    ],
)
def test_parse_mounts_errors(items: list[str], mentions: str) -> None:
    _raises(parse_mounts, items, mentions=mentions)


# ------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("case:a", ["a"]),
        ("case:1,2,3,4", ["1", "2", "3", "4"]),
        ("case:a, b ,c", ["a", "b", "c"]),
        ("case:x=1,y", ["x=1", "y"]),
        ("case:a,a", ["a", "a"]),
        ("linspace:1,2,3", ["1.0", "1.5", "2.0"]),
        ("linspace:0,1,5", ["0.0", "0.25", "0.5", "0.75", "1.0"]),
        ("linspace:0,1,4", ["0.0", "0.3333333333333333", "0.6666666666666666", "1.0"]),
        ("linspace:0,0.3,4", ["0.0", "0.1", "0.2", "0.3"]),
        ("linspace:5,5,1", ["5.0"]),
        ("linspace:5,7,1", ["5.0"]),
        ("linspace:2,1,3", ["2.0", "1.5", "1.0"]),
        ("linspace:-1,1,3", ["-1.0", "0.0", "1.0"]),
        ("linspace: 1 , 2 , 2 ", ["1.0", "2.0"]),
        ("linspace:1e-3,2e-3,2", ["0.001", "0.002"]),
        ("range:1,6,2", ["1", "3", "5"]),
        ("range:0,3", ["0", "1", "2"]),
        ("range:3", ["0", "1", "2"]),
        ("range:5,0,-2", ["5", "3", "1"]),
        ("range:-2,1", ["-2", "-1", "0"]),
        ("range: 1 , 3 ", ["1", "2"]),
    ],
)
def test_parse_range(expr: str, expected: list[str]) -> None:
    assert parse_range(expr) == expected


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "1,2,3",
        "list:1,2",
        "CASE:1",
        "case:",
        "case:a,,b",
        "case:a,",
        "linspace:1,2",
        "linspace:1,2,3,4",
        "linspace:1,2,0",
        "linspace:1,2,-1",
        "linspace:1,2,1.5",
        "linspace:a,2,3",
        "linspace:1,nan,3",
        "linspace:inf,2,3",
        f"linspace:0,1,{MAX_VALUES + 1}",
        "range:",
        "range:1,2,3,4",
        "range:1.5,3",
        "range:a,b",
        "range:1,5,0",
        "range:5,1",
        "range:0",
        f"range:{MAX_VALUES + 1}",
        "range:1\n2",
        "case:a\n,",
    ],
)
def test_parse_range_errors(expr: str) -> None:
    _raises(parse_range, expr, mentions=repr(expr))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("X=case:1,2", ("X", ["1", "2"])),
        ("lr=linspace:0.1,0.2,2", ("lr", ["0.1", "0.2"])),
        ("_N = range:2", ("_N", ["0", "1"])),
        ("X=case:a=b", ("X", ["a=b"])),
    ],
)
def test_parse_env_range(item: str, expected: tuple[str, list[str]]) -> None:
    assert parse_env_range(item) == expected


@pytest.mark.parametrize(
    ("item", "mentions"),
    [
        ("case:1,2", "'case:1,2'"),
        ("=case:1", "'=case:1'"),
        ("1X=case:1", "'1X=case:1'"),
        ("X-Y=case:1", "'X-Y=case:1'"),
        ("X=nope:1", "'nope:1'"),
        ("X=range:0", "'range:0'"),
    ],
)
def test_parse_env_range_errors(item: str, mentions: str) -> None:
    _raises(parse_env_range, item, mentions=mentions)


def test_expand_no_ranges_is_one_case() -> None:
    assert expand_ranges([], []) == [Case({}, {}, {}, None)]
    assert expand_ranges([], [], env_templates={"A": "1"}, exec_template="python x.py") == [
        Case({}, {}, {"A": "1"}, "python x.py")
    ]


def test_expand_doc_example() -> None:
    # The SDK documentation's example: four sessions with CASENO=1..4.
    cases = expand_ranges(["X=case:1,2,3,4"], [], env_templates={"CASENO": "$X"})
    assert [c.env for c in cases] == [{"CASENO": v} for v in "1234"]
    assert [c.env_vars for c in cases] == [{"X": v} for v in "1234"]
    assert all(c.exec is None and c.exec_vars == {} for c in cases)


def test_expand_product_order() -> None:
    cases = expand_ranges(
        ["A=case:a1,a2", "B=range:2"],
        ["N=linspace:0,1,2"],
        env_templates={"AB": "${A}_$B", "FIXED": "$HOME/x"},
        exec_template="python main.py --n $N $$N",
    )
    got = [(c.env["AB"], c.exec) for c in cases]
    assert got == [
        (ab, f"python main.py --n {n} $N")
        for ab in ("a1_0", "a1_1", "a2_0", "a2_1")
        for n in ("0.0", "1.0")
    ]
    # Unknown "$HOME" is not a range variable: it is kept literally.
    assert {c.env["FIXED"] for c in cases} == {"$HOME/x"}
    assert cases[3].env_vars == {"A": "a1", "B": "1"}
    assert cases[3].exec_vars == {"N": "1.0"}


def test_expand_without_templates_gives_bindings() -> None:
    cases = expand_ranges(["X=case:1,2"], ["Y=case:a,b"])
    assert [(c.env_vars, c.exec_vars) for c in cases] == [
        ({"X": "1"}, {"Y": "a"}),
        ({"X": "1"}, {"Y": "b"}),
        ({"X": "2"}, {"Y": "a"}),
        ({"X": "2"}, {"Y": "b"}),
    ]
    assert all(c.env == {} and c.exec is None for c in cases)


def test_expand_merges_identical_cases() -> None:
    cases = expand_ranges(["X=case:1,1,2"], [], env_templates={"V": "$X"})
    assert [c.env for c in cases] == [{"V": "1"}, {"V": "2"}]


@pytest.mark.parametrize(
    ("env_ranges", "exec_ranges", "kwargs", "mentions"),
    [
        (["X=case:1", "X=case:2"], [], {}, "'X=case:2'"),
        ([], ["N=range:1", "N=range:2"], {}, "'N=range:2'"),
        (["X=bogus:1"], [], {}, "'bogus:1'"),
        ([], ["X"], {}, "'X'"),
        (["X=case:1"], [], {"env_templates": {"A": "$Y"}}, "'X'"),
        (["X=case:1"], [], {"env_templates": {"A": "$$X"}}, "'X'"),
        ([], ["N=case:1"], {"exec_template": "python main.py"}, "'N'"),
        (["A=range:100", "B=range:100"], [], {}, str(MAX_VALUES)),
        (["A=range:100"], ["B=range:100"], {}, str(MAX_VALUES)),
    ],
)
def test_expand_errors(
    env_ranges: list[str], exec_ranges: list[str], kwargs: dict[str, Any], mentions: str
) -> None:
    _raises(expand_ranges, env_ranges, exec_ranges, mentions=mentions, **kwargs)
