"""The roles of the control channel, weakest first: what a peer may ask of gcircusd.

`read` looks (list, status, stats...); `operate` changes whether and how many processes run, and how they are
scheduled (start, stop, signal, incr, `set` of scheduling options...); `define` changes what runs and as whom (add,
rm, `set` of cmd/env/uid..., reloadconfig, upgrade). Each role includes the weaker ones. `none` is no role at all:
what a peer without any grant has on an ipc:// endpoint. Each command declares the role it needs once, in the
command table (gcircus.control.commands); grants are the [access] section (gcircus.grants).
"""
from __future__ import annotations

NONE, READ, OPERATE, DEFINE = "none", "read", "operate", "define"
ROLES = (NONE, READ, OPERATE, DEFINE)


def rank(role: str | None) -> int:
    """The strength of `role` (None is no role)."""
    return 0 if role is None else ROLES.index(role)


def strongest(*roles: str | None) -> str:
    """The strongest of `roles` (none when there is none): grants add up, none takes anything away."""
    return max((role for role in roles if role is not None), key=rank, default=NONE)


def allows(have: str, need: str) -> bool:
    """True when a peer with role `have` may run a command that needs `need`."""
    return rank(have) >= rank(need)
