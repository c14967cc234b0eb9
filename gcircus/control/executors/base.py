"""What the daemon does for a command: one function per command name of the description table (gcircus.control.
commands), registered with `@executes(NAME)`, called as `execute(arbiter, props)` with validated properties.

It returns the reply's fields (dict, list or None), a `Deferred` long operation to run in gcircus.control.operations,
or `Queued` results of work already queued on watchers. A command of the table without an executor (help) is one
gcircusctl carries out itself: the daemon answers it as an unknown command.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from gcircus.control.commands import COMMANDS
from gcircus.wire.errors import MessageError

Executor = Callable[[Any, dict], Any]


class Props(dict):
    """A request's validated properties, and who the watchers its sender adds or sets may run as (`run_as`, a
    gcircus.control.ownership.Owner; None: no limit), set by the control server from the peer's identity."""

    run_as: Any = None

    @classmethod
    def of(cls, props: dict, run_as) -> Props:
        made = cls(props)
        made.run_as = run_as
        return made
EXECUTORS: dict[str, Executor] = {}


def executes(name: str) -> Callable[[Executor], Executor]:
    """Register the decorated function as the executor of command `name`, which must be in the description table."""
    if name not in COMMANDS:
        raise LookupError(f"no command {name!r} in the description table (gcircus.control.commands)")

    def register(execute: Executor) -> Executor:
        EXECUTORS[name] = execute
        return execute
    return register


class Deferred(NamedTuple):
    """A long operation: run at once when the client asked for `waiting`, else in the background after an `ok`."""

    run: Callable[[], Any]


class Queued(NamedTuple):
    """The command is already queued on watchers: `results` (their AsyncResults) say when it is done.

    The server replies at once, or with `waiting` once every result is in, as `shape(values)`; nothing holds a
    greenlet meanwhile, and a restart queued behind an identical one shares its result (gcircus.command_queue).
    """

    results: list
    shape: Callable[[list], object] = lambda values: None


# How each `match` mode turns a name into a regular expression that watcher names are matched against.
MATCH_MODES: dict[str, Callable[[str], str]] = {
    "simple": lambda name: re.escape(name) + r"\Z", "glob": fnmatch.translate, "regex": lambda name: name}


def match_watchers(arbiter, name: str, mode: str | None = "glob") -> list:
    """The watchers `name` designates, in priority order: `simple` (exact), `glob` (default) or `regex`.

    Both the pattern and the names are lowercased first, as in Circus. No match is `program <name> not found`.
    """
    mode = (mode or "glob").lower()
    if mode not in MATCH_MODES:
        raise MessageError(f"match must be simple, glob or regex, not {mode!r}")
    try:
        regex = re.compile(MATCH_MODES[mode](name.lower()))
    except re.error as exc:  # only a regex can be invalid
        raise MessageError(f"invalid regex {name!r}: {exc}") from None
    found = [w for w in arbiter.iter_watchers() if regex.match(w.name.lower())]
    if not found:
        raise MessageError(f"program {name} not found")
    return found


def get_watcher(arbiter, name: str):
    """The watcher called `name` (case-insensitive) or MessageError `program <name> not found`."""
    try:
        return arbiter.get_watcher(name)
    except KeyError:
        raise MessageError(f"program {name} not found") from None
