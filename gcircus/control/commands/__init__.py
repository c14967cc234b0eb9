"""The command table: importing this package registers every command (see base.py for what a command is)."""
from gcircus.control.commands import info, lifecycle, listing, mutate, reloadconfig, signals, sockets, streams  # noqa: F401,E501
from gcircus.control.commands.base import COMMANDS, get_command  # noqa: F401
