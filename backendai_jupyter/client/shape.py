"""The shape of a session (image, resource slots, storage mounts) and its ``BACKEND_*`` form.

The ``BACKEND_*`` variables are the contract between whoever picks a shape
(``backendai-jupyter kernel install`` bakes it into ``kernel.json``; a notebook job hands it to
its kernels) and the proxy kernel, which reads it back (:mod:`...workspace.settings`). Both
sides go through :meth:`SessionShape.to_env` / :meth:`SessionShape.from_env`. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .parsing import parse_mounts, parse_resource_flags

__all__ = ["IMAGE_VAR", "MOUNTS_VAR", "RESOURCES_VAR", "SessionShape"]

IMAGE_VAR = "BACKEND_IMAGE"
RESOURCES_VAR = "BACKEND_RESOURCES"  # cpu=4,mem=8g,cuda.shares=0.5
MOUNTS_VAR = "BACKEND_VFOLDER_MOUNTS"  # data,models:/mnt/models


def _items(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass(frozen=True)
class SessionShape:
    """``image`` (``None``: the reader's default), ``-r`` slots and options, ``-m`` folders
    and their mount paths."""

    image: str | None = None
    resources: Mapping[str, str] = field(default_factory=dict)
    resource_opts: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[str, ...] = ()
    mount_map: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(
        cls, *, image: str | None = None, resources: Sequence[str] = (),
        mounts: Sequence[str] = (),
    ) -> SessionShape:
        """From ``-r KEY=VALUE`` and ``-m NAME[:PATH]`` flags (a bad one: ``ParseError``)."""
        spec = parse_resource_flags(resources)
        names, mount_map = parse_mounts(mounts)
        return cls(image or None, spec.resources, spec.resource_opts, tuple(names), mount_map)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SessionShape:
        """Read back what :meth:`to_env` wrote (unset or empty variables: defaults)."""
        return cls.parse(
            image=env.get(IMAGE_VAR, "").strip() or None,
            resources=_items(env.get(RESOURCES_VAR, "")),
            mounts=_items(env.get(MOUNTS_VAR, "")),
        )

    @property
    def resources_text(self) -> str:
        """As ``BACKEND_RESOURCES`` spells them: ``cpu=1,mem=1g``."""
        return ",".join(f"{k}={v}" for k, v in {**self.resources, **self.resource_opts}.items())

    @property
    def mounts_text(self) -> str:
        """As ``BACKEND_VFOLDER_MOUNTS`` spells them: ``data,models:/mnt/models``."""
        return ",".join(f"{n}:{self.mount_map[n]}" if n in self.mount_map else n
                        for n in self.mounts)

    def to_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: nothing) with this shape's ``BACKEND_*`` variables: the image
        and resources replace ``base``'s when set; the mounts are added to ``base``'s (this
        shape wins for a folder both name: the client mounts ``BACKEND_VFOLDER_MOUNTS`` in
        every session)."""
        env = dict(base or {})
        if self.image:
            env[IMAGE_VAR] = self.image
        if self.resources_text:
            env[RESOURCES_VAR] = self.resources_text
        if self.mounts:
            given = _items(env.get(MOUNTS_VAR, ""))
            kept = [m for m in given if m.split(":")[0].split("=")[0] not in self.mounts]
            env[MOUNTS_VAR] = ",".join([*kept, self.mounts_text])
        return env
