"""Who a child runs as: a watcher's uid/gid options turned into the numbers, groups and user name of the child.

Kept apart from process.py (no gevent, no psutil) so the config loader can refuse an identity at load time with the
same rules the spawn applies, and the control channel can compare it with `endpoint_owner`.
"""
from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass


class IdentityError(ValueError):
    """A uid or gid that cannot be used; `option` names the option at fault ("uid" or "gid")."""

    def __init__(self, reason: str, option: str):
        super().__init__(reason)
        self.option = option


def resolve_user(uid: int | str | None, gid: int | str | None) -> tuple[int | None, int | None, str | None]:
    """Turn uid/gid options (names or numbers) into numbers, plus the user name for HOME/USER and initgroups.

    A uid without a gid takes that user's primary group, as Circus does. A numeric uid with no passwd entry has no
    primary group: without a gid the child would keep gcircusd's group (root's, when it runs as root), so it is
    refused instead.
    """
    if uid is None:
        return None, resolve_gid(gid), None
    try:
        entry = pwd.getpwuid(int(uid)) if str(uid).isdigit() else pwd.getpwnam(str(uid))
    except KeyError:
        if not str(uid).isdigit():
            raise IdentityError(f"unknown user {uid!r}", "uid") from None
        if gid is None:
            raise IdentityError(f"uid {uid} has no passwd entry, hence no primary group: set gid as well "
                                "(otherwise the child would keep gcircusd's group)", "uid") from None
        return int(uid), resolve_gid(gid), None
    return entry.pw_uid, entry.pw_gid if gid is None else resolve_gid(gid), entry.pw_name


def resolve_gid(gid: int | str | None) -> int | None:
    """A group name or number as a number; IdentityError for an unknown name."""
    if gid is None:
        return None
    if str(gid).isdigit():
        return int(gid)
    try:
        return grp.getgrnam(str(gid)).gr_gid
    except KeyError:
        raise IdentityError(f"unknown group {gid!r}", "gid") from None


def supplementary_groups(uid: int | None, gid: int | None, username: str | None) -> list[int] | None:
    """The groups a root gcircusd gives a child that switches to `uid`; None means "keep gcircusd's".

    Looked up in the parent: NSS (files, nscd, LDAP) must never run in a forked child of a process that has threads
    (hooks run in a thread pool), where it can deadlock on a lock another thread held at fork time. A uid without a
    passwd entry gets only its gid, none of root's groups.
    """
    if uid is None or os.geteuid() != 0:
        return None
    if username is not None:
        return os.getgrouplist(username, gid)
    return [gid] if gid is not None else []


@dataclass(frozen=True)
class Identity:
    """The ids a child really runs with, gcircusd's own where the watcher does not change them."""

    uid: int
    gid: int
    groups: frozenset[int]


def child_identity(uid: int | str | None, gid: int | str | None) -> Identity:
    """What a child of a watcher with these uid/gid options runs as (IdentityError if they cannot be used)."""
    num_uid, num_gid, username = resolve_user(uid, gid)
    groups = supplementary_groups(num_uid, num_gid, username)
    effective_gid = os.getegid() if num_gid is None else num_gid
    return Identity(uid=os.geteuid() if num_uid is None else num_uid, gid=effective_gid,
                    groups=frozenset(os.getgroups() if groups is None else groups) | {effective_gid})
