"""The image choice (pure): which image a first cell runs when none is named, and the error for
an image the cluster lacks."""

from __future__ import annotations

from typing import Any

import pytest

from backendai_jupyter.client import APIError, NotFoundError, ServerError
from backendai_jupyter.client.images import (
    ImageInfo,
    choose_image,
    closest_images,
    image_from_record,
    is_unknown_image,
    unknown_image_error,
    wants_accelerator,
)


def rec(name: str, tag: str, registry: str = "cr.backend.ai", accel: str = "",
        runtime: str = "python") -> dict[str, Any]:
    labels = [{"key": "ai.backend.runtime-type", "value": runtime}] if runtime else []
    return {"name": name, "registry": registry, "tag": tag, "architecture": "x86_64",
            "labels": labels, "supported_accelerators": [accel] if accel else [""]}


@pytest.mark.parametrize(("record", "ref", "python", "cuda", "plain"), [
    # the 24.03 test cluster's one image, as GraphQL answers it
    (rec("stable/python", "3.12-ubuntu22.04"),
     "cr.backend.ai/stable/python:3.12-ubuntu22.04", (3, 12), False, True),
    (rec("stable/python", "3.13-ubuntu24.04"),
     "cr.backend.ai/stable/python:3.13-ubuntu24.04", (3, 13), False, True),
    (rec("ml/python", "3.11-cuda12.4", registry="reg.example.com"),
     "reg.example.com/ml/python:3.11-cuda12.4", (3, 11), True, True),
    (rec("stable/ngc-pytorch", "23.10-pytorch2.1-py310-cuda12.2", accel="cuda"),
     "cr.backend.ai/stable/ngc-pytorch:23.10-pytorch2.1-py310-cuda12.2", (3, 10), True, False),
    # a date-versioned python-ff tag is not Python 23.9; the runtime label still says Python
    (rec("stable/python-ff", "23.09-ubuntu22.04"),
     "cr.backend.ai/stable/python-ff:23.09-ubuntu22.04", (0, 0), False, True),
    (rec("stable/r-base", "4.3-ubuntu22.04", runtime="app"),
     "cr.backend.ai/stable/r-base:4.3-ubuntu22.04", None, False, False),
    (rec("python", "3.9", registry=""), "python:3.9", (3, 9), False, True),
    # 26.9.6 answers "*" (any accelerator) for the test cluster's image
    (rec("stable/python", "3.13-ubuntu24.04", accel="*"),
     "cr.backend.ai/stable/python:3.13-ubuntu24.04", (3, 13), True, True),
])
def test_image_from_record(record: dict[str, Any], ref: str, python: tuple[int, int] | None,
                           cuda: bool, plain: bool) -> None:
    info = image_from_record(record)
    assert info is not None
    assert (info.ref, info.python, info.cuda, info.plain_python) == (ref, python, cuda, plain)


def test_record_without_name_or_tag_is_skipped() -> None:
    assert image_from_record({"name": "", "tag": "x"}) is None
    assert image_from_record({"name": "python", "tag": None}) is None


PY312 = ImageInfo("r/python:3.12-ubuntu22.04", (3, 12), False, True)
PY313 = ImageInfo("r/python:3.13-ubuntu24.04", (3, 13), False, True)
PY313_CUDA = ImageInfo("r/python:3.13-cuda12.4", (3, 13), True, True)
PY311_CUDA = ImageInfo("r/python:3.11-cuda12.1", (3, 11), True, True)
TORCH = ImageInfo("r/pytorch:2.3-py313-cuda12.4", (3, 13), True, False)
R_ONLY = ImageInfo("r/r-base:4.3", None, False, False)
CPU = {"cpu": "1", "mem": "1g"}
GPU = {"cpu": "1", "cuda.shares": "0.5"}


@pytest.mark.parametrize(("images", "resources", "ref", "reason"), [
    ([PY312], CPU, PY312.ref, "newest Python 3.12 of 1 Python image"),
    ([PY312, PY313], CPU, PY313.ref, "newest Python 3.13 of 2 Python images"),
    ([PY313, PY312], {}, PY313.ref, "newest Python 3.13 of 2 Python images"),
    # no GPU asked: the CUDA variant of the same Python is passed over (smaller image)
    ([PY313_CUDA, PY313], CPU, PY313.ref, "newest Python 3.13 of 2 Python images"),
    # a GPU asked: a CUDA image wins even with an older Python
    ([PY313, PY311_CUDA], GPU, PY311_CUDA.ref,
     "newest Python 3.11 of 2 Python images, CUDA-enabled"),
    ([PY313, PY313_CUDA, TORCH], GPU, PY313_CUDA.ref,
     "newest Python 3.13 of 3 Python images, CUDA-enabled"),
    # a GPU asked but no CUDA image: the best Python image, and the banner says so
    ([PY312, PY313], GPU, PY313.ref, "newest Python 3.13 of 2 Python images, none CUDA-enabled"),
    ([R_ONLY, PY312], CPU, PY312.ref, "newest Python 3.12 of 1 Python image"),
    # cuda.shares=0 is no GPU request
    ([PY313_CUDA, PY313], {"cuda.shares": "0"}, PY313.ref, "newest Python 3.13 of 2 Python images"),
    # duplicates (one per architecture) count once
    ([PY312, PY312], CPU, PY312.ref, "newest Python 3.12 of 1 Python image"),
])
def test_choose_image(images: list[ImageInfo], resources: dict[str, str], ref: str,
                      reason: str) -> None:
    choice = choose_image(images, resources)
    assert choice is not None
    assert (choice.ref, choice.reason) == (ref, reason)


@pytest.mark.parametrize("images", [[], [R_ONLY]])
def test_no_python_image_is_no_choice(images: list[ImageInfo]) -> None:
    assert choose_image(images, CPU) is None


@pytest.mark.parametrize(("resources", "gpu"), [
    ({}, False), (CPU, False), ({"shmem": "1g"}, False), (GPU, True),
    ({"cuda.device": "1"}, True), ({"rocm.device": "1"}, True), ({"cuda.shares": "0"}, False),
])
def test_wants_accelerator(resources: dict[str, str], gpu: bool) -> None:
    assert wants_accelerator(resources) is gpu


REFS = ["cr.backend.ai/stable/python:3.12-ubuntu22.04", "cr.backend.ai/stable/r-base:4.3",
        "cr.backend.ai/stable/python-tensorflow:2.15-py311-cuda12.3"]


@pytest.mark.parametrize(("name", "first"), [
    ("cr.backend.ai/stable/python:3.13-ubuntu24.04", REFS[0]),
    ("python:3.13", REFS[0]),
    ("r-base", REFS[1]),
    ("tensorflow", REFS[2]),
])
def test_closest_images(name: str, first: str) -> None:
    found = closest_images(name, REFS)
    assert found[0] == first
    assert sorted(found) == sorted(REFS)


def test_unknown_image_error_names_the_closest_and_the_fix() -> None:
    text = str(unknown_image_error("cr.backend.ai/stable/python:3.13-ubuntu24.04", REFS))
    assert text.startswith("image 'cr.backend.ai/stable/python:3.13-ubuntu24.04' does not exist")
    assert f"closest: {REFS[0]}, " in text
    assert "%backendai config set image=REF" in text and "BACKEND_IMAGE=REF" in text
    assert "\n" not in text
    assert "lists no images" in str(unknown_image_error("python", []))


@pytest.mark.parametrize(("error", "unknown"), [
    (NotFoundError(404, title="No such environment image.",
                   msg="Unknown image references: ref:'x'"), True),
    (NotFoundError(404, title="Not Found", msg="No such session"), False),
    (ServerError(500, title="Internal server error", msg="boom"), False),
    (APIError(400, title="Bad request", msg="unknown image: python"), True),
    (ValueError("image"), False),
])
def test_is_unknown_image(error: BaseException, unknown: bool) -> None:
    assert is_unknown_image(error) is unknown
