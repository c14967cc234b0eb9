"""What a command is: one class holding its properties, its server-side execution, its console output and its help.

A command's docstring is its help text (`gcircusctl help NAME`); its first line is the summary. Adding a command
means adding one class to one module of this package, decorated with `@register`.
"""
from __future__ import annotations

import fnmatch
import re
import signal as signal_module
from dataclasses import dataclass
from typing import Any, ClassVar
from collections.abc import Callable

from gcircus.control.errors import ArgumentError, MessageError

COMMANDS: dict[str, Command] = {}


def register(cls: type[Command]) -> type[Command]:
    """Add a command class to the table (one instance, keyed by its lowercase name)."""
    COMMANDS[cls.name] = cls()
    return cls


def get_command(name: str) -> Command | None:
    return COMMANDS.get(name.lower())


@dataclass(frozen=True)
class Prop:
    """One property of a request: its JSON type, whether it is required, and its default."""

    name: str
    kind: str = "str"  # str, int, number, bool, object, list, signal, pid, any, strlist
    required: bool = False
    default: Any = None
    minimum: float | None = None


@dataclass(frozen=True)
class Flag:
    """A gcircusctl option of a command: `--NAME` (a switch) or `--NAME VALUE`, mapped onto a property."""

    name: str
    prop: str
    takes_value: bool = False
    value: Any = True
    help: str = ""
    convert: Callable[[str], Any] = str


class Deferred:
    """A long operation: run at once when the client asked for `waiting`, else in the background after an `ok`."""

    def __init__(self, run: Callable[[], Any]):
        self.run = run


class Command:
    """Base class; see the module docstring."""

    name: ClassVar[str] = ""
    properties: ClassVar[tuple[Prop, ...]] = ()
    flags: ClassVar[tuple[Flag, ...]] = ()
    usage: ClassVar[str] = ""
    # Positional arguments of gcircusctl, in order: property names; a trailing "*name" takes the rest.
    positional: ClassVar[tuple[str, ...]] = ()
    min_args: ClassVar[int] = 0
    # A stop or quit: it goes ahead of queued commands and runs in a pool of its own (gcircus.control.operations).
    preempts: ClassVar[bool] = False

    # -- server side -----------------------------------------------------------------------------------------

    def validate(self, props: dict) -> dict:
        """Type-check the declared properties (extra ones are ignored, as Circus does); fill in defaults."""
        clean = {}
        for prop in self.properties:
            if prop.name not in props or props[prop.name] is None:
                if prop.required:
                    raise MessageError(f"message invalid {prop.name!r} is missing")
                clean[prop.name] = prop.default
                continue
            clean[prop.name] = _check(prop, props[prop.name])
        return clean

    def execute(self, arbiter, props: dict):
        """Carry out the command; return reply fields (dict/list/None) or a Deferred for a long operation."""
        raise NotImplementedError

    # -- client side -----------------------------------------------------------------------------------------

    def message(self, args: list[str], opts: dict) -> dict:
        """Build request properties from gcircusctl's positional arguments and flags."""
        if len(args) < self.min_args:
            raise ArgumentError("Invalid number of arguments.")
        props: dict = {}
        rest = list(args)
        for name in self.positional:
            if name.startswith("*"):
                if rest:
                    props[name[1:]] = rest
                rest = []
                break
            if rest:
                props[name] = rest.pop(0)
        if rest:
            raise ArgumentError("Invalid number of arguments.")
        for flag in self.flags:
            if flag.prop in opts and opts[flag.prop] is not None:
                props[flag.prop] = opts[flag.prop]
        return props

    def console(self, reply: dict) -> str:
        """What gcircusctl prints for a successful reply."""
        return "ok"

    @property
    def help(self) -> str:
        return (self.__doc__ or "").strip()

    @property
    def summary(self) -> str:
        return self.help.splitlines()[0] if self.help else ""


def _check(prop: Prop, value: Any) -> Any:
    kind = prop.kind
    if kind == "any":
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise MessageError(f"{prop.name!r} must be a string")
        return value
    if kind == "bool":
        return bool(value) if not isinstance(value, str) else value.lower() in ("1", "true", "yes", "on")
    if kind in ("int", "pid"):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MessageError(f"{prop.name!r} must be an integer")
        if prop.minimum is not None and value < prop.minimum:
            raise MessageError(f"{prop.name!r} must be at least {prop.minimum:g}")
        return value
    if kind == "number":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise MessageError(f"{prop.name!r} must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise MessageError(f"{prop.name!r} must be a number")
        if prop.minimum is not None and value < prop.minimum:
            raise MessageError(f"{prop.name!r} must be at least {prop.minimum:g}")
        return value
    if kind == "signal":
        return to_signum(value, 1 if prop.minimum is None else int(prop.minimum))
    if kind == "object":
        if not isinstance(value, dict):
            raise MessageError(f"{prop.name!r} must be an object")
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise MessageError(f"{prop.name!r} must be a list")
        return value
    if kind == "strlist":
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MessageError(f"{prop.name!r} must be a list of strings")
        return value
    raise AssertionError(f"unknown property kind {kind}")


def to_signum(value: Any, minimum: int = 1) -> int:
    """A signal number from a number or a name (`TERM`, `SIGTERM`, `sigterm`); MessageError `signal invalid`.

    A `minimum` of 0 also takes 0, the signal that only checks that a process exists.
    """
    if isinstance(value, bool):
        raise MessageError("signal invalid")
    if isinstance(value, str):
        text = value.strip().upper()
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            name = text if text.startswith("SIG") else "SIG" + text
            try:
                return int(signal_module.Signals[name])
            except KeyError:
                raise MessageError("signal invalid") from None
    if not isinstance(value, int) or value < minimum or \
            (value != 0 and value not in set(int(s) for s in signal_module.valid_signals())):
        raise MessageError("signal invalid")
    return value


def match_watchers(arbiter, name: str, mode: str | None = "glob") -> list:
    """The watchers `name` designates, in priority order: `simple` (exact), `glob` (default) or `regex`.

    Both the pattern and the names are lowercased first, as in Circus. No match is `program <name> not found`.
    """
    mode = (mode or "glob").lower()
    pattern = name.lower()
    watchers = arbiter.iter_watchers()
    if mode == "simple":
        found = [w for w in watchers if w.name.lower() == pattern]
    elif mode == "glob":
        regex = re.compile(fnmatch.translate(pattern))
        found = [w for w in watchers if regex.match(w.name.lower())]
    elif mode == "regex":
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise MessageError(f"invalid regex {name!r}: {exc}") from None
        found = [w for w in watchers if regex.match(w.name.lower())]
    else:
        raise MessageError(f"match must be simple, glob or regex, not {mode!r}")
    if not found:
        raise MessageError(f"program {name} not found")
    return found


def get_watcher(arbiter, name: str):
    """The watcher called `name` (case-insensitive) or MessageError `program <name> not found`."""
    try:
        return arbiter.get_watcher(name)
    except KeyError:
        raise MessageError(f"program {name} not found") from None
