"""Reading a job's notebook and preparing one copy per case, with papermill's conventions.

papermill injects the parameters (a cell tagged ``injected-parameters`` after the one tagged
``parameters``, or at the top when there is none) and records them in the notebook's metadata;
we add the :func:`~.record.record` helper as the first cell. The prepared notebook needs
nothing from this package where it runs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..client import ConfigError, ParseError
from .params import defined_names, unknown_params
from .record import HELPER_TAG, helper_source

__all__ = ["CellFailure", "Notebook", "first_failure", "load_notebook", "prepare"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Notebook:
    """A loaded notebook and what its ``parameters`` cell defines (None: no such cell, or it
    does not parse, so parameters cannot be checked)."""

    path: Path
    node: nbformat.NotebookNode
    parameters: list[str] | None
    has_parameters_cell: bool

    @property
    def code_cells(self) -> int:
        return sum(1 for c in self.node.cells if c.cell_type == "code")

    def check(self, names: Sequence[str]) -> list[str]:
        """Raise for parameters the notebook does not define; return warnings to print."""
        if not self.has_parameters_cell:
            return [f"{self.path.name} has no cell tagged 'parameters': the parameters are "
                    "injected at the top (as papermill does)"] if names else []
        if self.parameters is None:
            return [f"the parameters cell of {self.path.name} is not plain Python: "
                    "parameter names are not checked"]
        unknown = unknown_params(names, self.parameters)
        if unknown:
            known = ", ".join(self.parameters) or "none"
            raise ParseError(f"unknown parameter {unknown[0]!r}: the parameters cell of "
                             f"{self.path.name} defines {known}")
        return []


def load_notebook(path: Path | str) -> Notebook:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such notebook: {path}")
    try:
        node = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    except Exception as e:  # nbformat raises json, validation and reader errors alike
        why = " ".join(str(e).split())[:120]
        raise ConfigError(f"{path} is not a Jupyter notebook: {why}") from None
    index = _tagged(node, "parameters")
    names = defined_names(node.cells[index].source) if index is not None else None
    return Notebook(path, node, names, index is not None)


def _tagged(nb: nbformat.NotebookNode, tag: str) -> int | None:
    for i, cell in enumerate(nb.cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return i
    return None


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    # papermill logs its own "no parameters cell" warning; ours (Notebook.check) is already out.
    logger = logging.getLogger(name)
    before = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = before


def prepare(nb: Notebook, params: Mapping[str, Any]) -> nbformat.NotebookNode:
    """A new notebook: the parameters injected (papermill) and the record helper first."""
    try:
        from papermill.parameterize import parameterize_notebook
    except ImportError:
        raise ConfigError(
            "notebook jobs need papermill: pip install 'backendai-jupyter[jobs]'"
        ) from None
    node = copy.deepcopy(nb.node)
    # What papermill's own loader adds before it parameterizes: tags on every cell and a
    # papermill metadata section.
    for cell in node.cells:
        cell.metadata.setdefault("tags", [])
    node.metadata.setdefault("papermill", nbformat.NotebookNode())  # type: ignore[no-untyped-call]
    with _quiet("papermill"):
        node = parameterize_notebook(node, dict(params), language="python", kernel_name="python3")
    helper = nbformat.v4.new_code_cell(helper_source())  # type: ignore[no-untyped-call]
    helper.metadata["tags"] = [HELPER_TAG]
    helper.metadata["jupyter"] = {"source_hidden": True}
    node.cells.insert(0, helper)
    result: nbformat.NotebookNode = node
    return result


@dataclass(frozen=True)
class CellFailure:
    """The first cell that raised: its index among all cells, source, and error."""

    index: int
    source: str
    ename: str
    evalue: str
    traceback: str

    @property
    def line(self) -> str:
        return f"cell {self.index}: {self.ename}: {self.evalue}".replace("\n", " ")

    def report(self) -> str:
        return (f"cell {self.index} failed:\n{self.source}\n{'-' * 40}\n"
                f"{self.traceback or f'{self.ename}: {self.evalue}'}")


def first_failure(cells: Sequence[Mapping[str, Any]]) -> CellFailure | None:
    for i, cell in enumerate(cells):
        for out in cell.get("outputs", ()) or ():
            if out.get("output_type") == "error":
                tb = "\n".join(_ANSI.sub("", str(line)) for line in out.get("traceback", []))
                source = cell.get("source", "")
                return CellFailure(
                    i, "".join(source) if isinstance(source, list) else str(source),
                    str(out.get("ename", "")), str(out.get("evalue", "")), tb,
                )
    return None
