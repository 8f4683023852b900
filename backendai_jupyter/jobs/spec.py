"""What a notebook job is: the notebook, its cases, where it runs and where outputs go.

Built once from the command line (or the magic) by :func:`build_spec`, which validates every
input before anything starts; the attached and detached runners only read it.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..client import ConfigError, ParseError
from ..client.defaults import named_image
from ..client.parsing import MAX_VALUES
from ..client.shape import RESOURCES_VAR, SessionShape
from .notebook import Notebook, load_notebook
from .params import (
    Case,
    expand_cases,
    merge_params,
    parse_param_ranges,
    parse_resource_ranges,
)

__all__ = ["JobSpec", "build_spec", "new_job_id"]

#: The proxy kernel's kernelspec (share/jupyter/kernels/backendai-python).
KERNEL_NAME = "backendai-python"


def new_job_id() -> str:
    """Sortable by time, short enough for session names: ``j20261130-031502-3f9a``."""
    return time.strftime("j%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)


@dataclass(frozen=True)
class JobSpec:
    notebook: Notebook
    cases: tuple[Case, ...]
    image: str
    #: ``-r`` slots and options (else ``$BACKEND_RESOURCES``); ``-m`` folders and their paths
    #: (``$BACKEND_VFOLDER_MOUNTS`` are added by the client to every session anyway).
    resources: Mapping[str, str] = field(default_factory=dict)
    resource_opts: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    mount_map: Mapping[str, str] = field(default_factory=dict)
    output: Path | None = None
    max_parallel: int | None = 1
    """``None``: as many as the free GPU capacity holds (GPU cases), else 2."""
    cell_timeout: float | None = None
    job_id: str = field(default_factory=new_job_id)
    warnings: tuple[str, ...] = ()

    @property
    def shape(self) -> SessionShape:
        """Each case's session, as its kernel reads it (``BACKEND_*``: ``shape.to_env()``)."""
        return SessionShape(self.image, self.resources, self.resource_opts, self.mounts,
                            self.mount_map)

    @property
    def resources_text(self) -> str:
        """As the kernel settings spell them (``BACKEND_RESOURCES``): ``cpu=1,mem=1g``."""
        return self.shape.resources_text

    def case_resources(self, case: Case) -> dict[str, str]:
        """The job's slots with the case's own (``--resource-range``) on top."""
        return {**self.resources, **case.resources}

    def case_shape(self, case: Case) -> SessionShape:
        """The case's session: the job's shape with the case's own slots on top."""
        return replace(self.shape, resources=self.case_resources(case))

    def case_resources_text(self, case: Case) -> str:
        return self.case_shape(case).resources_text

    @property
    def mounts_text(self) -> str:
        """As ``BACKEND_VFOLDER_MOUNTS`` spells them: ``data,models:/mnt/models``."""
        return self.shape.mounts_text

    @property
    def sweep(self) -> bool:
        return len(self.cases) > 1 or bool(self.cases and self.cases[0].swept)

    @property
    def out_dir(self) -> Path:
        """Where a sweep's outputs and summary go (``-o DIR``, default ``<stem>-runs``)."""
        return self.output or Path(f"{self.notebook.path.stem}-runs")

    def output_path(self, case: Case) -> Path:
        if not self.sweep:
            return self.output or Path(f"{self.notebook.path.stem}-output.ipynb")
        return self.out_dir / f"{self.notebook.path.stem}-{case.label}.ipynb"

    def session_name(self, case: Case) -> str:
        return f"bjob-{self.job_id[1:]}-{case.index:03d}"


def _read_params_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such parameters file: {path}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not YAML: {' '.join(str(e).split())[:120]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of parameter names to values")
    return {str(k): v for k, v in data.items()}


def build_spec(
    notebook: str | Path,
    *,
    params: Sequence[tuple[str, str]] = (),
    params_file: str | None = None,
    param_ranges: Sequence[str] = (),
    resources: Sequence[str] = (),
    resource_ranges: Sequence[str] = (),
    image: str | None = None,
    mounts: Sequence[str] = (),
    output: str | Path | None = None,
    max_parallel: int | None = 1,
    cell_timeout: float | None = None,
    extra_params: Mapping[str, Any] | None = None,
) -> JobSpec:
    """Validate everything that can be checked without a server; raise one-line errors."""
    if max_parallel is not None and max_parallel < 1:
        raise ParseError("--max-parallel must be at least 1")
    if cell_timeout is not None and cell_timeout <= 0:
        raise ParseError("--cell-timeout must be a positive number of seconds")
    nb = load_notebook(notebook)
    fixed = merge_params(_read_params_file(params_file) if params_file else None, params)
    fixed.update(extra_params or {})
    ranges = parse_param_ranges(param_ranges)
    sized = parse_resource_ranges(resource_ranges)
    cases = expand_cases(fixed, ranges, sized)
    if len(cases) > MAX_VALUES:
        raise ParseError(f"invalid range flags: {len(cases)} cases, more than {MAX_VALUES}")
    warnings = nb.check([*fixed, *ranges])
    shape = SessionShape.parse(resources=resources, mounts=mounts)
    if not resources:  # the kernel's default sizing ($BACKEND_RESOURCES), attached and detached
        sizing = SessionShape.from_env({RESOURCES_VAR: os.environ.get(RESOURCES_VAR, "")})
        shape = replace(shape, resources=sizing.resources, resource_opts=sizing.resource_opts)
    return JobSpec(
        notebook=nb, cases=tuple(cases), image=image or named_image(),  # empty: auto
        resources=dict(shape.resources), resource_opts=dict(shape.resource_opts),
        mounts=shape.mounts, mount_map=dict(shape.mount_map),
        output=Path(output) if output is not None else None, max_parallel=max_parallel,
        cell_timeout=cell_timeout, warnings=tuple(warnings),
    )
