"""gcircusctl's interactive shell: every command of the table at a `(gcircusctl) ` prompt.

Commands are not methods written here: each line is looked up in the command table and run through the same
Session as a one-shot gcircusctl, so commands added to the table appear in the shell with no change to this file.
Argument completion offers the daemon's watcher names (from `list`, cached for a few seconds) and the command's own
--options.
"""
from __future__ import annotations

import cmd
import os
import shlex
import sys
import time

from gcircus import __version__
from gcircus.cli.session import EXIT_OK, Session, commands_table, unknown_command_message
from gcircus.client import CallError
from gcircus.control.commands import COMMANDS, get_command

HISTORY_FILE = "~/.gcircusctl_history"
HISTORY_LENGTH = 1000
WATCHER_CACHE_SECONDS = 3.0
SHELL_ONLY = ("exit",)


class ControlShell(cmd.Cmd):
    """A cmd.Cmd whose commands come from the command table; `exit` or Ctrl-D leaves (`quit` stops the daemon)."""

    prompt = "(gcircusctl) "

    def __init__(self, session: Session, stdin=None, stdout=None, history_file: str | None = HISTORY_FILE):
        super().__init__(stdin=stdin, stdout=stdout)
        self.session = session
        session.overview = self.commands_overview
        if stdout is not None:
            session.out = stdout
        self.interactive = (stdin or sys.stdin).isatty()
        if not self.interactive:
            self.prompt = ""  # piped commands: keep the output to what the commands print
            self.use_rawinput = False
        self.history_file = os.path.expanduser(history_file) if history_file and self.interactive else None
        self._watchers: list[str] = []
        self._watchers_at = float("-inf")
        self.last_status = EXIT_OK

    # -- running -------------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Banner and status, then read commands until end of input; returns gcircusctl's exit code (0)."""
        self._load_history()
        if self.interactive:
            _complete_whole_words()
        self.session.say(f"gcircusctl {__version__} on {self.session.endpoint}. Type help for the commands, "
                         f"exit or Ctrl-D to leave (quit stops the daemon).")
        self.session.run("status", [])
        try:
            while True:
                try:
                    self.cmdloop()
                    break
                except KeyboardInterrupt:
                    self.session.say("^C")  # drop the line being typed, as a shell does, and prompt again
        finally:
            self._save_history()
        return EXIT_OK

    def onecmd(self, line: str) -> bool:
        name, _, rest = line.strip().partition(" ")
        if name == "EOF":
            if self.interactive:
                self.session.say("")  # end the prompt's line
            return True
        if name in SHELL_ONLY:
            return True
        if not name or name.startswith("#"):
            return False
        if name == "?":
            name = "help"
        try:
            tokens = shlex.split(rest)
        except ValueError as exc:
            self.session.say_err(f"cannot parse the arguments: {exc}")
            return False
        if get_command(name) is not None:
            self.last_status = self.session.run(name.lower(), tokens)
        else:
            self.default(line)
        return False

    def default(self, line: str) -> None:
        name = line.strip().split()[0]
        self.session.say_err(f"*** {unknown_command_message(name).replace('`gcircusctl help`', '`help`')}")
        self.last_status = 2

    def emptyline(self) -> bool:
        return False  # cmd.Cmd repeats the last command; after `quit` or `stop` that would be a trap

    # -- completion ----------------------------------------------------------------------------------------------

    # Python's readline appends nothing to a completed word, so each candidate carries its own trailing space.

    def completenames(self, text: str, *ignored) -> list[str]:
        names = sorted(set(COMMANDS) | set(SHELL_ONLY))
        return [name + " " for name in names if name.startswith(text.lower())]

    def complete_help(self, text: str, *ignored) -> list[str]:
        return self.completenames(text)

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        name = line.split()[0].lower() if line.split() else ""
        command = get_command(name)
        if command is None:
            return []
        if text.startswith("-"):
            return [f"--{flag.name} " for flag in command.flags if f"--{flag.name}".startswith(text)]
        if not command.completes_watchers:
            return []
        return [watcher + " " for watcher in self.watcher_names() if watcher.startswith(text.lower())]

    def watcher_names(self) -> list[str]:
        """The daemon's watchers, asked with `list` at most every few seconds; empty when it does not answer."""
        now = time.monotonic()
        if now - self._watchers_at > WATCHER_CACHE_SECONDS:
            try:
                reply = self.session.client.call("list")
            except CallError:
                reply = {}
            self._watchers = [str(w) for w in reply.get("watchers", [])] if isinstance(reply, dict) else []
            self._watchers_at = now
        return self._watchers

    # -- help ----------------------------------------------------------------------------------------------------

    def commands_overview(self) -> str:
        return commands_table() + "\n  exit  Leave the shell (Ctrl-D too)."

    # -- history -------------------------------------------------------------------------------------------------

    def _load_history(self) -> None:
        if not self.history_file:
            return
        try:
            import readline
        except ImportError:
            self.history_file = None
            return
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.read_history_file(self.history_file)
        except OSError:
            pass  # no history yet, or unreadable: start empty

    def _save_history(self) -> None:
        if not self.history_file:
            return
        try:
            import readline

            readline.write_history_file(self.history_file)
        except (ImportError, OSError):
            pass  # not writable (read-only home...): history is a convenience, never an error


def _complete_whole_words() -> None:
    """Let readline hand whole words (`--wait`, `web-1`) to the completers: its default delimiters split at `-`."""
    try:
        import readline
    except ImportError:
        return
    readline.set_completer_delims(" \t\n")
