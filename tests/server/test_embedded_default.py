"""With no BACKEND_ENDPOINT, the client starts (once) and then reuses the local endpoint."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from backendai_jupyter.client import Client, Finished, Output
from backendai_jupyter.workspace import load_config


async def test_client_falls_back_to_the_local_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    for key in list(os.environ):
        if key.startswith(("BACKEND_", "SORNA_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BACKENDAI_JUPYTER_DATA_DIR", str(tmp_path / "local"))
    config = load_config()
    try:
        assert config.endpoint.host == "127.0.0.1"
        announced = capfd.readouterr().err
        assert "using the embedded local endpoint" in announced
        assert config.secret_key not in announced
        # Its sessions end with it, so runs stream over the websocket (0.2 s flushes)...
        assert config.execute_transport == "websocket"
        # ...unless the user chose otherwise.
        monkeypatch.setenv("BACKEND_EXECUTE_TRANSPORT", "rest")
        assert load_config(announce=False).execute_transport == "rest"
        monkeypatch.delenv("BACKEND_EXECUTE_TRANSPORT")
        capfd.readouterr()
        # A second call reuses the running server and says nothing more.
        again = load_config()
        assert again.endpoint == config.endpoint
        assert capfd.readouterr().err == ""
        # The background server's log never holds the secret.
        assert config.secret_key not in (tmp_path / "local" / "server.log").read_text()
        async with Client(config) as client:
            sess = await client.sessions.create("python", resources={"cpu": "1"})
            events = [ev async for ev in client.sessions.execute(sess.id, "print(6*7)")]
            assert Output in {type(e) for e in events} and events[-1] == Finished(0)
            await client.sessions.destroy(sess.id)
    finally:
        record = json.loads((tmp_path / "local" / "endpoint.json").read_text())
        os.kill(int(record["pid"]), signal.SIGTERM)
