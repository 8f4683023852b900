"""Kernel tests: proxy kernels started as :mod:`proxy_kernels` (shared with tests/workspace) says."""

from __future__ import annotations

from proxy_kernels import (
    CLUSTER_ENV,
    LOCAL,
    THIRD_PARTY_LEFTOVERS,
    _collect_client_leftovers,
    cluster_env,
    cluster_values,
    ignore_third_party_leftovers,
    kernel_env,
    local_endpoint,
)

__all__ = [
    "CLUSTER_ENV",
    "LOCAL",
    "THIRD_PARTY_LEFTOVERS",
    "_collect_client_leftovers",
    "cluster_env",
    "cluster_values",
    "ignore_third_party_leftovers",
    "kernel_env",
    "local_endpoint",
]
