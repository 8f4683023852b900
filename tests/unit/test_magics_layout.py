"""The ``%backendai`` package's layout: one module per command, found through one table; no
import cycle (type-only imports included); small modules and functions. Pure checks on the
source and the parser (no shell, no endpoint)."""

from __future__ import annotations

import argparse
import ast
import importlib
from pathlib import Path

import pytest

from backendai_jupyter.magics.commands import COMMANDS
from backendai_jupyter.magics.commands import config as config_command
from backendai_jupyter.magics.grammar import build_parser, help_request, help_transformer
from backendai_jupyter.workspace import CLIENT_KEYS, SESSION_KEYS

MAGICS = Path(importlib.import_module("backendai_jupyter.magics").__file__ or "").parent
PACKAGE = "backendai_jupyter.magics"


def _module_name(path: Path) -> str:
    parts = path.relative_to(MAGICS).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join([PACKAGE, *parts])


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(MAGICS.rglob("*.py")) if "widgets" not in p.parts}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's own modules ``path`` imports, anywhere (``TYPE_CHECKING`` blocks and
    function bodies included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join([*base, node.module] if node.module else base) if node.level \
                else node.module or ""
            found |= {target, *(f"{target}.{a.name}" for a in node.names)}
    return found & known


def test_no_import_cycle() -> None:
    sources = _sources()
    graph = {name: _imports(name, path, set(sources)) - {name} for name, path in sources.items()}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                cycles.append([*trail[trail.index(nxt):], nxt])
            elif len(trail) < len(graph):
                walk(nxt, [*trail, nxt])

    for start in graph:
        walk(start, [start])
    assert cycles == []


@pytest.mark.parametrize("path", sorted(_sources().values()), ids=lambda p: p.name)
def test_small_modules_and_functions(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 500
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


def test_every_command_module_is_in_the_table() -> None:
    modules = {p.stem for p in (MAGICS / "commands").glob("*.py") if p.stem != "__init__"}
    assert modules == {module for module, _ in COMMANDS.values()}
    for name, (module, _) in COMMANDS.items():
        command = importlib.import_module(f"{PACKAGE}.commands.{module}")
        assert callable(command.add_arguments) and callable(command.run), name
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)  # --help lists them in the table's order


def test_config_set_help_lists_every_key() -> None:
    text = config_command.set_help()
    assert all(key in text for key in [*CLIENT_KEYS, *SESSION_KEYS])
    assert set(config_command.HINTS) <= {*CLIENT_KEYS, *SESSION_KEYS}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run?", ("run", True)),
        ("vfolder ls ??", ("vfolder ls", True)),
        ("?", ("", True)),
        ("ps --all", ("ps --all", False)),
        ("run -c 'x?'", ("run -c 'x?'", False)),
    ],
)
def test_help_request(text: str, expected: tuple[str, bool]) -> None:
    assert help_request(text) == expected


def test_help_transformer_rewrites_bare_magic_too() -> None:
    assert help_transformer(["  %backendai?\n", "%backendai ps ?"]) == [
        "  %backendai --help\n", "%backendai ps --help"
    ]
