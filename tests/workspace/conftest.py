"""Workspace tests (``backendai_jupyter.workspace``): those that need a proxy kernel start it as
:mod:`proxy_kernels` (shared with tests/kernel) says."""

from __future__ import annotations

from proxy_kernels import kernel_env

__all__ = ["kernel_env"]
