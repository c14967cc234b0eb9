"""The command table: importing this package registers every command's description (see base.py); the daemon's
side of each command is in gcircus.control.executors, which gcircusctl never loads."""
from gcircus.control.commands import info, lifecycle, mutate, procs, reloadconfig, signals, upgrade  # noqa: F401
from gcircus.control.commands.base import COMMANDS, get_command  # noqa: F401

# The commands operators type most, most common first. A mistyped name as close to two commands is taken for the
# more common one: `stauts` is one edit from both `status` and `stats`.
MOST_TYPED = ("status", "start", "stop", "restart", "reload", "list", "stats", "listen", "quit")
