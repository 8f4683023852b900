from __future__ import annotations

import pytest

from backendai_jupyter.client._exceptions import ConfigError
from backendai_jupyter.workspace.settings import SessionSettings, keep_name


def test_defaults() -> None:
    s = SessionSettings.from_env({})
    # No image named: "auto", the kernel session asks the cluster (client.images).
    assert s.image == "" and s.describe()["image"] == "auto"
    assert s.start == "first-cell" and not s.keep and s.rich
    assert s.update(["image=python:3.12"]).update(["image=auto"]).image == ""


def test_magic_form_update() -> None:
    s = SessionSettings().update(
        ["image=python:3.12", "resources=cpu=2,mem=4g", "keep=yes", "rich=off", "scaling-group=gpu"]
    )
    assert s.image == "python:3.12" and dict(s.resources) == {"cpu": "2", "mem": "4g"}
    assert s.keep and not s.rich and s.scaling_group == "gpu"
    assert s.describe()["resources"] == "cpu=2,mem=4g"


def test_upload_settings_from_env_and_magic() -> None:
    s = SessionSettings.from_env({})
    assert not s.upload_dir and s.upload_max == 100 * 2**20 and s.upload_file_max == 10 * 2**20
    s = SessionSettings.from_env({"BACKEND_UPLOAD_DIR": "on", "BACKEND_UPLOAD_MAX": "1g"})
    assert s.upload_dir and s.upload_max == 2**30
    s = s.update(["upload-file-max=512k", "upload_dir=off"])
    assert s.upload_file_max == 512 * 1024 and not s.upload_dir
    assert s.describe()["upload_file_max"] == "512k" and s.describe()["upload_max"] == "1g"


@pytest.mark.parametrize(
    "item",
    [
        "nokey",
        "color=red",
        "keep=maybe",
        "start=later",
        "name=a b",
        "upload_dir=perhaps",
        "upload_max=lots",
        "upload_file_max=-1",
    ],
)
def test_bad_settings(item: str) -> None:
    with pytest.raises(ConfigError):
        SessionSettings().update([item])


def test_keep_name_is_stable_and_per_owner() -> None:
    a = keep_name("nb/analysis.ipynb", "AK1")
    assert a == keep_name("nb/analysis.ipynb", "AK1")
    assert a != keep_name("nb/analysis.ipynb", "AK2") and a.startswith("bjk-") and len(a) <= 64
