"""The texts a watcher's argv is split from (cmd, args, shell_args), checked before they are accepted.

A command that shlex cannot split (unbalanced quotes) would otherwise be accepted by the config loader or `set`
and fail only at spawn, while the old processes are already being replaced.
"""
from __future__ import annotations

import shlex

from gcircus.errors import quote_value


class CommandLineError(ValueError):
    """A cmd, args or shell_args text that cannot be split into arguments; `option` names which."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def check_command_line(cmd: str, args=None, shell: bool = False, shell_args: str | None = None) -> None:
    """CommandLineError naming the first text that Process.format_args could not split.

    With `shell` the command line goes to /bin/sh as one string (the shell reports its own syntax errors); args
    given as a list are not split at all.
    """
    parts = [("args", args if isinstance(args, str) else None), ("shell_args", shell_args)]
    if not shell:
        parts.insert(0, ("cmd", cmd))
    for option, text in parts:
        if not text:
            continue
        try:
            shlex.split(text)
        except ValueError as exc:
            raise CommandLineError(option, f"{option} {quote_value(text)} cannot be split into arguments: "
                                           f"{exc}") from None
