"""Kernelspecs: the shipped one, and ``backendai-jupyter kernel install/list/remove``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from backendai_jupyter.client._exceptions import ConfigError
from backendai_jupyter.kernel import install
from backendai_jupyter.workspace.settings import SessionSettings

SHIPPED = Path(__file__).resolve().parents[2] / "share/jupyter/kernels/backendai-python"


def test_shipped_kernelspec() -> None:
    spec = json.loads((SHIPPED / "kernel.json").read_text())
    assert spec["argv"] == ["python", "-m", "backendai_jupyter.kernel", "-f", "{connection_file}"]
    assert spec["display_name"] == "Backend.AI Python (remote GPU)"
    assert spec["language"] == "python"
    assert spec["interrupt_mode"] == "message"
    assert spec["metadata"]["backendai_jupyter"]["managed"] is True
    for size in (32, 64):
        head = (SHIPPED / f"logo-{size}x{size}.png").read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(head[16:20], "big") == size


def test_kernel_json_bakes_settings_but_no_credentials() -> None:
    spec = install.kernel_json(
        display_name="GPU",
        image="img:1",
        resources=["cpu=4", "cuda.shares=0.5", "shmem=1g"],
        mounts=["data", "models:/mnt/m"],
        env=["A=1", "B=x=y"],
        keep=True,
        start="kernel-start",
    )
    env = spec["env"]
    assert env == {
        "BACKEND_IMAGE": "img:1",
        "BACKEND_RESOURCES": "cpu=4,cuda.shares=0.5,shmem=1g",
        "BACKEND_VFOLDER_MOUNTS": "data,models:/mnt/m",
        "BACKEND_SESSION_ENV": "A=1;B=x=y",
        "BACKEND_KEEP_SESSION": "true",
        "BACKEND_SESSION_START": "kernel-start",
    }
    assert not any("KEY" in k or "SECRET" in k for k in env)
    settings = SessionSettings.from_env(env)
    assert settings.image == "img:1"
    assert dict(settings.resources) == {"cpu": "4", "cuda.shares": "0.5"}
    assert dict(settings.resource_opts) == {"shmem": "1g"}
    assert settings.mounts == ("data", "models") and dict(settings.mount_map) == {
        "models": "/mnt/m"
    }
    assert dict(settings.env) == {"A": "1", "B": "x=y"}
    assert settings.keep and settings.start == "kernel-start"


@pytest.mark.parametrize(
    "kwargs", [{"resources": ["cpu"]}, {"mounts": ["a", "a"]}, {"env": ["1X=2"]}, {"start": "x"}]
)
def test_kernel_json_rejects_bad_flags(kwargs: dict[str, list[str]]) -> None:
    with pytest.raises(ConfigError):
        install.kernel_json(display_name="x", **kwargs)  # type: ignore[arg-type]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="backendai-jupyter kernel")
    install.add_arguments(parser)
    return parser.parse_args(argv)


def test_install_list_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "prefix"
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share/jupyter"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    # Somebody else's kernelspec in the same place: never listed, never removed, never replaced.
    other = prefix / "share/jupyter/kernels/theirs"
    other.mkdir(parents=True)
    (other / "kernel.json").write_text(
        json.dumps({"argv": ["x"], "display_name": "Theirs", "language": "python"})
    )
    assert (
        install.run(
            _parse(
                "install",
                "--name",
                "bai-gpu",
                "--image",
                "img:2",
                "-r",
                "cpu=2",
                "--prefix",
                str(prefix),
            )
        )
        == 0
    )
    spec = json.loads((prefix / "share/jupyter/kernels/bai-gpu/kernel.json").read_text())
    assert spec["env"]["BACKEND_IMAGE"] == "img:2" and spec["interrupt_mode"] == "message"
    assert (prefix / "share/jupyter/kernels/bai-gpu/logo-64x64.png").is_file()
    assert "bai-gpu" in install.managed_specs() and "theirs" not in install.managed_specs()
    assert install.run(_parse("install", "--name", "theirs", "--prefix", str(prefix))) == 2
    capsys.readouterr()
    assert install.run(_parse("list")) == 0
    listed = capsys.readouterr().out
    assert "bai-gpu" in listed and "theirs" not in listed
    assert install.run(_parse("remove", "theirs")) == 1
    assert other.is_dir()
    assert install.run(_parse("remove", "bai-gpu")) == 0
    assert not (prefix / "share/jupyter/kernels/bai-gpu").exists()


def test_install_location_flags_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        _parse("install", "--user", "--sys-prefix")


def test_top_level_cli_kernel_install(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from backendai_jupyter.cli import main

    prefix = tmp_path / "prefix"
    code = main(["kernel", "install", "--name", "bai-gpu", "--display-name", "GPU",
                 "-r", "cpu=4", "-r", "cuda.shares=0.5", "--prefix", str(prefix)])
    assert code == 0
    spec = json.loads((prefix / "share/jupyter/kernels/bai-gpu/kernel.json").read_text())
    assert spec["display_name"] == "GPU"
    assert "SECRET" not in json.dumps(spec)
