"""list and status: what runs. These never wait behind a command in progress."""
from __future__ import annotations

from gcircus.control.commands.base import Command, Prop, get_watcher, register


@register
class List(Command):
    """List the watchers, or the pids of one watcher's running processes.

    list [NAME]
    """

    name = "list"
    properties = (Prop("name"),)
    positional = ("name",)

    def execute(self, arbiter, props):
        if props["name"]:
            return {"pids": get_watcher(arbiter, props["name"]).get_active_pids()}
        return {"watchers": sorted(w.name.lower() for w in arbiter.watchers)}

    def console(self, reply):
        items = reply.get("pids", reply.get("watchers", []))
        return ",".join(str(i) for i in items)


@register
class Status(Command):
    """Status of one watcher (active, starting, stopping, stopped) or of all of them.

    status [NAME]
    """

    name = "status"
    properties = (Prop("name"),)
    positional = ("name",)

    def execute(self, arbiter, props):
        if props["name"]:
            return {"status": get_watcher(arbiter, props["name"]).status()}
        return {"statuses": arbiter.statuses()}

    def console(self, reply):
        if "statuses" in reply:
            return "\n".join(f"{name}: {status}" for name, status in sorted(reply["statuses"].items()))
        return str(reply.get("status"))
