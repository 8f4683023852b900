"""``backendai-jupyter kernel install | list | remove``: kernelspecs with a session baked in.

The default spec, ``backendai-python``, arrives with ``pip install`` (wheel shared-data). This
command writes further specs whose ``kernel.json`` carries an image, resources, mounts and
session environment in ``env`` (read by :class:`~.settings.SessionSettings`) and in
``metadata.backendai_jupyter``; credentials are never written. Our specs are recognised by
``metadata.backendai_jupyter.managed``; ``list`` and ``remove`` never touch anyone else's.

Wire into the top-level CLI as::

    kernel = subparsers.add_parser("kernel", help="manage Backend.AI kernelspecs")
    install.add_arguments(kernel)
    kernel.set_defaults(func=install.run)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..client import ConfigError
from ..client.parsing import parse_env
from ..client.shape import SessionShape

__all__ = ["SPEC_DIR", "add_arguments", "kernel_json", "managed_specs", "run"]

SPEC_DIR = (
    Path(__file__).resolve().parents[2] / "share" / "jupyter" / "kernels" / "backendai-python"
)
_META = "backendai_jupyter"
_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _logo_dir() -> Path | None:
    candidates = [SPEC_DIR, Path(sys.prefix) / "share" / "jupyter" / "kernels" / "backendai-python"]
    return next((p for p in candidates if (p / "logo-64x64.png").is_file()), None)


def kernel_json(
    *,
    display_name: str,
    image: str | None = None,
    resources: Sequence[str] = (),
    mounts: Sequence[str] = (),
    env: Sequence[str] = (),
    keep: bool = False,
    start: str | None = None,
    upload_dir: bool = False,
    python: str = "python",
) -> dict[str, Any]:
    """The ``kernel.json`` for one spec (pure; validates every flag first)."""
    shape = SessionShape.parse(image=image, resources=resources, mounts=mounts)
    values = shape.to_env()
    session_env = parse_env(env)
    if session_env:
        if any(";" in v for v in session_env.values()):
            raise ConfigError("session environment values must not contain ';'")
        values["BACKEND_SESSION_ENV"] = ";".join(f"{k}={v}" for k, v in session_env.items())
    if keep:
        values["BACKEND_KEEP_SESSION"] = "true"
    if upload_dir:
        values["BACKEND_UPLOAD_DIR"] = "true"
    if start:
        if start not in ("first-cell", "kernel-start"):
            raise ConfigError("--start must be first-cell or kernel-start")
        values["BACKEND_SESSION_START"] = start
    return {
        "argv": [python, "-m", "backendai_jupyter.kernel", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "message",
        "env": values,
        "metadata": {
            _META: {
                "managed": True,
                "image": image,
                "resources": {**shape.resources, **shape.resource_opts},
                "mounts": list(shape.mounts),
                "mount_map": dict(shape.mount_map),
            },
            "debugger": False,
        },
        "kernel_protocol_version": "5.5",
    }


def managed_specs() -> dict[str, dict[str, Any]]:
    """``{name: {"resource_dir", "spec"}}`` for every installed spec this package wrote."""
    from jupyter_client.kernelspec import KernelSpecManager

    out: dict[str, dict[str, Any]] = {}
    for name, info in KernelSpecManager().get_all_specs().items():
        meta = (info.get("spec") or {}).get("metadata") or {}
        if isinstance(meta.get(_META), dict) and meta[_META].get("managed"):
            out[name] = info
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands ``install``, ``list`` and ``remove`` under ``parser``."""
    sub = parser.add_subparsers(dest="kernel_command", required=True)
    p = sub.add_parser("install", help="install a Backend.AI kernelspec")
    p.add_argument("--name", help="kernelspec name (letters, digits, . _ -)")
    p.add_argument("--display-name", help="name shown in the launcher")
    p.add_argument("--image", help="container image of the session")
    p.add_argument("-r", "--resource", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-m", "--mount", action="append", default=[], metavar="FOLDER[:PATH]")
    p.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--keep", action="store_true", help="keep the session across kernel restarts")
    p.add_argument("--start", choices=("first-cell", "kernel-start"))
    p.add_argument(
        "--upload-dir",
        action="store_true",
        help="copy the notebook's folder into each new session (bounded; see README)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for this user")
    where.add_argument("--sys-prefix", action="store_true", help=f"install into {sys.prefix}")
    where.add_argument("--prefix", help="install into this prefix")
    sub.add_parser("list", help="list the Backend.AI kernelspecs installed")
    r = sub.add_parser("remove", help="remove Backend.AI kernelspecs (only ours)")
    r.add_argument("names", nargs="+")
    r.add_argument("-y", "--yes", action="store_true", help="no confirmation (kept for scripts)")


def _install(args: argparse.Namespace) -> int:
    from jupyter_client.kernelspec import KernelSpecManager

    name = args.name or "backendai-python"
    if not _NAME.fullmatch(name):
        raise ConfigError(f"invalid kernelspec name {name!r} (letters, digits, . _ -)")
    display = args.display_name or (
        f"Backend.AI {args.image.rsplit('/', 1)[-1]}"
        if args.image
        else "Backend.AI Python (remote GPU)"
    )
    # An explicit installation is usually a development or per-user one: pin this interpreter
    # (ipykernel does the same for editable installs); the wheel's own spec uses "python".
    spec = kernel_json(
        display_name=display,
        image=args.image,
        resources=args.resource,
        mounts=args.mount,
        env=args.env,
        keep=args.keep,
        start=args.start,
        upload_dir=args.upload_dir,
        python=sys.executable,
    )
    existing = KernelSpecManager().get_all_specs().get(name.lower())
    if existing is not None and name.lower() not in managed_specs():
        raise ConfigError(
            f"a kernelspec named {name!r} exists and is not ours; pick another --name"
        )
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / name
        d.mkdir()
        (d / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
        logos = _logo_dir()
        if logos is not None:
            for logo in ("logo-32x32.png", "logo-64x64.png"):
                shutil.copy(logos / logo, d / logo)
        prefix = sys.prefix if args.sys_prefix else args.prefix
        dest = KernelSpecManager().install_kernel_spec(
            str(d), name, user=bool(args.user), prefix=prefix
        )
    print(f"installed kernelspec {name!r} in {dest}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the ``kernel`` sub-command chosen in ``args``; returns the exit status."""
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        if args.kernel_command == "install":
            return _install(args)
        if args.kernel_command == "list":
            specs = managed_specs()
            for name, info in sorted(specs.items()):
                spec = info.get("spec") or {}
                env = spec.get("env") or {}
                extra = " ".join(
                    f"{k.removeprefix('BACKEND_').lower()}={v}" for k, v in env.items()
                )
                print(f"{name:28} {spec.get('display_name', '')!r:40} {extra}".rstrip())
                print(f"{'':28} {info.get('resource_dir')}")
            if not specs:
                print("no Backend.AI kernelspecs installed")
            return 0
        if args.kernel_command == "remove":
            ours = managed_specs()
            status = 0
            for name in args.names:
                if name.lower() not in ours:
                    print(
                        f"{name}: not a Backend.AI kernelspec installed here; left alone",
                        file=sys.stderr,
                    )
                    status = 1
                    continue
                KernelSpecManager().remove_kernel_spec(name.lower())
                print(f"removed kernelspec {name!r}")
            return status
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    raise ConfigError(f"unknown kernel command {args.kernel_command!r}")
