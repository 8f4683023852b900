"""``backendai-jupyter doctor`` and ``%backendai doctor``: what stands between this machine and a
first cell, one ✓/✗ line per check, each ✗ with its fix.

The checks, in order: the endpoint answers (and which Backend.AI / API version it is); the clock
against the server's ``Date`` (the manager refuses signatures more than 15 minutes off); the
keys sign a request; the user's domain and project; the images and resource presets this user
may use; vfolder hosts and their permissions; the kernelspec and its Python; on the embedded
local endpoint, its sandbox layers. The verdicts are pure functions of what the server said
(tested by tables); :func:`run_checks` asks. A ✗ that blocks a first cell makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from .client import (
    APIError,
    AuthError,
    BackendAIError,
    Client,
    ClientConfig,
    ClientError,
    ConfigError,
)
from .client.defaults import DEFAULT_IMAGE
from .client.images import ImageInfo, choose_image, closest_images, list_images
from .client.parsing import parse_resource_flags

__all__ = [
    "MAX_SKEW",
    "Check",
    "exit_status",
    "add_arguments",
    "format_report",
    "run",
    "run_checks",
]

#: The manager's window for a request's ``Date`` (``auth.py``: 15 minutes either way).
MAX_SKEW = 15 * 60.0
#: Beyond this the clock works but drifts: a warning, not a failure.
WARN_SKEW = 60.0
_FIX_KEYS = "set BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY to a keypair of this cluster"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    blocking: bool = True
    """A failure that stops a first cell (exit status 1); otherwise a warning."""

    def line(self) -> str:
        mark = "✓" if self.ok else ("✗" if self.blocking else "!")
        text = f"{mark} {self.name}: {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix and not self.ok else text


def format_report(checks: Sequence[Check]) -> str:
    verdict = "a first cell should run" if not exit_status(checks) else "a first cell will fail"
    return "\n".join([*(c.line() for c in checks), f"→ {verdict}"])


def exit_status(checks: Sequence[Check]) -> int:
    return 1 if any(not c.ok and c.blocking for c in checks) else 0


# -- verdicts (pure) ------------------------------------------------------------------------------


def endpoint_check(endpoint: str, info: Any) -> Check:
    if not isinstance(info, Mapping) or "version" not in info:
        return Check("endpoint", False, f"{endpoint} answered, but not as a Backend.AI manager",
                     "point BACKEND_ENDPOINT at the manager (or webserver) URL")
    release = str(info.get("manager") or "unknown release")
    version = info["version"]
    return Check("endpoint", True, f"{endpoint} answers: Backend.AI {release}, API {version}")


def unreachable_check(endpoint: str, error: BaseException) -> Check:
    return Check("endpoint", False, f"{endpoint} does not answer ({error})",
                 "check BACKEND_ENDPOINT, the network and that the manager runs")


def skew_check(local: datetime, server_date: str | None) -> tuple[Check, bool]:
    """The clock against the server's ``Date`` header; also whether the skew breaks signing."""
    if not server_date:
        return Check("clock", True, "the server sent no Date header (not compared)",
                     blocking=False), False
    try:
        server = parsedate_to_datetime(server_date)
    except (TypeError, ValueError):
        return Check("clock", True, f"unreadable server Date {server_date!r} (not compared)",
                     blocking=False), False
    if server.tzinfo is None:
        server = server.replace(tzinfo=timezone.utc)
    skew = (local - server).total_seconds()
    way = "ahead of" if skew > 0 else "behind"
    text = f"this machine is {abs(skew):.0f} s {way} the server"
    fix = "synchronise this machine's clock (e.g. timedatectl set-ntp true)"
    if abs(skew) > MAX_SKEW:
        return Check("clock", False, f"{text}; signatures fail beyond 15 min", fix), True
    if abs(skew) > WARN_SKEW:
        return Check("clock", False, f"{text} (signing works up to 15 min)", fix,
                     blocking=False), False
    return Check("clock", True, f"within {max(abs(skew), 1):.0f} s of the server"), False


def keys_check(access_key: str, error: BaseException | None, skewed: bool) -> Check:
    if error is None:
        return Check("keys", True, f"{access_key} signs requests the server accepts")
    if skewed:
        return Check("keys", False, f"signature refused ({error})", "fix the clock first (above)")
    if isinstance(error, AuthError | APIError) and getattr(error, "status", 0) in (401, 403):
        return Check("keys", False, f"{access_key or '(no access key)'} refused ({error})",
                     _FIX_KEYS)
    return Check("keys", False, f"signed request failed ({error})", _FIX_KEYS)


def project_check(domain: str, group: str, user: Mapping[str, Any]) -> Check:
    """The configured domain/project against the user's (``groups`` may be missing)."""
    user_domain = str(user.get("domain_name") or "")
    who = str(user.get("email") or "the user")
    if domain and user_domain and domain != user_domain:
        return Check("project", False, f"BACKEND_DOMAIN={domain} but {who} is in {user_domain}",
                     f"BACKEND_DOMAIN={user_domain}")
    groups = user.get("groups")
    if not isinstance(groups, list):
        return Check("project", True, f"{who} in domain {user_domain or domain or 'default'} "
                     f"(this server does not list projects)")
    names = [str(g.get("name")) for g in groups if isinstance(g, Mapping)]
    if not names:
        return Check("project", False, f"{who} belongs to no project",
                     "ask the cluster's administrator to add the user to a project")
    wanted = group or "default"
    if wanted not in names:
        return Check("project", False, f"project {wanted!r} is not one of {who}'s "
                     f"({', '.join(names)})", f"BACKEND_GROUP={names[0]}")
    return Check("project", True, f"{who} in domain {user_domain or domain}, project {wanted}")


def images_check(images: Sequence[ImageInfo], named: str, resources: Mapping[str, str]) -> Check:
    refs = sorted({i.ref for i in images})
    if not refs:  # 26.x: only images of registries associated with the user's projects
        return Check("images", False, f"the server lists no images to this user (not checked); "
                     f"sessions will ask for {named or DEFAULT_IMAGE}",
                     "if the first cell says the image does not exist, ask the administrator "
                     "which to use and set BACKEND_IMAGE", blocking=False)
    if named:
        if named in refs:
            return Check("images", True, f"{named} (BACKEND_IMAGE) is one of {len(refs)}")
        near = ", ".join(closest_images(named, refs)) or "none listed"
        return Check("images", False, f"{named} does not exist here; closest: {near}",
                     "%backendai config set image=REF (or BACKEND_IMAGE=REF), or unset it")
    choice = choose_image(images, resources)
    if choice is None:
        return Check("images", False, f"no Python image among {len(refs)}",
                     "ask the cluster's administrator for a Python image, or name one")
    return Check("images", True, f"{len(refs)} image(s); auto picks {choice.ref} ({choice.reason})")


def presets_check(presets: Sequence[Mapping[str, Any]]) -> Check:
    names = [str(p.get("name")) for p in presets if isinstance(p, Mapping)]
    if not names:
        return Check("presets", False, "no resource presets", "size sessions with resources=...",
                     blocking=False)
    return Check("presets", True, f"{len(names)}: {', '.join(names[:8])}")


def _perms(policy: Any) -> dict[str, list[str]]:
    raw = policy.get("allowed_vfolder_hosts") if isinstance(policy, Mapping) else None
    if isinstance(raw, str):  # 24.03 and 26.x answer a JSON string
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if not isinstance(raw, Mapping):
        return {}
    return {str(h): [str(p) for p in v] for h, v in raw.items() if isinstance(v, list)}


def vfolder_check(hosts: Mapping[str, Any], policy: Any) -> Check:
    allowed = [str(h) for h in hosts.get("allowed") or ()]
    if not allowed:
        return Check("vfolders", False, "no vfolder host allowed",
                     "ask the administrator for a vfolder host (storage folders will not work)",
                     blocking=False)
    perms = _perms(policy)
    parts = []
    for host in allowed:
        have = perms.get(host)
        if have is None:
            parts.append(host)
            continue
        missing = {"mount-in-session", "upload-file"} - set(have)
        parts.append(f"{host} (missing {', '.join(sorted(missing))})" if missing else
                     f"{host} (mount, upload, download)" if "download-file" in have else host)
    default = hosts.get("default")
    text = f"hosts {', '.join(parts)}" + (f"; default {default}" if default else "")
    if any("missing" in p for p in parts):
        return Check("vfolders", False, text, "ask the administrator for the missing permissions",
                     blocking=False)
    return Check("vfolders", True, text)


def kernelspec_check(
    specs: Mapping[str, Mapping[str, Any]], exists: Callable[[str], bool]
) -> Check:
    spec = specs.get("backendai-python")
    if spec is None:
        return Check("kernelspec", False, "backendai-python is not installed",
                     "backendai-jupyter kernel install (or pip install the package again)")
    argv = list((spec.get("spec") or {}).get("argv") or [])
    python = str(argv[0]) if argv else "?"
    where = spec.get("resource_dir", "")
    if python in ("python", "python3"):  # jupyter_client runs its own interpreter for these
        return Check("kernelspec", True, f"backendai-python in {where}, runs Jupyter's own "
                     f"Python ({sys.executable})")
    if exists(python):
        return Check("kernelspec", True, f"backendai-python in {where}, runs {python}")
    return Check("kernelspec", False, f"backendai-python in {where} runs {python}, which is gone",
                 "backendai-jupyter kernel install (rewrites it for this Python)")


def sandbox_check(info: Any) -> Check | None:
    """The local endpoint's sandbox layers (its ``GET /`` diagnostics); ``None`` for a cluster."""
    if not isinstance(info, Mapping) or not str(info.get("manager", "")).endswith("-local"):
        return None
    layers = info.get("sandbox") or info.get("layers")
    if isinstance(layers, Mapping):
        on = [str(k) for k, v in layers.items() if v]
        off = [str(k) for k, v in layers.items() if not v]
        text = f"on: {', '.join(on) or 'none'}" + (f"; off: {', '.join(off)}" if off else "")
        return Check("sandbox", not off, text, "install bubblewrap (apt-get install bubblewrap)",
                     blocking=False)
    if isinstance(layers, list):
        return Check("sandbox", True, f"layers: {', '.join(map(str, layers)) or 'none'}")
    return Check("sandbox", True, "local endpoint (its GET / reports no sandbox layers)",
                 blocking=False)


# -- asking (I/O) ---------------------------------------------------------------------------------

Clock = Callable[[], datetime]


async def _answered(name: str, work: Any, verdict: Callable[[Any], Check]) -> Check:
    """``verdict`` of what ``work`` answered; a server that cannot answer is a warning."""
    try:
        return verdict(await work)
    except BackendAIError as e:
        return Check(name, False, f"not answered ({e})", "see the server's version above",
                     blocking=False)


async def _user(client: Client) -> Any:
    try:
        data = await client.gql("query { user { email domain_name groups { id name } } }")
    except APIError:  # a server without User.groups
        data = await client.gql("query { user { email domain_name } }")
    return (data or {}).get("user") or {}


async def _policy(client: Client) -> Any:
    try:
        data = await client.gql("query { keypair_resource_policy { allowed_vfolder_hosts } }")
    except APIError:
        return None
    return (data or {}).get("keypair_resource_policy")


async def _hosts_and_policy(client: Client) -> tuple[dict[str, Any], Any]:
    return await client.folders.list_hosts(), await _policy(client)


async def _images_check(client: Client, image: str, resources: Mapping[str, str]) -> Check:
    try:
        images = await list_images(client)
    except APIError as e:
        return Check("images", True, f"this server lists no images ({e.title or e}); "
                     "the kernel uses the default image", blocking=False)
    return images_check(images, image, resources)


def _installed_specs() -> dict[str, Any]:
    from jupyter_client.kernelspec import KernelSpecManager

    specs: dict[str, Any] = KernelSpecManager().get_all_specs()
    return specs


async def kernelspec_line() -> Check:
    import os

    specs = await asyncio.to_thread(_installed_specs)
    return kernelspec_check(specs, os.path.exists)


async def _server_checks(client: Client, clock: Clock) -> tuple[list[Check], Any, bool]:
    """Endpoint, clock and keys; the ``GET /`` answer and whether the rest can be asked."""
    endpoint = str(client.http.endpoint)
    try:
        answer = await client.http.raw("GET", client.http.build_url(""),
                                       read_timeout=client.config.connection_timeout)
        info = answer.json()
    except (ClientError, APIError) as e:
        return [unreachable_check(endpoint, e)], None, False
    checks = [endpoint_check(endpoint, info)]
    if not checks[0].ok:
        return checks, info, False
    clock_line, skewed = skew_check(clock(), answer.headers.get("Date"))
    checks.append(clock_line)
    error: BaseException | None = None
    try:
        await client.connect()
        if client.config.endpoint_type == "session":
            if not await client.login_check():
                error = AuthError(401, title="not logged in to the webserver")
        else:
            await client.check_auth()
    except BackendAIError as e:
        error = e
    checks.append(keys_check(client.config.access_key, error, skewed))
    return checks, info, error is None


async def run_checks(
    config: ClientConfig,
    *,
    image: str = "",
    resources: Mapping[str, str] | None = None,
    clock: Clock | None = None,
) -> list[Check]:
    """Every check against ``config``'s endpoint (``clock``: the signing clock, for tests)."""
    clock = clock or (lambda: datetime.now(timezone.utc))
    resources = resources or {}
    client = Client(config, clock=clock)  # not entered: an unreachable endpoint is a finding
    try:
        checks, info, signed = await _server_checks(client, clock)
        if signed:
            checks += await asyncio.gather(
                _answered("project", _user(client),
                          lambda u: project_check(config.domain or "", config.group or "", u)),
                _images_check(client, image, resources),
                _answered("presets", client.resources.presets(), presets_check),
                _answered("vfolders", _hosts_and_policy(client), lambda hp: vfolder_check(*hp)),
            )
        elif len(checks) > 1:
            checks.append(Check("the rest", False, "not checked until the keys sign",
                                blocking=False))
    finally:
        await client.close()
    checks.append(await kernelspec_line())
    sandbox = sandbox_check(info)
    if sandbox is not None:
        checks.append(sandbox)
    return checks


# -- the command ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=None,
                        help="check this image (default: $BACKEND_IMAGE, else the auto choice)")
    parser.add_argument("-r", "--resources", action="append", default=None, metavar="SLOT=N",
                        help="resources a session would ask for ($BACKEND_RESOURCES): a "
                        "cuda.* slot makes the auto choice a CUDA image")


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The image and resources to check: the arguments, else ``BACKEND_IMAGE``/``_RESOURCES``."""
    image = (args.image if args.image is not None else env.get("BACKEND_IMAGE", "")).strip()
    flags = args.resources or [f for f in env.get("BACKEND_RESOURCES", "").split(",") if f.strip()]
    return image, dict(parse_resource_flags([f.strip() for f in flags]).resources)


def run(args: argparse.Namespace) -> int:
    import os

    from .workspace.config import load_config

    try:
        image, resources = settings_from(args, os.environ)
        config = load_config(announce=False)
    except ConfigError as e:
        print(Check("configuration", False, str(e), "see README, Configuration").line())
        return 2
    checks = asyncio.run(run_checks(config, image=image, resources=resources))
    print(format_report(checks))
    return exit_status(checks)
