"""The "Backend.AI Python (remote GPU)" proxy kernel.

``BackendAIKernel`` is imported on first use, so that the pure modules of this package
(:mod:`.routing`, :mod:`.fidelity`) can be imported without ipykernel.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BackendAIKernel"]


def __getattr__(name: str) -> Any:
    if name == "BackendAIKernel":
        from .kernel import BackendAIKernel

        return BackendAIKernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
