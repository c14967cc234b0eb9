"""What a client of an `endpoint_owner` control socket may change: nothing that runs or writes as anyone but the owner.

`endpoint_owner` hands a root gcircusd's ipc:// socket to one user. zmq does not tell who is at the other end (the
owner, or root), so every request is held to the owner's rights: a watcher it adds runs as the owner, with the
owner's groups; a watcher that runs as someone else can only be scaled, stopped and tuned (the options the table
marks `scheduling`), never given another command, environment, directory or limits; and the options whose effect
happens inside gcircusd itself, with its identity (those the table marks `daemon_side`: hooks, stream files and
classes, gcircusd's sockets and environment, the working directory entered before the switch to the child's user),
are refused outright (wire.errors.Refused: an errno 3 reply, recorded as `refused` by the audit log). Reads,
signals, start/stop and reloadconfig (which reads the operator's file) are not changes of identity and stay open.
"""
from __future__ import annotations

import os
import pwd
import resource
from dataclasses import dataclass

from gcircus import identity
from gcircus.options import RUNTIME_OBJECT_OPTIONS, Option, family_member, get_option
from gcircus.wire.errors import MessageError, Refused


def _option(key: str) -> Option | None:
    return RUNTIME_OBJECT_OPTIONS.get(key) or get_option(key, "watcher")


def _schedules(key: str) -> bool:
    """The option table says `key` only schedules (how many processes, when, how stopped): not what runs nor as
    whom. Those are the only keys an endpoint_owner client may set on a watcher that does not run as the owner."""
    option = _option(key)
    return option is not None and option.scheduling


@dataclass(frozen=True)
class Owner:
    """The endpoint owner: its uid and every group it belongs to."""

    name: str
    uid: int
    groups: frozenset[int]


def owner_of(arbiter) -> Owner | None:
    """The arbiter's endpoint owner, looked up now (a user's groups can change), or None when not set."""
    configured = getattr(arbiter, "endpoint_owner", None)
    if not configured:
        return None
    try:
        entry = pwd.getpwuid(int(configured)) if str(configured).isdigit() else pwd.getpwnam(str(configured))
    except KeyError:
        raise Refused(f"endpoint_owner {configured!r} is not a known user: changes are refused") from None
    return Owner(entry.pw_name, entry.pw_uid, frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid)))


def check_add(owner: Owner | None, options: dict) -> None:
    """MessageError unless a watcher with these `add` options (converted values) runs and writes only as `owner`."""
    if owner is None:
        return
    _refuse_privileged(options)
    if options.get("uid") is None:
        raise Refused("uid does not match endpoint_owner")  # an added watcher names its user, as in Circus
    _require_owner_identity(owner, options.get("uid"), options.get("gid"))


def check_set(owner: Owner | None, watcher, changes: dict) -> None:
    """MessageError unless these `set` changes (converted values) leave `watcher` running and writing as `owner`.

    A watcher that does not run as the owner accepts only scheduling keys. Called before the changes are queued (for
    the reply) and again under the watcher's lock just before they apply (a reloadconfig may change who it runs as
    meanwhile).
    """
    if owner is None:
        return
    _refuse_privileged(changes)
    if all(_schedules(key) for key in changes):
        return
    try:
        runs_as_owner = _is_owner(owner, identity.child_identity(watcher.uid, watcher.gid))
    except identity.IdentityError:
        runs_as_owner = False
    if not runs_as_owner:
        others = sorted(key for key in changes if not _schedules(key))
        raise Refused(f"watcher {watcher.name!r} does not run as endpoint_owner {owner.name!r}: "
                           f"{', '.join(others)} cannot be changed from this endpoint (only how many processes run "
                           "and how they are started and stopped)")
    _require_owner_identity(owner, changes.get("uid", watcher.uid), changes.get("gid", watcher.gid))


def _is_owner(owner: Owner, ids: identity.Identity) -> bool:
    return ids.uid == owner.uid and ids.groups <= owner.groups


def _require_owner_identity(owner: Owner, uid, gid) -> None:
    try:
        ids = identity.child_identity(uid, gid)
    except identity.IdentityError as exc:
        raise MessageError(str(exc)) from None
    if ids.uid != owner.uid:
        raise Refused("uid does not match endpoint_owner")
    foreign = sorted(ids.groups - owner.groups)
    if foreign:
        raise Refused(f"the child would run with group(s) {', '.join(map(str, foreign))}, which endpoint_owner "
                           f"{owner.name!r} does not belong to: set gid to one of its groups")


def _refuse_privileged(options: dict) -> None:
    """MessageError for the first option (converted value) that acts as gcircusd (daemon_side) or raises a limit."""
    for key, value in options.items():
        reason = getattr(_option(key), "daemon_side", None)
        if reason and value:
            raise Refused(f"{key} cannot be set from an endpoint_owner endpoint: {reason} "
                               "(see README, endpoint_owner)")
        family = family_member(key)
        if family is not None and family[0] == "rlimits":
            _refuse_raised_limit(key, family[1], value)


def _refuse_raised_limit(key: str, limit: str, value) -> None:
    """A child inherits gcircusd's limits; setting one above gcircusd's own hard limit needs a privilege."""
    which = getattr(resource, "RLIMIT_" + limit.upper())
    hard = resource.getrlimit(which)[1]
    unlimited = resource.RLIM_INFINITY
    if hard == unlimited or (value != unlimited and value <= hard):
        return
    if which == resource.RLIMIT_NOFILE and value == unlimited:
        return  # the spawn turns an unlimited nofile into gcircusd's hard limit
    raise Refused(f"{key} = {'unlimited' if value == unlimited else value} is above gcircusd's own hard limit "
                       f"({hard}): raising it cannot be asked from an endpoint_owner endpoint")
