from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from backendai_jupyter.workspace.registry import Record, Registry


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_orphans_are_dead_unkept_records_of_this_endpoint(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    host = socket.gethostname()
    dead = _dead_pid()
    base = {"endpoint": "http://e", "access_key": "AK", "host": host}
    reg.save(Record(name="crashed", id="1", pid=dead, keep=False, **base))
    reg.save(Record(name="alive", id="2", pid=os.getpid(), keep=False, **base))
    reg.save(Record(name="kept", id="3", pid=None, keep=True, **base))
    reg.save(
        Record(
            name="elsewhere",
            id="4",
            pid=dead,
            keep=False,
            endpoint="http://other",
            access_key="AK",
            host=host,
        )
    )
    assert [r.name for r in reg.orphans("http://e", "AK")] == ["crashed"]
    reg.remove("crashed")
    assert reg.orphans("http://e", "AK") == []
    assert "secret" not in "".join(p.read_text() for p in tmp_path.glob("*.json")).lower()
