"""The session shape's ``BACKEND_*`` form: what ``to_env`` writes, ``from_env`` reads back."""

from __future__ import annotations

import pytest

from backendai_jupyter.client import ParseError
from backendai_jupyter.client.shape import SessionShape
from backendai_jupyter.workspace import SessionSettings

SHAPES = [
    ({}, {}),
    ({"image": "python"}, {"BACKEND_IMAGE": "python"}),
    ({"resources": ["cpu=2", "mem=4G", "shmem=1g"]}, {"BACKEND_RESOURCES": "cpu=2,mem=4g,shmem=1g"}),
    ({"mounts": ["data", "models:/mnt/m"]}, {"BACKEND_VFOLDER_MOUNTS": "data,models:/mnt/m"}),
]


@pytest.mark.parametrize(("flags", "env"), SHAPES)
def test_to_env_and_back(flags: dict[str, object], env: dict[str, str]) -> None:
    shape = SessionShape.parse(**flags)  # type: ignore[arg-type]
    assert shape.to_env() == env
    assert SessionShape.from_env(env) == shape


@pytest.mark.parametrize(
    ("base", "mounts", "expected"),
    [
        ("", ["a"], "a"),
        ("x,y:/p", ["a"], "x,y:/p,a"),
        ("a:/old, x", ["a:/new"], "x,a:/new"),  # the shape wins for a folder both name
        ("a=/old", ["a"], "a"),
    ],
)
def test_mounts_are_added_to_the_base(base: str, mounts: list[str], expected: str) -> None:
    env = SessionShape.parse(mounts=mounts).to_env({"BACKEND_VFOLDER_MOUNTS": base, "K": "v"})
    assert env == {"BACKEND_VFOLDER_MOUNTS": expected, "K": "v"}


def test_the_kernel_reads_the_same_shape() -> None:
    shape = SessionShape.parse(image="img", resources=["cpu=1"], mounts=["d:/x"])
    settings = SessionSettings.from_env(shape.to_env({"BACKEND_KEEP_SESSION": "true"}))
    assert settings.shape == shape and settings.keep


def test_a_bad_variable_is_one_line() -> None:
    with pytest.raises(ParseError, match="invalid resource"):
        SessionShape.from_env({"BACKEND_RESOURCES": "cpu=x"})
