"""list, status, listsockets: what runs and what is bound. These never wait behind a command in progress."""
from __future__ import annotations

from gcircus.control.commands.base import Command, Prop, register


@register
class List(Command):
    """List the watchers, or the pids of one watcher's running processes.

    list [NAME]
    """

    name = "list"
    properties = (Prop("name"),)
    positional = ("name",)

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

    def console(self, reply):
        if "statuses" in reply:
            return "\n".join(f"{name}: {status}" for name, status in sorted(reply["statuses"].items()))
        return str(reply.get("status"))


@register
class ListSockets(Command):
    """List the managed sockets: fd, name and address (host:port, or the unix socket path).

    listsockets
    """

    name = "listsockets"

    def console(self, reply):
        lines = []
        for s in reply.get("sockets", []):
            where = s["path"] if "path" in s else f"{s.get('host')}:{s.get('port')}"
            lines.append(f"{s['fd']}:socket '{s['name']}' at {where}")
        return "\n".join(lines)
