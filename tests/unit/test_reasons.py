"""Plain words for why a session ended (``client/_reasons.py``) as the proxy kernel says them."""

from __future__ import annotations

import pytest

from backendai_jupyter.client._exceptions import SessionGone
from backendai_jupyter.client._reasons import plain_reason


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("oom-killed", "ran out of memory"),
        ("idle-timeout", "idle for too long"),
        ("abnormal-termination", "ended abnormally"),
        ("something-new", "something-new"),
    ],
)
def test_plain_reason(reason: str, words: str) -> None:
    assert words in plain_reason(reason) and reason in plain_reason(reason)


def test_session_gone_says_it_in_plain_words() -> None:
    text = str(SessionGone("s1", "oom-killed"))
    assert "'s1' has ended (it ran out of memory" in text and "mem=" in text
    assert "has ended." in str(SessionGone("s1", None))
