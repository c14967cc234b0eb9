"""The command table: importing this package registers every command (see base.py for what a command is)."""
from gcircus.control.commands import info, lifecycle, listing, mutate, reloadconfig, signals, sockets, streams  # noqa: F401,E501
from gcircus.control.commands.base import COMMANDS, get_command  # noqa: F401

# The commands operators type most, most common first. A mistyped name as close to two commands is taken for the
# more common one: `stauts` is one edit from both `status` and `stats`.
MOST_TYPED = ("status", "start", "stop", "restart", "reload", "list", "stats", "listen", "quit")
