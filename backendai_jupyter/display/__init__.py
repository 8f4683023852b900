"""Jupyter output mapping shared by the proxy kernel and the magics (kernel-independent).

Rich-channel frames live in :mod:`backendai_jupyter.richchannel`.
"""

from .outputs import (
    Message,
    console_to_messages,
    parse_traceback_text,
)

__all__ = [
    "Message",
    "console_to_messages",
    "parse_traceback_text",
]
