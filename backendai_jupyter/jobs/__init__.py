"""Notebook jobs: run, parameterize and sweep whole notebooks on Backend.AI, attached or as
batch sessions (``backendai-jupyter run`` / ``jobs``, ``%backendai nbrun``).

Only :func:`record` is imported eagerly: it is what notebooks import.
"""

from .record import RECORD_MIME, record

__all__ = ["RECORD_MIME", "record"]
