"""Plain words for the reasons a session ends (lifecycle-event ``reason`` / ``statusInfo``)."""

from __future__ import annotations

__all__ = ["plain_reason"]

_WORDS = {
    "oom-killed": "it ran out of memory: the system killed its processes at the session's memory "
    "limit; ask for more with mem=..., or use less",
    "idle-timeout": "it was idle for too long",
    "abnormal-termination": "it ended abnormally (its server stopped or crashed)",
    "user-requested": "it was destroyed on request",
    "force-terminated": "an administrator ended it",
}


def plain_reason(reason: str) -> str:
    """``"oom-killed"`` → a sentence a notebook user understands; unknown reasons as they are."""
    words = _WORDS.get(reason.strip().lower())
    return f"{words} [{reason}]" if words else reason
