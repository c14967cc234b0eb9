"""What a restricted client of a root gcircusd may change: nothing that runs or writes as anyone it may not run as.

Two kinds of clients are restricted (gcircus.control.access decides which): every request on an `endpoint_owner`
endpoint, held to the owner's rights, and a non-root `define` client of a root gcircusd (identified by
gcircus.control.peers), held to its own uid and the users [access] `runas:NAME` lists for it, never root. A watcher
such a client adds runs as one of them, with their groups (an `add` without uid runs as the client itself; on an
endpoint_owner endpoint it must name the owner, as before); a watcher that runs as someone else can only be scaled,
stopped and tuned (the options the table marks `scheduling`), never given another command, environment, directory or
limits; and the options whose effect happens inside gcircusd itself, with its identity (those the table marks
`daemon_side`: hooks, stream files and classes, gcircusd's sockets and environment, the working directory entered
before the switch to the child's user), are refused outright (wire.errors.Refused: an errno 3 reply, recorded as
`refused` by the audit log). Reads, signals, start/stop and reloadconfig (which reads the operator's file) are not
changes of identity and stay open (to a peer with the role they need).
"""
from __future__ import annotations

import os
import pwd
import resource
from dataclasses import dataclass

from gcircus import identity
from gcircus.options import RUNTIME_OBJECT_OPTIONS, Option, family_member, get_option, only_schedules
from gcircus.wire.errors import MessageError, Refused

_schedules = only_schedules  # the keys a restricted client may set on a watcher that does not run as it


def _option(key: str) -> Option | None:
    return RUNTIME_OBJECT_OPTIONS.get(key) or get_option(key, "watcher")


@dataclass(frozen=True)
class Owner:
    """Who a restricted client may run watchers as: the endpoint owner, or a non-root client of a root gcircusd
    (`client`), with every group those users belong to. `uid` is None for a client with no uid of its own (a CURVE
    client); `others` are the uids its [access] runas entry (`runas_key`) lists."""

    name: str
    uid: int | None
    groups: frozenset[int]
    others: frozenset[int] = frozenset()
    client: bool = False
    runas_key: str | None = None

    @property
    def uids(self) -> frozenset[int]:
        return self.others | ({self.uid} if self.uid is not None else set())

    @property
    def label(self) -> str:
        return self.name if self.client else f"endpoint_owner {self.name!r}"

    def uid_refusal(self, uid) -> str:
        if not self.client:
            return "uid does not match endpoint_owner"
        runas = f" or [access] {self.runas_key}" if self.runas_key else ""
        return (f"uid {uid} is not a user {self.name} may run watchers as (its own{runas}; never root, since "
                "gcircusd runs as root)")


def client(name: str, uid: int | None, others: frozenset[int], runas_key: str | None) -> Owner:
    """The limits of a non-root client of a root gcircusd: `uid` (its own, if any) and `others` ([access] runas),
    with every group each of them belongs to."""
    groups: set[int] = set()
    for each in ({uid} if uid is not None else set()) | others:
        try:
            entry = pwd.getpwuid(each)
        except KeyError:
            continue
        groups.update(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Owner(name, uid, frozenset(groups), frozenset(others), client=True, runas_key=runas_key)


def with_default_uid(owner: Owner | None, options: dict) -> dict:
    """`add` options with the client's own uid when they name none: a restricted client's watcher runs as itself.
    An endpoint_owner endpoint keeps asking for the owner's uid explicitly (check_add refuses its absence)."""
    if owner is None or not owner.client or owner.uid is None or options.get("uid") is not None:
        return options
    return {**options, "uid": owner.uid}


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
    _refuse_privileged(owner, options)
    if options.get("uid") is None:
        raise Refused(owner.uid_refusal(None))  # an added watcher names its user, as in Circus
    _require_owner_identity(owner, options.get("uid"), options.get("gid"))


def check_set(owner: Owner | None, watcher, changes: dict) -> None:
    """MessageError unless these `set` changes (converted values) leave `watcher` running and writing as `owner`.

    A watcher that does not run as the owner accepts only scheduling keys. Called before the changes are queued (for
    the reply) and again under the watcher's lock just before they apply (a reloadconfig may change who it runs as
    meanwhile).
    """
    if owner is None:
        return
    _refuse_privileged(owner, changes)
    if all(_schedules(key) for key in changes):
        return
    try:
        runs_as_owner = _is_owner(owner, identity.child_identity(watcher.uid, watcher.gid))
    except identity.IdentityError:
        runs_as_owner = False
    if not runs_as_owner:
        others = sorted(key for key in changes if not _schedules(key))
        raise Refused(f"watcher {watcher.name!r} does not run as {owner.label}: "
                      f"{', '.join(others)} cannot be changed {'by it' if owner.client else 'from this endpoint'} "
                      "(only how many processes run and how they are started and stopped)")
    _require_owner_identity(owner, changes.get("uid", watcher.uid), changes.get("gid", watcher.gid))


def _is_owner(owner: Owner, ids: identity.Identity) -> bool:
    return ids.uid in owner.uids and ids.groups <= owner.groups


def _require_owner_identity(owner: Owner, uid, gid) -> None:
    try:
        ids = identity.child_identity(uid, gid)
    except identity.IdentityError as exc:
        raise MessageError(str(exc)) from None
    if ids.uid not in owner.uids or (ids.uid == 0 and owner.client):
        raise Refused(owner.uid_refusal(uid))
    foreign = sorted(ids.groups - owner.groups)
    if foreign:
        raise Refused(f"the child would run with group(s) {', '.join(map(str, foreign))}, which {owner.label} "
                      f"does not belong to: set gid to one of its groups")


def _refuse_privileged(owner: Owner, options: dict) -> None:
    """MessageError for the first option (converted value) that acts as gcircusd (daemon_side) or raises a limit."""
    where = (f"by {owner.label}, a non-root client of a root gcircusd" if owner.client
             else "from an endpoint_owner endpoint")
    for key, value in options.items():
        reason = getattr(_option(key), "daemon_side", None)
        if reason and value:
            raise Refused(f"{key} cannot be set {where}: {reason} (see README, "
                          f"{'Securing the control channel' if owner.client else 'endpoint_owner'})")
        family = family_member(key)
        if family is not None and family[0] == "rlimits":
            _refuse_raised_limit(key, family[1], value, where)


def _refuse_raised_limit(key: str, limit: str, value, where: str) -> None:
    """A child inherits gcircusd's limits; setting one above gcircusd's own hard limit needs a privilege."""
    which = getattr(resource, "RLIMIT_" + limit.upper())
    hard = resource.getrlimit(which)[1]
    unlimited = resource.RLIM_INFINITY
    if hard == unlimited or (value != unlimited and value <= hard):
        return
    if which == resource.RLIMIT_NOFILE and value == unlimited:
        return  # the spawn turns an unlimited nofile into gcircusd's hard limit
    raise Refused(f"{key} = {'unlimited' if value == unlimited else value} is above gcircusd's own hard limit "
                  f"({hard}): raising it cannot be asked {where}")
