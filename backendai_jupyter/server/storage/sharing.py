"""Invitations and sharing: invite, accept, list, update, delete, share, unshare, leave.

An accepted invitation is what gives another user access to a folder
(:meth:`FolderStore.shared_with`), so ``share`` simply records accepted ones.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from ..manager.errors import Problem, invalid_api_params
from .context import _json, _ok, _owned, _params, _store, _whoami
from .store import _FOLDER_PERMS, FolderStore, Invitation, _now


def _inv_json(store: FolderStore, inv: Invitation) -> dict[str, Any]:
    f = store.folders.get(inv.vfolder_id.replace("-", ""))
    return {
        "id": inv.id,
        "inviter": inv.inviter,
        "invitee": inv.invitee,
        "perm": inv.perm,
        "state": inv.state,
        "created_at": inv.created_at,
        "modified_at": inv.modified_at,
        "vfolder_id": inv.vfolder_id,
        "vfolder_name": f.name if f else "",
    }


def _no_invitation() -> Problem:
    return Problem(404, "vfolder-invitation-not-found", "Virtual folder invitation not found.")


async def invite(request: web.Request) -> web.Response:
    ak, email, _ = _whoami(request)
    f = _owned(request, request.match_info["name"], trashed=False)
    params = await _params(request)
    perm = params.get("perm") or "rw"
    if perm not in _FOLDER_PERMS:
        raise invalid_api_params("perm must be one of ro, rw, wd")
    emails = params.get("user_ids") or params.get("emails") or params.get("userIDs") or []
    if not isinstance(emails, list) or not all(isinstance(e, str) and e for e in emails):
        raise invalid_api_params("user_ids must be a list of emails")
    if email in emails:
        raise invalid_api_params("You cannot invite yourself.")
    store = _store(request)
    invited = []
    for invitee in emails:
        existing = [
            i for i in store.invitations.values()
            if i.vfolder_id.replace("-", "") == f.id and i.invitee == invitee
            and i.state in ("pending", "accepted")
        ]
        if existing:
            continue
        inv = Invitation(
            id=str(uuid.uuid4()), vfolder_id=str(uuid.UUID(f.id)), inviter=email,
            invitee=invitee, perm=perm,
        )
        store.invitations[inv.id] = inv
        invited.append(invitee)
    store.save()
    return _json({"invited_ids": invited}, status=201)


def _pending(request: web.Request, *, sent: bool) -> web.Response:
    """The caller's pending invitations: received ones, or with ``sent`` the ones it sent."""
    _, email, _ = _whoami(request)
    store = _store(request)
    return _json({"invitations": [
        _inv_json(store, i) for i in store.invitations.values()
        if (i.inviter if sent else i.invitee) == email and i.state == "pending"
    ]})


async def list_invitations(request: web.Request) -> web.Response:
    return _pending(request, sent=False)


async def list_sent(request: web.Request) -> web.Response:
    return _pending(request, sent=True)


async def _invitation(request: web.Request, key: Any) -> Invitation:
    if not isinstance(key, str):
        raise invalid_api_params("inv_id is required")
    inv = _store(request).invitations.get(key)
    if inv is None:
        raise _no_invitation()
    return inv


async def accept_invitation(request: web.Request) -> web.Response:
    ak, email, _ = _whoami(request)
    params = await _params(request)
    inv = await _invitation(request, params.get("inv_id"))
    store = _store(request)
    if inv.invitee != email or inv.state != "pending":
        raise _no_invitation()
    f = store.folders.get(inv.vfolder_id.replace("-", ""))
    if f is None:
        raise _no_invitation()
    if any(g.name == f.name and g.owner == ak for g in store.folders.values()):
        raise Problem(
            400, "vfolder-already-exists",
            "The virtual folder already exists with the same name.",
            f"You already have a folder named {f.name!r}",
        )
    inv.state, inv.modified_at = "accepted", _now()
    store.save()
    return _ok()


async def delete_invitation(request: web.Request) -> web.Response:
    _, email, _ = _whoami(request)
    params = await _params(request)
    inv = await _invitation(request, params.get("inv_id"))
    if email not in (inv.inviter, inv.invitee) or inv.state != "pending":
        raise _no_invitation()
    store = _store(request)
    del store.invitations[inv.id]
    store.save()
    return _ok()


async def update_invitation(request: web.Request) -> web.Response:
    _, email, _ = _whoami(request)
    params = await _params(request)
    inv = await _invitation(request, request.match_info["inv_id"])
    if inv.inviter != email:
        raise _no_invitation()
    perm = params.get("perm")
    if perm not in _FOLDER_PERMS:
        raise invalid_api_params("perm must be one of ro, rw, wd")
    inv.perm, inv.modified_at = str(perm), _now()
    _store(request).save()
    return _ok()


async def share(request: web.Request) -> web.Response:
    _, email, _ = _whoami(request)
    f = _owned(request, request.match_info["name"], trashed=False)
    params = await _params(request)
    perm = params.get("permission") or "rw"
    emails = params.get("emails") or []
    if perm not in _FOLDER_PERMS or not isinstance(emails, list):
        raise invalid_api_params("permission and emails are required")
    store = _store(request)
    for invitee in emails:
        if invitee == email:
            continue
        inv = Invitation(
            id=str(uuid.uuid4()), vfolder_id=str(uuid.UUID(f.id)), inviter=email,
            invitee=str(invitee), perm=perm, state="accepted",
        )
        store.invitations[inv.id] = inv
    store.save()
    return _json({"shared_emails": emails}, status=201)


async def unshare(request: web.Request) -> web.Response:
    f = _owned(request, request.match_info["name"], trashed=False)
    params = await _params(request)
    emails = params.get("emails") or []
    store = _store(request)
    for inv in list(store.invitations.values()):
        if inv.vfolder_id.replace("-", "") == f.id and inv.invitee in emails:
            del store.invitations[inv.id]
    store.save()
    return _json({"unshared_emails": emails})


async def leave(request: web.Request) -> web.Response:
    ak, email, _ = _whoami(request)
    store = _store(request)
    f = store.find(ak, email, request.match_info["name"])
    if f.owner == ak:
        raise invalid_api_params("Cannot leave your own folder.")
    for inv in list(store.invitations.values()):
        if inv.vfolder_id.replace("-", "") == f.id and inv.invitee == email:
            del store.invitations[inv.id]
    store.save()
    return _json({"msg": "left the shared vfolder"})

