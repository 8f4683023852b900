"""The one ``%backendai config`` grammar (pure parts) and the workspace's configuration."""

from __future__ import annotations

import pytest

from backendai_jupyter.client._exceptions import ConfigError
from backendai_jupyter.magics.grammar import normalize_argv
from backendai_jupyter.workspace import ConfigChange, Workspace, split_items

ENV = {"BACKEND_ENDPOINT": "http://127.0.0.1:1", "BACKEND_ACCESS_KEY": "AKIA0", "BACKEND_SECRET_KEY": "secret-xyz"}


@pytest.mark.parametrize(
    ("items", "client", "session"),
    [
        ([], {}, {}),
        (["endpoint=http://b:8"], {"BACKEND_ENDPOINT": "http://b:8"}, {}),
        (["image=python"], {}, {"image": "python"}),
        (
            ["Access-Key=AK", "resources=cpu=2,mem=4g", "scaling_group=gpu"],
            {"BACKEND_ACCESS_KEY": "AK"},
            {"resources": "cpu=2,mem=4g", "scaling_group": "gpu"},
        ),
        (["skip_ssl_verify=true", "keep=yes"], {"BACKEND_SKIP_SSLCERT_VALIDATION": "true"},
         {"keep": "yes"}),
        (["vfolder_mounts=a", "mounts=b"], {"BACKEND_VFOLDER_MOUNTS": "a"}, {"mounts": "b"}),
        (["outage-limit=60", "execute_transport=websocket"],
         {"BACKEND_OUTAGE_LIMIT": "60", "BACKEND_EXECUTE_TRANSPORT": "websocket"}, {}),
    ],
)
def test_split_items(items: list[str], client: dict[str, str], session: dict[str, str]) -> None:
    assert split_items(items) == (client, session)


@pytest.mark.parametrize(("item", "message"), [("image", "expected KEY=VALUE"),
                                               ("colour=red", "unknown key 'colour'")])
def test_split_items_rejects(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        split_items([item])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["config"], ["config"]),
        (["config", "image=x"], ["config", "set", "image=x"]),
        (["config", "set", "image=x"], ["config", "set", "image=x"]),
        (["config", "reset"], ["config", "reset"]),
        (["kernel", "config"], ["config"]),
        (["kernel", "config", "image=x"], ["config", "set", "image=x"]),
        (["kernel", "stop"], ["kernel", "stop"]),
        (["ps", "a=b"], ["ps", "a=b"]),
    ],
)
def test_normalize_argv(argv: list[str], expected: list[str]) -> None:
    assert normalize_argv(argv) == expected


def test_configure_is_all_or_nothing_and_says_what_changed() -> None:
    ws = Workspace(env=ENV)
    change = ws.configure(["image=python:3.12", "endpoint=http://127.0.0.1:2"])
    assert change == ConfigChange(client=True, session=True, live_session=None)
    assert ws.settings.image == "python:3.12"
    assert str(ws.client_config().endpoint) == "http://127.0.0.1:2"
    with pytest.raises(ConfigError):
        ws.configure(["image=other", "keep=maybe"])
    assert ws.settings.image == "python:3.12"
    ws.reset()
    assert str(ws.client_config().endpoint) == "http://127.0.0.1:1"
    assert ws.settings.image != "python:3.12"
    assert "secret-xyz" not in repr(ws.describe())  # the secret never shows


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (ConfigChange(True, False, None), "✓ Configuration updated (connection)."),
        (ConfigChange(True, True, None), "✓ Configuration updated (connection and session)."),
        (ConfigChange(False, True, "bjk-1"), "✓ Configuration updated (session). The running "
         "kernel session bjk-1 keeps its old settings; the next one uses the new ones "
         "(%backendai kernel stop ends it now)."),
    ],
)
def test_change_describe(change: ConfigChange, text: str) -> None:
    assert change.describe() == text
