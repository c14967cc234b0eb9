"""The [access] section as grants: which role (gcircus.roles) each kind of peer of the control channel gets.

Users and groups are resolved to numbers when the file is read (and again by each reloadconfig). A name that does
not exist (yet) raises UnknownName, which the config loader logs as a warning naming its line: such a grant applies
to no one, and an example config stays loadable on a host without that user. What a peer finally gets, with the
defaults that no section can take away (root and gcircusd's own user are `define`), is decided in
gcircus.control.access.
"""
from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass, field, replace
from typing import Any

from gcircus.roles import READ

# The kinds of [access] keys, as the option table (gcircus.options.ACCESS_OPTIONS) declares them.
SUBJECT_KINDS = ("user", "group", "curve", "runas")
KEYS_HELP = "user:NAME, group:NAME, curve:NAME, runas:NAME, everyone, local_tcp"


@dataclass(frozen=True)
class Grants:
    """Roles granted in [access]; numbers are uids and gids. The defaults are an empty section's."""

    users: dict[int, str] = field(default_factory=dict)
    any_user: str | None = None  # user:* - every identified local user
    groups: dict[int, str] = field(default_factory=dict)
    curves: dict[str, str] = field(default_factory=dict)
    any_curve: str | None = None  # curve:* - every CURVE client gcircusd accepts
    everyone: str | None = None  # every peer of every endpoint, identified or not
    local_tcp: str = READ  # every peer of a tcp:// endpoint without CURVE
    # Who a non-root define client of a root gcircusd may run watchers as, besides itself: by uid, or CURVE name.
    runas_users: dict[int, frozenset[int]] = field(default_factory=dict)
    runas_curves: dict[str, frozenset[int]] = field(default_factory=dict)

    def runas_of(self, uid: int | None, curve: str | None) -> frozenset[int]:
        """The uids [access] lets this client name besides its own."""
        if curve is not None:
            return self.runas_curves.get(curve, frozenset())
        return self.runas_users.get(uid, frozenset()) if uid is not None else frozenset()


class UnknownName(ValueError):
    """A user or group name this host does not know: the entry grants nothing (a warning, not an error)."""


def user_id(name: str) -> int:
    """The uid of a user name, or the number itself; UnknownName for an unknown name."""
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise UnknownName(f"unknown user {name!r}") from None


def group_id(name: str) -> int:
    """The gid of a group name, or the number itself; UnknownName for an unknown name."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise UnknownName(f"unknown group {name!r}") from None


def with_grant(grants: Grants, key: str, value: Any) -> Grants:
    """`grants` plus one [access] entry (its value already converted by the option table); ValueError says what is
    wrong with the key or the value."""
    if key in ("everyone", "local_tcp"):
        return replace(grants, **{key: value})
    kind, _, subject = key.partition(":")
    if kind not in SUBJECT_KINDS or not subject:
        raise ValueError(f"unknown [access] key {key!r} (keys are {KEYS_HELP})")
    if kind == "runas":
        return _with_runas(grants, subject, value)
    if subject == "*" and kind != "group":
        return replace(grants, **{f"any_{kind}": value})
    if kind == "user":
        return replace(grants, users={**grants.users, user_id(subject): value})
    if kind == "group":
        return replace(grants, groups={**grants.groups, group_id(subject): value})
    return replace(grants, curves={**grants.curves, subject: value})


def _with_runas(grants: Grants, subject: str, names: tuple[str, ...]) -> Grants:
    if any(name in ("root", "0") for name in names):
        raise ValueError("root cannot be listed: a non-root client never runs anything as root")
    uids = frozenset(user_id(name) for name in names)
    if 0 in uids:
        raise ValueError("root cannot be listed: a non-root client never runs anything as root")
    if subject.startswith("curve:") and len(subject) > len("curve:"):
        return replace(grants, runas_curves={**grants.runas_curves, subject[len("curve:"):]: uids})
    return replace(grants, runas_users={**grants.runas_users, user_id(subject): uids})
