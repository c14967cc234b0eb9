"""reloadconfig: re-read the configuration file and apply what changed (see gcircus.reload); how a plan is shown."""
from __future__ import annotations

from gcircus.control.commands.base import Command, Flag, register
from gcircus.roles import DEFINE


@register
class ReloadConfig(Command):
    """Re-read the configuration file and apply what changed; a bad file changes nothing.

    reloadconfig [--waiting] [--dry-run]

    The whole file is validated first: on any error the reply is that error (naming file, section and option) and
    nothing changes. Otherwise the plan is applied: a numprocesses-only change scales the watcher without touching
    its running processes, a changed watcher is reloaded gracefully (new processes first) or replaced, new
    watchers are added, removed ones stopped, unchanged ones left alone. [circus] and socket changes that cannot
    be applied live are listed as needing a restart. The reply carries the plan: {"plan": {...}}.
    --dry-run only computes and shows the plan. With --waiting the reply comes once the plan is applied.
    """

    role = DEFINE

    flags = (Flag("waiting", "waiting", help="reply only once the new configuration is applied"),
             Flag("dry-run", "dry_run", help="show the plan without applying it"))

    def console(self, reply: dict) -> str:
        return format_plan(reply.get("plan") or {})


def format_plan(plan: dict) -> str:
    """The plan as gcircusctl prints it: one line per change, `no changes` when there is none."""
    lines: list[str] = []
    w = plan.get("watchers", {})
    for kind in ("added", "removed"):
        lines.extend(f"watcher {name}: {kind}" for name in w.get(kind, []))
    for name, item in w.get("scaled", {}).items():
        old, new = item["numprocesses"]
        lines.append(f"watcher {name}: numprocesses {old} -> {new} (scaled, running processes kept)")
    for kind, how in (("reloaded", "graceful reload"), ("replaced", "replaced: stopped, then started again")):
        lines.extend(f"watcher {name}: {', '.join(keys)} changed ({how})" for name, keys in w.get(kind, {}).items())
    c = plan.get("circus", {})
    needs = set(c.get("needs_restart", []))
    for key, (old, new) in c.get("changed", {}).items():
        how = "needs a restart of gcircusd" if key in needs else "applied"
        lines.append(f"[circus] {key}: {old!r} -> {new!r} ({how})")
    if plan.get("http", {}).get("changed"):
        lines.append("[http]: changed (needs a restart of gcircusd; the HTTP server keeps serving as it was)")
    p = plan.get("plugins", {})
    lines.extend(f"{name}: {kind}" for kind in ("added", "removed", "changed") for name in p.get(kind, []))
    s = plan.get("sockets", {})
    in_place = set(s.get("rebound_in_place", []))
    users = s.get("users", {})
    for name in s.get("added", []):
        lines.append(f"socket {name}: added (bound)")
    for name in s.get("removed", []):
        who = users.get(name) or []
        lines.append(f"socket {name}: removed (closed" + (f" after {', '.join(who)} reloaded" if who else "") + ")")
    for name in s.get("changed", []):
        who = ", ".join(users.get(name) or []) or "no watcher"
        if name in in_place:
            lines.append(f"socket {name}: changed, same address (closed and bound again: {who} stopped meanwhile, "
                         f"connections refused for that moment)")
        else:
            lines.append(f"socket {name}: changed (new address bound first, then {who} reloaded gracefully)")
    if not lines:
        lines.append("no changes")
    unchanged = w.get("unchanged", [])
    if unchanged:
        lines.append(f"unchanged: {', '.join(unchanged)}")
    return "\n".join(lines)
