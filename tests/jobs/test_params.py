"""The pure parts of notebook jobs, by tables: values, ranges, cases, labels, parameter cells."""

from __future__ import annotations

from typing import Any

import pytest

from backendai_jupyter.client._exceptions import ParseError
from backendai_jupyter.jobs.params import (
    case_label,
    coerce,
    defined_names,
    expand_cases,
    merge_params,
    parse_param_ranges,
    unknown_params,
)


@pytest.mark.parametrize(("text", "value"), [
    ("3", 3), ("-2", -2), ("0.1", 0.1), ("1e-3", 0.001), (".5", 0.5), ("2.", 2.0),
    ("True", True), ("false", False), ("None", None), ("adam", "adam"), ("0x10", "0x10"),
    ("1,2", "1,2"), ("", ""), ("nan", "nan"),
])
def test_coerce(text: str, value: Any) -> None:
    got = coerce(text)
    assert got == value and type(got) is type(value)


def test_merge_params_cli_wins_over_the_file() -> None:
    assert merge_params({"lr": 0.1, "name": "a"}, [("lr", "0.5"), ("bs", "32")]) == {
        "lr": 0.5, "name": "a", "bs": 32}


@pytest.mark.parametrize(("file", "pairs", "message"), [
    (None, [("1x", "2")], "invalid parameter '1x'"),
    ({"a-b": 1}, [], "invalid parameter in the parameters file 'a-b'"),
])
def test_merge_params_rejects_bad_names(file: Any, pairs: Any, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        merge_params(file, pairs)


@pytest.mark.parametrize(("items", "expected"), [
    (["lr=linspace:0.001,0.1,3"], {"lr": [0.001, 0.0505, 0.1]}),
    (["bs=case:32,64", "opt=case:adam,sgd"], {"bs": [32, 64], "opt": ["adam", "sgd"]}),
    (["n=range:3"], {"n": [0, 1, 2]}),
    ([], {}),
])
def test_parse_param_ranges(items: list[str], expected: dict[str, list[Any]]) -> None:
    assert parse_param_ranges(items) == expected


@pytest.mark.parametrize(("items", "message"), [
    (["lr=linspace:1,2"], "linspace: takes START,STOP,NUM"),
    (["lr"], "expected NAME=EXPR"),
    (["lr=steps:1,2"], "expected case:..., linspace:... or range:..."),
    (["a=case:1", "a=case:2"], "a is given more than once"),
    (["a=range:100", "b=range:100"], "10000 cases, more than 1000"),
])
def test_parse_param_ranges_errors_are_one_line(items: list[str], message: str) -> None:
    with pytest.raises(ParseError, match=message) as err:
        parse_param_ranges(items)
    assert "\n" not in str(err.value)


def test_expand_cases_is_the_product_with_the_last_range_fastest() -> None:
    cases = expand_cases({"epochs": 2}, {"lr": [0.1, 0.2], "bs": [32, 64]})
    assert [c.swept for c in cases] == [
        {"lr": 0.1, "bs": 32}, {"lr": 0.1, "bs": 64}, {"lr": 0.2, "bs": 32}, {"lr": 0.2, "bs": 64}]
    assert [c.index for c in cases] == [0, 1, 2, 3]
    assert cases[3].params == {"epochs": 2, "lr": 0.2, "bs": 64}
    assert [c.label for c in cases][:2] == ["000-lr-0.1_bs-32", "001-lr-0.1_bs-64"]


def test_expand_cases_without_ranges_is_one_case() -> None:
    (case,) = expand_cases({"a": 1}, {})
    assert case.swept == {} and case.params == {"a": 1} and case.label == "000"


def test_a_parameter_both_fixed_and_swept_is_an_error() -> None:
    with pytest.raises(ParseError, match="lr is given both"):
        expand_cases({"lr": 1}, {"lr": [1, 2]})


@pytest.mark.parametrize(("index", "swept", "label"), [
    (0, {}, "000"),
    (7, {"lr": 0.001}, "007-lr-0.001"),
    (12, {"name": "a b/c", "x": -1}, "012-name-abc_x--1"),
    (1, {"p": "/"}, "001-p-x"),
    (3, {"s": "y" * 40}, "003-s-" + "y" * 24),
])
def test_case_label(index: int, swept: dict[str, Any], label: str) -> None:
    assert case_label(index, swept) == label


@pytest.mark.parametrize(("source", "names"), [
    ("lr = 0.1\nbs = 32", ["lr", "bs"]),
    ("a, (b, c) = 1, (2, 3)\nd: int = 4\ne += 1", ["a", "b", "c", "d", "e"]),
    ("x = y = 1\nx = 2", ["x", "y"]),
    ("# nothing", []),
    ("def f():\n    inner = 1\nimport os", []),
    ("%matplotlib inline\nlr = 1", None),
])
def test_defined_names(source: str, names: list[str] | None) -> None:
    assert defined_names(source) == names


def test_unknown_params_keeps_the_given_order() -> None:
    assert unknown_params(["lr", "zz", "bs", "aa"], ["lr", "bs"]) == ["zz", "aa"]
