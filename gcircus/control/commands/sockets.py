"""listsockets: the managed sockets ([socket:NAME] sections) and where they listen."""
from __future__ import annotations

from gcircus.control.commands.base import Command, register


@register
class ListSockets(Command):
    """List the managed sockets: fd, name and address (host:port, or the unix socket path).

    listsockets
    """

    name = "listsockets"

    def execute(self, arbiter, props):
        sockets = []
        for name, sock in arbiter.sockets.items():
            fd = sock.fileno()
            if fd == -1:  # closed (the arbiter is not running)
                continue
            entry = {"fd": fd, "name": name, "backlog": sock.backlog}
            if sock.is_unix:
                entry["path"] = sock.path
            else:
                entry["host"] = sock.host
                entry["port"] = sock.port
            sockets.append(entry)
        return {"sockets": sorted(sockets, key=lambda s: s["fd"])}

    def console(self, reply):
        lines = []
        for s in reply.get("sockets", []):
            where = s["path"] if "path" in s else f"{s.get('host')}:{s.get('port')}"
            lines.append(f"{s['fd']}:socket '{s['name']}' at {where}")
        return "\n".join(lines)
