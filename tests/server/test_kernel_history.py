"""The session kernel's IPython history: on the sandbox's own tmpfs (no fsync on every cell's
way, which cost the endpoint ~0.5 ms per cell on this disk), kept across kernel restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backendai_jupyter.server.agent.kernel_runner import HISTORY_FILE
from backendai_jupyter.server.agent.layers import probe_bwrap

from .conftest import IMAGE, Local
from .test_sessions import _out

pytestmark = [
    pytest.mark.skipif(probe_bwrap() is not None, reason=f"no sandbox: {probe_bwrap()}"),
    pytest.mark.timeout(240),
]

WHERE = """
import os
hm = get_ipython().history_manager
print(hm.hist_file, os.path.exists(os.path.expanduser('~/.ipython/profile_default/history.sqlite')))
"""


async def test_history_lives_on_the_session_tmpfs_and_survives_a_restart(
    make_local: Any,
) -> None:
    local: Local = await make_local(sandbox="bwrap")
    client = local.client()
    sess = await client.sessions.create(IMAGE)
    text, code = await _out(client, sess.id, WHERE)
    assert code == 0 and text.split() == [HISTORY_FILE, "False"], text
    assert await _out(client, sess.id, "marker_41 = 41") == ("", 0)
    for _ in range(50):  # IPython's history thread commits it (the search reads the file)
        text, _ = await _out(client, sess.id, "%history -g marker_41")
        if "marker_41 = 41" in text:
            break
        await asyncio.sleep(0.1)
    await client.sessions.restart(sess.id)
    text, code = await _out(client, sess.id, "%history -g marker_41")
    assert code == 0 and "marker_41 = 41" in text, text  # the first kernel's input
    await client.sessions.destroy(sess.id)
