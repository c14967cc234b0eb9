"""reopen: reopen gcircusd's log files and every watcher's stream files, for logrotate's postrotate."""
from __future__ import annotations

from gcircus.control.commands.base import Command, Prop, get_watcher, register
from gcircus.logsetup import reopen_log_files


@register
class Reopen(Command):
    """Reopen log and stream files (after logrotate moved them); the same as sending gcircusd SIGUSR1.

    reopen [NAME]

    With NAME, only that watcher's stream files are reopened.
    """

    name = "reopen"
    properties = (Prop("name"),)
    positional = ("name",)

    def execute(self, arbiter, props):
        if props["name"]:
            get_watcher(arbiter, props["name"]).reopen_streams()
            return None
        reopen_log_files()
        arbiter.reopen_streams()
        return None
