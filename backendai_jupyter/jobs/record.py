"""``record(name, value)``: what a notebook job reports back, as scrapbook's ``glue`` does.

The value travels as a display output with the mimetype :data:`RECORD_MIME`, so it needs
nothing but IPython in the session: the runner injects the *source* of :func:`record` as the
notebook's first cell (tagged ``injected-record-helper``), and :func:`read_records` finds the
values again in the executed notebook — whether it was executed attached (through the proxy
kernel) or inside a batch session. Importing it (``from backendai_jupyter.jobs import record``)
works too where the package is installed, e.g. to try a notebook locally.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["HELPER_TAG", "RECORD_MIME", "helper_source", "read_records", "record"]

RECORD_MIME = "application/vnd.backendai.record+json"
HELPER_TAG = "injected-record-helper"


def record(name: str, value: object) -> None:
    """Record ``value`` under ``name`` for the job summary (last value per name wins)."""
    # Self-contained on purpose: this source is injected into notebooks that run where
    # backendai_jupyter is not installed. Keep the mimetype literal equal to RECORD_MIME.
    import json

    from IPython.display import display

    # Only builtin names in annotations and body: they are evaluated where this runs.
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, pandas objects
    if callable(tolist):
        value = tolist()
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)
    display(  # type: ignore[no-untyped-call]
        {
            "application/vnd.backendai.record+json": {"name": str(name), "value": value},
            "text/plain": f"recorded {name} = {value!r}",
        },
        raw=True,
    )


def helper_source() -> str:
    """The code of the injected cell: the definition of :func:`record`."""
    return inspect.getsource(record)


def read_records(cells: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``{name: value}`` from the outputs of executed cells (nbformat v4 dicts)."""
    found: dict[str, Any] = {}
    for cell in cells:
        for output in cell.get("outputs", ()) or ():
            data = output.get("data") if isinstance(output, Mapping) else None
            item = data.get(RECORD_MIME) if isinstance(data, Mapping) else None
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                found[item["name"]] = item.get("value")
    return found
