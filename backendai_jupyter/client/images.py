"""Which image a session runs when the user named none, and what to say when the named one
does not exist.

Clusters name their images after their own registries (``cr.backend.ai/stable/python:3.12-…``,
``registry.example.com/ml/python:3.11-cuda12``): no fixed default works everywhere. The GraphQL
``images`` query (every manager since 20.09; the same fields on 24.03 and 26.x) lists the images
the user may use — the manager filters them by the domain's allowed registries. The choice
itself is pure (:func:`choose_image`, :func:`closest_images`), tested by tables; only
:func:`list_images` talks to the server.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._exceptions import APIError, ConfigError, NotFoundError, ProtocolError
from .defaults import DEFAULT_IMAGE

if TYPE_CHECKING:
    from ._client import Client

__all__ = [
    "IMAGES_QUERY",
    "ImageChoice",
    "ImageInfo",
    "choose_image",
    "closest_images",
    "explain_unknown_image",
    "image_from_record",
    "is_unknown_image",
    "list_images",
    "pick_image",
    "unknown_image_error",
    "wants_accelerator",
]

log = logging.getLogger(__name__)

#: Fields both 24.03 and 26.x answer (26.x adds ``filter_by_statuses``; not used).
IMAGES_QUERY = (
    "query { images { name registry tag architecture "
    "labels { key value } supported_accelerators } }"
)
#: Resource slots that are not accelerators.
_HOST_SLOTS = frozenset({"cpu", "mem", "shmem"})
_TAG_VERSION = re.compile(r"^([23])\.(\d{1,2})(?!\d)")  # python:3.12-ubuntu22.04
# py310, python3.11 inside a framework image's tag
_PY_VERSION = re.compile(r"(?:^|[^a-z0-9])py(?:thon)?-?(\d)\.?(\d{1,2})(?![0-9])")


@dataclass(frozen=True)
class ImageInfo:
    """One image the server offers, reduced to what the choice needs."""

    ref: str
    """``registry/name:tag``, the form ``POST /session`` takes."""
    python: tuple[int, int] | None
    """The image's Python version when the image says or its tag shows it."""
    cuda: bool
    plain_python: bool
    """A ``python`` image (rather than a framework image that happens to carry Python)."""
    architecture: str = ""


@dataclass(frozen=True)
class ImageChoice:
    ref: str
    reason: str
    """Why this one, for the banner (``"newest Python (3.12) of 1 image"``)."""


def _labels(record: Mapping[str, Any]) -> dict[str, str]:
    raw = record.get("labels") or []
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    return {
        str(item.get("key")): str(item.get("value"))
        for item in raw if isinstance(item, Mapping)
    }


def _python_version(name: str, tag: str) -> tuple[int, int] | None:
    short = name.rsplit("/", 1)[-1]
    if short.startswith("python"):
        m = _TAG_VERSION.match(tag)
        if m:
            return int(m.group(1)), int(m.group(2))
    m = _PY_VERSION.search(f"{short}:{tag}".lower())
    return (int(m.group(1)), int(m.group(2))) if m else None


def image_from_record(record: Mapping[str, Any]) -> ImageInfo | None:
    """An :class:`ImageInfo` from one GraphQL ``images`` item; ``None`` when it has no name."""
    name, tag = str(record.get("name") or ""), str(record.get("tag") or "")
    registry = str(record.get("registry") or "")
    if not name or not tag:
        return None
    labels = _labels(record)
    accelerators = {str(a) for a in record.get("supported_accelerators") or () if a}
    accelerators |= set(filter(None, labels.get("ai.backend.accelerators", "").split(",")))
    runtime = labels.get("ai.backend.runtime-type", "")
    python = _python_version(name, tag)
    short = name.rsplit("/", 1)[-1]
    if python is None and runtime == "python":
        python = (0, 0)  # a Python image of unknown version: usable, ranked last
    return ImageInfo(
        ref=f"{registry}/{name}:{tag}" if registry else f"{name}:{tag}",
        python=python,
        # "*": any accelerator (26.x answers it for images without an accelerators label)
        cuda=bool(accelerators & {"cuda", "*"}) or "cuda" in tag.lower(),
        plain_python=short.startswith("python"),
        architecture=str(record.get("architecture") or ""),
    )


def wants_accelerator(resources: Mapping[str, str]) -> bool:
    """Whether a resource request asks for an accelerator (``cuda.shares=0.5``, ``cuda.device``)."""
    return any(
        k not in _HOST_SLOTS and str(v).strip() not in ("", "0") for k, v in resources.items()
    )


def _rank(image: ImageInfo, gpu: bool) -> tuple[bool, tuple[int, int], bool, bool, str]:
    # The newest Python first; then a plain python image over a framework one; without a GPU
    # request the image without CUDA (smaller, starts faster); the ref last, for a stable order.
    assert image.python is not None
    return (gpu and image.cuda, image.python, image.plain_python, gpu or not image.cuda, image.ref)


def choose_image(images: Iterable[ImageInfo], resources: Mapping[str, str]) -> ImageChoice | None:
    """The best Python image for ``resources``; ``None`` when the server offers no Python image.

    Highest Python version; with an accelerator requested, a CUDA-enabled image first (any
    Python image when there is none: the request may still be served, e.g. by mock devices).
    """
    pythons = {i.ref: i for i in images if i.python is not None}
    if not pythons:
        return None
    gpu = wants_accelerator(resources)
    best = max(pythons.values(), key=lambda i: _rank(i, gpu))
    assert best.python is not None
    version = f"Python {best.python[0]}.{best.python[1]}" if best.python != (0, 0) else "Python"
    what = f"newest {version} of {len(pythons)} Python image{'s' if len(pythons) != 1 else ''}"
    if gpu:
        what += ", CUDA-enabled" if best.cuda else ", none CUDA-enabled"
    return ImageChoice(best.ref, what)


def closest_images(name: str, refs: Sequence[str], limit: int = 3) -> list[str]:
    """The refs most like ``name`` (a full ref or a short ``python:3.13``), best first."""
    wanted = name.strip().lower()
    short = {ref: ref.rsplit("/", 1)[-1].lower() for ref in refs}
    scored = sorted(
        refs,
        key=lambda ref: -max(
            difflib.SequenceMatcher(None, wanted, ref.lower()).ratio(),
            difflib.SequenceMatcher(None, wanted.rsplit("/", 1)[-1], short[ref]).ratio(),
        ),
    )
    return scored[:limit]


def is_unknown_image(error: BaseException) -> bool:
    """Whether ``POST /session`` refused the image itself (24.03 and 26.x: 404 "No such
    environment image"; older managers: "unknown image")."""
    if not isinstance(error, APIError):
        return False
    text = f"{error.title} {error.msg} {error.type}".lower()
    return (isinstance(error, NotFoundError) and "image" in text) or "unknown image" in text


def unknown_image_error(name: str, refs: Sequence[str]) -> ConfigError:
    """The one-line error for an image the cluster does not have."""
    fix = "pick one with %backendai config set image=REF (or BACKEND_IMAGE=REF)"
    if not refs:
        return ConfigError(f"image {name!r} does not exist on this cluster, which lists no "
                           f"images to this user; ask its administrator which to use, then {fix}")
    near = ", ".join(closest_images(name, refs))
    return ConfigError(f"image {name!r} does not exist on this cluster; closest: {near}; {fix}")


async def list_images(client: Client) -> list[ImageInfo]:
    """The images the server lets this user run (GraphQL ``images``)."""
    data = await client.gql(IMAGES_QUERY)
    items = data.get("images") if isinstance(data, Mapping) else None
    found = [image_from_record(i) for i in items or () if isinstance(i, Mapping)]
    return [i for i in found if i is not None]


async def pick_image(client: Client, resources: Mapping[str, str]) -> ImageChoice:
    """The image a session runs when the user named none (:func:`choose_image` on the server's
    list). A server without the ``images`` query (the embedded local endpoint, which runs any
    image name with this machine's Python) gets :data:`~.defaults.DEFAULT_IMAGE`."""
    try:
        images = await list_images(client)
    except (APIError, ProtocolError) as e:
        log.info("no image list (%s): using the default image", e)
        return ImageChoice(DEFAULT_IMAGE, "the default: the server lists no images")
    if not images:
        # 26.x lists a user only the images of registries associated with the user's projects,
        # yet runs images of the domain's allowed registries: an empty list decides nothing.
        return ImageChoice(DEFAULT_IMAGE, "the default: the server lists no images to this user")
    choice = choose_image(images, resources)
    if choice is None:
        names = ", ".join(sorted({i.ref for i in images})[:5]) or "none"
        raise ConfigError(f"this cluster offers this user no Python image (images: {names}); "
                          "name one with %backendai config set image=REF (or BACKEND_IMAGE=REF)")
    return choice


async def explain_unknown_image(client: Client, name: str) -> ConfigError:
    """The error for a named image the server refused: the closest ones it has, and the fix."""
    try:
        refs = sorted({i.ref for i in await list_images(client)})
    except (APIError, ProtocolError) as e:
        log.info("no image list (%s)", e)
        refs = []
    return unknown_image_error(name, refs)
