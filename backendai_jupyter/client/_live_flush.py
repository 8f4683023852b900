"""Recognising the live-output pump's flush prompts among ``input()`` prompts (pure)."""

from __future__ import annotations

__all__ = ["split_flush"]


def split_flush(prompt: str, prefix: str | None) -> tuple[str, str, str] | None:
    """Recognise a live-output pump's prompt (``backendai_jupyter.richchannel.pump``). Pure.

    Returns ``None`` for a real ``input()`` prompt, else ``(text, kind, token)``: ``text`` is
    output that came before the marker on the same line (a ``\\r`` progress bar); ``kind`` is
    ``f`` (a flush), ``b`` (the cell ended with threads that may print while idle) or ``q``
    (quiet: answered by an input already sent, so not answered); ``f`` and ``b`` are answered
    with ``token``.
    """
    if not prefix or not prompt.endswith("\x07"):
        return None
    at = prompt.rfind(prefix)
    if at < 0:
        return None
    token = prompt[at:]
    kind, seq = token[len(prefix) : len(prefix) + 1], token[len(prefix) + 1 : -1]
    if kind not in ("f", "b", "q") or not seq.isdigit():
        return None
    return prompt[:at], kind, token
