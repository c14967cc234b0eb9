"""Who may run which command: the role a peer has (its identity, gcircus.control.peers, and the [access] grants,
gcircus.grants) against the role the command needs (its `role` in the command table, gcircus.control.commands).

A peer's role is the strongest of what applies to it, so no grant takes anything away:
- root, gcircusd's own user, the endpoint_owner user and gcircusd's own threads (inproc://) are `define`;
- `everyone` applies to every peer; `local_tcp` (default `read`) to every peer of a tcp:// endpoint without CURVE,
  identified or anonymous;
- an identified local user gets `user:NAME`, `user:*` and the `group:NAME` of each group it belongs to (its
  primary group and the group database's memberships);
- a CURVE client gets `curve:NAME` and `curve:*`, nothing for its uid (it is identified by its key); a key no
  longer in curve_clients (removed, then reloadconfig) gets nothing at all, on a connection it opened before too:
  the ZAP handler vets connections, this vets each request;
- an HTTP API client gets the role of its credentials (`[http] token_role`, carried by its Peer).

So, by default: on ipc:// only root and gcircusd's user may do anything; on loopback tcp:// everyone may read.

`define` is not the whole story when gcircusd runs as root: a non-root client may only make watchers run as itself
or a user [access] `runas:NAME` lists, never root, nor get gcircusd to act with its own identity (hooks, stream
files...). `run_as_limit` says what it may run as; gcircus.control.ownership holds add and set to it. An HTTP client
has no uid to be held to: its token is a secret of gcircusd's operator (token_file is readable by its owner only), so
a `define` token is as strong as gcircusd's own user (a token for others says `token_role = operate` or `read`).
"""
from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gcircus import roles
from gcircus.control import ownership
from gcircus.control.commands import COMMANDS
from gcircus.control.peers import HTTP, Peer
from gcircus.grants import Grants
from gcircus.wire.errors import AccessRefused

README_SECTION = "README, Securing the control channel"


def member_groups(peer: Peer) -> Iterable[int]:
    """The groups a local peer belongs to: its gid (its primary group's, when the transport does not say) and the
    group database's memberships of its user."""
    try:
        entry = pwd.getpwuid(peer.uid) if peer.uid is not None else None
    except KeyError:
        entry = None
    gid = peer.gid if peer.gid is not None else (entry.pw_gid if entry else None)
    if entry is None:
        return [] if gid is None else [gid]
    return os.getgrouplist(entry.pw_name, entry.pw_gid if gid is None else gid)


@dataclass(frozen=True)
class Policy:
    """What a decision reads besides the peer: the grants, gcircusd's own uid, the endpoint_owner's uid, and whether
    a CURVE client's key is still listed (`curve_listed`, None without CURVE)."""

    grants: Grants
    daemon_uid: int
    owner_uid: int | None = None
    groups_of: Callable[[Peer], Iterable[int]] = field(default=member_groups, compare=False)
    curve_listed: Callable[[str], bool] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, arbiter) -> Policy:
        """The arbiter's policy now: its current grants (reloadconfig replaces them), its endpoint_owner, its
        current CURVE clients (arbiter.curve, gcircus.control.zap.CurveAuthority, None without CURVE)."""
        curve = getattr(arbiter, "curve", None)
        return cls(getattr(arbiter, "access", None) or Grants(), os.geteuid(), _owner_uid(arbiter),
                   curve_listed=curve.is_listed if curve is not None else None)

    def revoked(self, peer: Peer) -> bool:
        """Whether `peer` is a CURVE client whose key is no longer listed: its connection was let in before."""
        return peer.curve is not None and self.curve_listed is not None and not self.curve_listed(peer.curve)


def _owner_uid(arbiter) -> int | None:
    owner = getattr(arbiter, "endpoint_owner", None)
    if not owner:
        return None
    try:
        return pwd.getpwuid(int(owner)).pw_uid if str(owner).isdigit() else pwd.getpwnam(str(owner)).pw_uid
    except KeyError:
        return None  # ownership refuses every change then, naming the unknown user


def role_of(peer: Peer, policy: Policy) -> str:
    """The strongest role that applies to `peer` (see the module docstring)."""
    grants = policy.grants
    if policy.revoked(peer):
        return roles.NONE
    granted = [grants.everyone]
    if peer.transport == HTTP:
        return roles.strongest(grants.everyone, peer.role)
    if peer.transport == "tcp" and peer.curve is None:
        granted.append(grants.local_tcp)
    if peer.curve is not None:
        granted += [grants.curves.get(peer.curve), grants.any_curve]
    elif peer.uid is not None:
        if peer.transport == "inproc" or peer.uid in (0, policy.daemon_uid, policy.owner_uid):
            return roles.DEFINE
        granted += [grants.users.get(peer.uid), grants.any_user]
        if grants.groups:
            granted += [grants.groups.get(gid) for gid in policy.groups_of(peer)]
    return roles.strongest(*granted)


def refusal(peer: Peer, command, props: dict, policy: Policy) -> AccessRefused | None:
    """Why `peer` may not run `command` with these validated properties, or None when it may."""
    if policy.revoked(peer):
        return AccessRefused(f"{command.name} refused: {peer}'s key is no longer in curve_clients (it was removed "
                             f"and the daemon's config reloaded), so it may run nothing, over this connection too")
    need = command.role_for(props)
    have = role_of(peer, policy)
    if roles.allows(have, need):
        return None
    has = f"the {have} role" if have != roles.NONE else "no role"
    grant = "raise [http] token_role" if peer.transport == HTTP else "grant it in [access]"
    return AccessRefused(f"{command.name} needs the {need} role; {peer} has {has} ({grant}: see {README_SECTION})")


def runnable(peer: Peer, policy: Policy) -> list[str]:
    """The commands whose declared role `peer` has, by name (what a page offers it; a `set` of keys that need more
    is still refused by `check`)."""
    have = role_of(peer, policy)
    return sorted(name for name, command in COMMANDS.items() if roles.allows(have, command.role))


def check(peer: Peer, command, props: dict, policy: Policy) -> None:
    """AccessRefused unless `peer` may run `command` with these validated properties."""
    refused = refusal(peer, command, props, policy)
    if refused is not None:
        raise refused


def run_as_limit(peer: Peer, policy: Policy) -> ownership.Owner | None:
    """Who the watchers `peer` adds or sets may run as, or None for no limit: a root gcircusd holds every peer but
    root (and itself) to its own uid and its [access] runas list (gcircus.control.ownership applies it)."""
    if policy.daemon_uid != 0 or peer.transport in ("inproc", HTTP) or peer.uid == 0:
        return None
    others = policy.grants.runas_of(peer.uid if peer.curve is None else None, peer.curve)
    if peer.curve is not None:
        return ownership.client(f"CURVE client {peer.curve!r}", None, others, f"runas:curve:{peer.curve}")
    if peer.uid is None:
        return ownership.client(str(peer), None, others, None)
    name = peer.user or str(peer.uid)
    return ownership.client(f"user {name!r}", peer.uid, others, f"runas:{name}")
