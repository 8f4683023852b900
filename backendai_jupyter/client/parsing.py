"""Pure parsers for the command-line style flags of the magics and the client.

Nothing here does I/O.  Every function raises :class:`ParseError` with a one-line message
that quotes the offending input.  The syntax follows the Backend.AI CLI (client SDK 20.03):
``-r cpu=4 -r mem=8g``, ``-e K=V``, ``-m folder[:path]`` and ``--env-range``/``--exec-range``
range expressions (``case:``, ``linspace:``, ``range:``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from string import Template

from ._exceptions import ConfigError, ParseError

__all__ = [
    "MAX_VALUES", "Case", "ResourceSpec", "expand_ranges", "format_binary_size",
    "parse_binary_size", "parse_bool", "parse_env", "parse_env_range", "parse_mounts",
    "parse_range", "parse_resource_flags", "parse_resources",
]

_SLOT = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # env var / range variable names (ASCII only)
_VFOLDER = re.compile(r"[\w.-]+")
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PLAIN = re.compile(_NUMBER)
_INT = re.compile(r"[0-9]+")
# "8g", "8G", "8gb", "8GiB", "512 m", "1024", "1024b"; "ib" needs a unit letter before it.
_SIZE = re.compile(rf"({_NUMBER})\s*(?:([kmgtp])(?:i?b)?|b)?", re.IGNORECASE)
_UNITS = "kmgtp"
_SIZE_OPTS = frozenset({"shmem"})  # resource *options*, not slots (sent as resource_opts)
_SIZED = frozenset({"mem", "shmem"})  # the only keys that take a size suffix
# Each value becomes a compute session: refuse sizes that can only be typos (range:0,10**9).
MAX_VALUES = 1000


def _fail(what: str, text: str, why: str) -> ParseError:
    # repr() keeps control characters (even newlines) from breaking the one-line promise.
    return ParseError(f"invalid {what} {text!r}: {why}")


def _norm(num: Decimal) -> str:
    """Plain decimal notation without trailing zeros (never an exponent): 4.0 -> "4"."""
    text = format(num, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n", ""})


def parse_bool(
    name: str,
    text: str,
    *,
    expected: str = "true or false",
    error: type[ConfigError] = ParseError,
) -> bool:
    """``yes``/``on``/``1``/... → ``True``, ``no``/``off``/``0``/``""``/... → ``False``.

    Otherwise raises ``error(f"{name} must be {expected}, got {text!r}")``: callers reading
    configuration (not a typed line) pass ``error=ConfigError``, so the magics report it as a
    failed command rather than a usage error.
    """
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise error(f"{name} must be {expected}, got {text!r}")


def parse_binary_size(text: str) -> int:
    """Parse a Backend.AI binary size (``"1g"`` = 2**30, ``"1.5GiB"``, ``"512m"``, ``"100"``).

    Units k, m, g, t, p are powers of 1024, case-insensitive, optionally followed by ``b`` or
    ``ib``; no unit means bytes.  Fractions of a byte are truncated, as Backend.AI does.
    """
    if (m := _SIZE.fullmatch(text.strip())) is None:
        raise _fail("size", text, "expected a number with an optional unit k, m, g, t or p")
    unit = (m.group(2) or "").lower()
    scale = 1024 ** (_UNITS.index(unit) + 1) if unit else 1
    return int(Decimal(m.group(1)) * scale)


def format_binary_size(n: int) -> str:
    """Format a byte count in the largest unit that keeps it exact (at most 2 decimals).

    ``2**30`` -> ``"1g"``, ``3 * 2**29`` -> ``"1.5g"``, ``1000`` -> ``"1000"``; the result
    always round-trips through :func:`parse_binary_size`.
    """
    if n < 0:
        raise ValueError(f"a size cannot be negative: {n}")
    for i in range(len(_UNITS), 0, -1):
        q = Decimal(n) / (1024**i)
        if q >= 1 and q == q.quantize(Decimal("0.01")):
            return _norm(q) + _UNITS[i - 1]
    return str(n)


@dataclass(frozen=True)
class ResourceSpec:
    """Parsed ``-r`` flags: ``resources`` are resource slots, ``resource_opts`` e.g. shmem."""

    resources: dict[str, str]
    resource_opts: dict[str, str]


def _resource_value(key: str, value: str, item: str) -> str:
    if key in _SIZED:
        m = _SIZE.fullmatch(value)
        if m is None or parse_binary_size(value) <= 0:
            raise _fail("resource", item, f"{key} must be a positive size like 8g or 512m")
        num, unit = Decimal(m.group(1)), (m.group(2) or "").lower()
        if not unit and num != num.to_integral_value():
            raise _fail("resource", item, f"{key} without a unit is in bytes, not fractional")
        return _norm(num) + unit
    if key.endswith(".device"):
        # Whole devices (cuda.device, rocm.device, tpu.device, ...) cannot be split.
        if not _INT.fullmatch(value) or int(value) <= 0:
            raise _fail("resource", item, f"{key} must be a positive integer")
        return str(int(value))
    if not _PLAIN.fullmatch(value) or Decimal(value) <= 0:
        hint = " (size units are only for mem and shmem)" if _SIZE.fullmatch(value) else ""
        raise _fail("resource", item, f"{key} must be a positive number{hint}")
    return _norm(Decimal(value))


def parse_resource_flags(items: Iterable[str]) -> ResourceSpec:
    """Parse ``-r KEY=VALUE`` flags into slots and options.

    Keys are slot names (``cpu``, ``mem``, ``cuda.shares``, ``cuda.device``, ...; lower-cased);
    ``shmem`` goes to ``resource_opts``.  Values are normalized the way Backend.AI accepts
    them: ``mem=8G`` -> ``"8g"``, ``mem=1.50GiB`` -> ``"1.5g"``, ``cpu=2.0`` -> ``"2"``.
    A key given twice is an error.
    """
    resources: dict[str, str] = {}
    opts: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise _fail("resource", item, "expected KEY=VALUE, e.g. cpu=4 or mem=8g")
        if not _SLOT.fullmatch(key):
            raise _fail("resource", item, f"{key!r} is not a resource slot name")
        if key in resources or key in opts:
            raise _fail("resource", item, f"{key} is given more than once")
        target = opts if key in _SIZE_OPTS else resources
        target[key] = _resource_value(key, value, item)
    return ResourceSpec(resources=resources, resource_opts=opts)


def parse_resources(items: Iterable[str]) -> dict[str, str]:
    """Like :func:`parse_resource_flags` for slots only; a resource option (shmem) is an error."""
    spec = parse_resource_flags(items)
    if spec.resource_opts:
        key = next(iter(spec.resource_opts))
        raise ParseError(f"invalid resource {key!r}: it is a resource option, not a slot")
    return spec.resources


def parse_env(items: Iterable[str]) -> dict[str, str]:
    """Parse ``-e NAME=VALUE`` flags; VALUE may be empty or contain ``=``; no duplicates."""
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise _fail("environment variable", item, "expected NAME=VALUE")
        if not _NAME.fullmatch(name):
            raise _fail("environment variable", item, f"{name!r} is not a valid name")
        if name in env:
            raise _fail("environment variable", item, f"{name} is given more than once")
        env[name] = value
    return env


def parse_mounts(items: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Parse ``-m NAME`` / ``-m NAME:PATH`` flags into ``(names, {name: path})``.

    As in the official CLI, ``NAME=PATH`` is accepted too.  PATH is kept as given (relative
    paths are resolved by the server under the work directory; absolute ones are allowed).
    Names keep their input order; mounting a folder twice is an error.
    """
    names: list[str] = []
    mount_map: dict[str, str] = {}
    for item in items:
        m = re.match(r"([^:=]*)(?:[:=](.*))?\Z", item, re.DOTALL)
        assert m is not None  # the pattern matches every string
        name, path = m.group(1), m.group(2)
        if not _VFOLDER.fullmatch(name):
            raise _fail("mount", item, "expected FOLDER or FOLDER:PATH with a folder name")
        if path is not None and not path.strip():
            raise _fail("mount", item, "the mount path after the folder name is empty")
        if name in names:
            raise _fail("mount", item, f"folder {name} is mounted more than once")
        names.append(name)
        if path is not None:
            mount_map[name] = path
    return names, mount_map


def _range_numbers(expr: str, body: str, kind: str) -> list[str]:
    args = [a.strip() for a in body.split(",")]
    if kind == "range":
        if not 1 <= len(args) <= 3:
            raise _fail("range expression", expr, "range: takes START,STOP[,STEP]")
        try:
            bounds = [int(a) for a in args]
        except ValueError:
            raise _fail("range expression", expr, "range: arguments must be integers") from None
        if len(bounds) == 3 and bounds[2] == 0:
            raise _fail("range expression", expr, "the step must not be zero")
        values = range(*bounds)
        if len(values) > MAX_VALUES:
            raise _fail("range expression", expr, f"more than {MAX_VALUES} values")
        return [str(v) for v in values]
    if len(args) != 3:
        raise _fail("range expression", expr, "linspace: takes START,STOP,NUM")
    try:
        start, stop, num = Decimal(args[0]), Decimal(args[1]), int(args[2])
    except (InvalidOperation, ValueError):
        why = "linspace: needs numbers START,STOP and an integer NUM"
        raise _fail("range expression", expr, why) from None
    if not (start.is_finite() and stop.is_finite()):
        raise _fail("range expression", expr, "START and STOP must be finite")
    if not 1 <= num <= MAX_VALUES:
        raise _fail("range expression", expr, f"NUM must be between 1 and {MAX_VALUES}")
    # Exact decimal steps, then numpy-style float output: linspace:1,2,3 -> 1.0, 1.5, 2.0
    # (the official CLI's output for this case); the last point is STOP exactly.
    if num == 1:
        points = [start]
    else:
        step = (stop - start) / (num - 1)
        points = [start + step * i for i in range(num - 1)] + [stop]
    return [repr(float(p)) for p in points]


def parse_range(expr: str) -> list[str]:
    """Expand a range expression into its values, as strings.

    * ``case:A,B,C`` -- the listed values (whitespace around each is stripped).
    * ``linspace:START,STOP,NUM`` -- NUM evenly spaced numbers, STOP included, like
      ``numpy.linspace``; formatted as Python floats (``"1.0"``, ``"1.5"``).
    * ``range:[START,]STOP[,STEP]`` -- integers with Python ``range()`` semantics.
    """
    kind, sep, body = expr.partition(":")
    kind = kind.strip()
    if not sep or kind not in ("case", "linspace", "range"):
        raise _fail("range expression", expr, "expected case:..., linspace:... or range:...")
    if kind == "case":
        values = [v.strip() for v in body.split(",")]
        if not all(values):
            raise _fail("range expression", expr, "case: values must not be empty")
    else:
        values = _range_numbers(expr, body, kind)
    if not values:
        raise _fail("range expression", expr, "it produces no values")
    return values


def parse_env_range(item: str) -> tuple[str, list[str]]:
    """Parse a ``--env-range``/``--exec-range`` value ``NAME=EXPR`` into ``(NAME, values)``."""
    name, sep, expr = item.partition("=")
    name = name.strip()
    if not sep or not _NAME.fullmatch(name):
        raise _fail("range", item, "expected NAME=EXPR, e.g. X=case:1,2,3")
    return name, parse_range(expr.strip())


@dataclass(frozen=True)
class Case:
    """One combination of range values.

    ``env_vars``/``exec_vars`` bind the ``--env-range``/``--exec-range`` variables; ``env`` is
    the ``-e`` templates with ``$NAME`` replaced from ``env_vars``, and ``exec`` the exec
    command template with ``$NAME`` replaced from ``exec_vars`` (``None`` without a template).
    """

    env_vars: dict[str, str]
    exec_vars: dict[str, str]
    env: dict[str, str]
    exec: str | None


def _ranges(items: Sequence[str], flag: str) -> dict[str, list[str]]:
    ranges: dict[str, list[str]] = {}
    for item in items:
        name, values = parse_env_range(item)
        if name in ranges:
            raise _fail(flag, item, f"variable {name} is defined more than once")
        ranges[name] = values
    return ranges


def _combos(ranges: dict[str, list[str]]) -> list[dict[str, str]]:
    # itertools.product of nothing is one empty combination: a run without ranges is 1 case.
    return [dict(zip(ranges, c, strict=True)) for c in itertools.product(*ranges.values())]


def _check_used(names: Iterable[str], templates: Iterable[str], flag: str) -> None:
    used: set[str] = set()
    for text in templates:
        for m in Template.pattern.finditer(text):
            used.add(m.group("named") or m.group("braced") or "")
    for name in names:
        if name not in used:
            raise ParseError(f"invalid {flag} {name!r}: ${name} is not used in any template")


def expand_ranges(
    env_ranges: Sequence[str],
    exec_ranges: Sequence[str],
    *,
    env_templates: Mapping[str, str] | None = None,
    exec_template: str | None = None,
) -> list[Case]:
    """Expand ``--env-range`` and ``--exec-range`` flags into all their combinations.

    As in the official CLI, each flag is ``NAME=EXPR`` (see :func:`parse_range`); ``$NAME``
    (or ``${NAME}``) of an env range is substituted into the values of the ``-e`` flags
    (``env_templates``), and of an exec range into the exec command (``exec_template``).
    The result is the cartesian product, env combinations outermost and the last flag
    varying fastest; cases that render identically are merged (the first one is kept).
    With no ranges at all there is exactly one case.  When templates are given, a range
    variable that none of them mentions is an error, since it could not change anything.
    """
    env_r, exec_r = _ranges(env_ranges, "--env-range"), _ranges(exec_ranges, "--exec-range")
    total = math.prod(len(v) for v in (*env_r.values(), *exec_r.values()))
    if total > MAX_VALUES:
        raise ParseError(f"invalid range flags: {total} combinations, more than {MAX_VALUES}")
    if env_templates is not None:
        _check_used(env_r, env_templates.values(), "--env-range")
    if exec_template is not None:
        _check_used(exec_r, [exec_template], "--exec-range")
    cases: dict[object, Case] = {}
    for env_vars, exec_vars in itertools.product(_combos(env_r), _combos(exec_r)):
        # safe_substitute: a "$" the user did not mean as a range variable is kept literally.
        env = {k: Template(v).safe_substitute(env_vars) for k, v in (env_templates or {}).items()}
        cmd = None if exec_template is None else Template(exec_template).safe_substitute(exec_vars)
        # Identity is what a session would actually get; bare bindings where no template.
        key = (
            tuple(env.items() if env_templates is not None else env_vars.items()),
            cmd if exec_template is not None else tuple(exec_vars.items()),
        )
        cases.setdefault(key, Case(env_vars, exec_vars, env, cmd))
    return list(cases.values())
