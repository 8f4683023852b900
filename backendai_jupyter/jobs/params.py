"""Pure parsing of a notebook job's parameters: ``-p NAME VALUE``, ``-f params.yaml``,
``--param-range NAME=EXPR`` (the range syntax of ``%backendai run``), and the names a notebook's
``parameters`` cell defines. Nothing here does I/O; every error is a one-line :class:`ParseError`.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..client import ParseError
from ..client.parsing import MAX_VALUES, parse_env_range, parse_resource_flags

__all__ = [
    "Case",
    "case_label",
    "coerce",
    "defined_names",
    "expand_cases",
    "merge_params",
    "parse_param_ranges",
    "unknown_params",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?")
_LITERALS: dict[str, Any] = {"True": True, "False": False, "None": None,
                             "true": True, "false": False}


def coerce(text: str) -> Any:
    """A command-line value as the Python value papermill's ``-p`` would give it.

    ``"3"`` → 3, ``"0.1"``/``"1e-3"`` → float, ``True``/``False``/``None`` → themselves,
    anything else stays a string (``"adam"``, ``"0x10"``, ``"1,2"``).
    """
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return _LITERALS.get(text, text)


def _check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise ParseError(f"invalid {what} {name!r}: not a Python identifier")
    return name


def merge_params(
    file_params: Mapping[str, Any] | None, pairs: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """``-f`` values, then ``-p NAME VALUE`` pairs (later ones win), names checked."""
    merged: dict[str, Any] = {}
    for name, value in (file_params or {}).items():
        merged[_check_name(str(name), "parameter in the parameters file")] = value
    for name, text in pairs:
        merged[_check_name(name, "parameter")] = coerce(text)
    return merged


def parse_param_ranges(items: Sequence[str]) -> dict[str, list[Any]]:
    """``--param-range NAME=EXPR`` flags → ``{NAME: [values]}`` (values coerced)."""
    ranges: dict[str, list[Any]] = {}
    for item in items:
        name, values = parse_env_range(item)
        if name in ranges:
            raise ParseError(f"invalid --param-range {item!r}: {name} is given more than once")
        ranges[name] = [coerce(v) for v in values]
    total = math.prod(len(v) for v in ranges.values())
    if total > MAX_VALUES:
        raise ParseError(f"invalid --param-range flags: {total} cases, more than {MAX_VALUES}")
    return ranges


def parse_resource_ranges(items: Sequence[str]) -> dict[str, list[str]]:
    """``--resource-range SLOT=EXPR`` flags (``cuda.shares=case:0.5,1``) → ``{SLOT: [values]}``,
    each value checked and normalised as ``-r`` does."""
    ranges: dict[str, list[str]] = {}
    for item in items:
        slot, sep, expr = item.partition("=")
        slot = slot.strip().lower()
        if not sep or not slot:
            raise ParseError(f"invalid --resource-range {item!r}: expected SLOT=EXPR, "
                             "e.g. cuda.shares=case:0.5,1")
        if slot in ranges:
            raise ParseError(f"invalid --resource-range {item!r}: {slot} is given more than once")
        _, values = parse_env_range(f"X={expr}")
        specs = [parse_resource_flags([f"{slot}={v}"]) for v in values]
        if any(spec.resource_opts for spec in specs):
            raise ParseError(f"invalid --resource-range {item!r}: {slot} is not a resource slot")
        ranges[slot] = [spec.resources[slot] for spec in specs]
    return ranges


@dataclass(frozen=True)
class Case:
    """One run of the notebook: its index, the swept values and all parameters it gets."""

    index: int
    swept: dict[str, Any]
    params: dict[str, Any]
    #: resource slots this case asks for on top of the job's (``--resource-range``)
    resources: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return case_label(self.index, self.swept)


def expand_cases(
    params: Mapping[str, Any],
    ranges: Mapping[str, Sequence[Any]],
    resource_ranges: Mapping[str, Sequence[str]] | None = None,
) -> list[Case]:
    """The cartesian product of the ranges (last one fastest), each over the fixed ``params``.

    ``resource_ranges`` (slot → values, ``--resource-range``) are swept too: they size each
    case's session and are shown with the swept values, but are not notebook parameters.
    A name both fixed and swept is an error: which value should win is not obvious.
    """
    both = sorted(set(params) & set(ranges)) or sorted(set(resource_ranges or {}) & set(ranges))
    if both:
        raise ParseError(f"parameter {both[0]} is given both with -p/-f and --param-range")
    slots = dict(resource_ranges or {})
    cases = []
    product = itertools.product(*ranges.values(), *slots.values())
    for index, combo in enumerate(product):
        swept = dict(zip([*ranges, *slots], combo, strict=True))
        sized = {k: str(swept[k]) for k in slots}
        values = {k: v for k, v in swept.items() if k not in slots}
        cases.append(Case(index=index, swept=swept, params={**params, **values}, resources=sized))
    return cases


_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")


def case_label(index: int, swept: Mapping[str, Any]) -> str:
    """A file-name-safe, sortable name for a case: ``003-lr-0.001_bs-32`` (``000`` alone when
    nothing is swept). Each value is cut to 24 characters; the index keeps labels unique."""
    parts = [f"{index:03d}"]
    values = "_".join(
        f"{name}-{_UNSAFE.sub('', str(value))[:24] or 'x'}" for name, value in swept.items()
    )
    if values:
        parts.append(values)
    return "-".join(parts)


def defined_names(source: str) -> list[str] | None:
    """The names a ``parameters`` cell assigns at top level, in order; None if it does not
    parse (magics, shell escapes): then nothing can be checked."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names: list[str] = []

    def add(target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                add(elt)

    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                add(target)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            add(node.target)
    return list(dict.fromkeys(names))


def unknown_params(given: Iterable[str], defined: Sequence[str]) -> list[str]:
    """The given parameter names the notebook does not define, in the given order."""
    known = set(defined)
    return [name for name in given if name not in known]
