from __future__ import annotations

import pytest

from backendai_jupyter.client._exceptions import ConfigError
from backendai_jupyter.workspace.settings import DEFAULT_IMAGE, SessionSettings, keep_name


def test_defaults() -> None:
    s = SessionSettings.from_env({})
    assert s.image == DEFAULT_IMAGE and s.start == "first-cell" and not s.keep and s.rich


def test_magic_form_update() -> None:
    s = SessionSettings().update(
        ["image=python:3.12", "resources=cpu=2,mem=4g", "keep=yes", "rich=off", "scaling-group=gpu"]
    )
    assert s.image == "python:3.12" and dict(s.resources) == {"cpu": "2", "mem": "4g"}
    assert s.keep and not s.rich and s.scaling_group == "gpu"
    assert s.describe()["resources"] == "cpu=2,mem=4g"


@pytest.mark.parametrize("item", ["nokey", "color=red", "keep=maybe", "start=later", "name=a b"])
def test_bad_settings(item: str) -> None:
    with pytest.raises(ConfigError):
        SessionSettings().update([item])


def test_keep_name_is_stable_and_per_owner() -> None:
    a = keep_name("nb/analysis.ipynb", "AK1")
    assert a == keep_name("nb/analysis.ipynb", "AK1")
    assert a != keep_name("nb/analysis.ipynb", "AK2") and a.startswith("bjk-") and len(a) <= 64
