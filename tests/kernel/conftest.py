"""Kernel tests: proxy kernels started as :mod:`proxy_kernels` (shared with tests/workspace) says."""

from __future__ import annotations

from proxy_kernels import (
    CLUSTER_ENV,
    LOCAL,
    _collect_client_leftovers,
    cluster_env,
    cluster_values,
    kernel_env,
    local_endpoint,
)

__all__ = [
    "CLUSTER_ENV",
    "LOCAL",
    "_collect_client_leftovers",
    "cluster_env",
    "cluster_values",
    "kernel_env",
    "local_endpoint",
]
