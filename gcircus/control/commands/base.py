"""What a command is, as both sides read it: its properties, gcircusctl's flags and arguments, its console output, its
help, and how gcircusctl runs it. What the daemon does for it lives in gcircus.control.executors, by name.

A command's name is its class's name in lowercase; its docstring is its help text (`gcircusctl help NAME`), whose
first line is the summary. Adding a command means adding one class to one module of this package, decorated with
`@register`, and its executor. These modules import only the standard library and light gcircus modules:
gcircusctl loads every description at start-up.
"""
from __future__ import annotations

import signal as signal_module
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

from gcircus.roles import DEFINE, OPERATE, READ
from gcircus.wire.errors import ArgumentError, MessageError

# The roles a command may need (gcircus.roles): each command class declares one as `role`.
COMMAND_ROLES = (READ, OPERATE, DEFINE)

COMMANDS: dict[str, Command] = {}


def register(cls: type[Command]) -> type[Command]:
    """Add a command class to the table: one instance, keyed by the class's name in lowercase.

    gcircusctl's positional arguments are, unless declared, the properties no flag sets, in order (a trailing list
    takes the rest); each required property takes one argument at least. A switch flag declares its property too (a
    bool, true when the switch is given) unless `properties` does.
    """
    cls.name = cls.__name__.lower()
    if cls.role not in COMMAND_ROLES:
        raise TypeError(f"command {cls.name!r} declares no role (role = one of {', '.join(COMMAND_ROLES)})")
    cls.min_args = sum(prop.required for prop in cls.properties)
    flagged = {flag.prop for flag in cls.flags}
    cls.positional = cls.positional or tuple(("*" if prop.kind == "strlist" else "") + prop.name
                                             for prop in cls.properties if prop.name not in flagged)
    declared = {prop.name for prop in cls.properties}
    cls.properties += tuple(Prop(flag.prop, "bool", default=not flag.value) for flag in cls.flags
                            if not flag.takes_value and flag.prop not in declared)
    COMMANDS[cls.name] = cls()
    return cls


def get_command(name: str) -> Command | None:
    return COMMANDS.get(name.lower())


class Prop(NamedTuple):
    """One property of a request: its JSON type, whether it is required, and its default."""

    name: str
    kind: str = "str"  # str, int, number, bool, object, list, signal, pid, any, strlist
    required: bool = False
    default: Any = None
    minimum: float | None = None


class Flag(NamedTuple):
    """A gcircusctl option of a command: `--NAME` (a switch) or `--NAME VALUE`, mapped onto a property."""

    name: str
    prop: str
    takes_value: bool = False
    value: Any = True
    help: str = ""
    convert: Callable[[str], Any] = str


WAITING = Flag("waiting", "waiting", help="reply only once the operation has finished")


class Command:
    """Base class; see the module docstring."""

    name: ClassVar[str] = ""
    properties: ClassVar[tuple[Prop, ...]] = ()
    flags: ClassVar[tuple[Flag, ...]] = ()
    # Positional arguments of gcircusctl, in order: property names; a trailing "*name" takes the rest (see register).
    positional: ClassVar[tuple[str, ...]] = ()
    # Those of them gcircusctl turns into integers (`nb must be an integer, not 'x'`).
    int_args: ClassVar[tuple[str, ...]] = ()
    min_args: ClassVar[int] = 0  # set by register
    # A stop or quit: it goes ahead of queued commands and runs in a pool of its own (gcircus.control.operations).
    preempts: ClassVar[bool] = False
    # Whether the shell completes this command's arguments with the daemon's watcher names.
    completes_watchers: ClassVar[bool] = True
    # The role a peer needs to run it (gcircus.roles; README, Securing the control channel); declared by every command.
    role: ClassVar[str] = ""

    def role_for(self, props: dict) -> str:
        """The role these validated properties need: `role`, unless a command's needs depend on what it is asked."""
        return self.role

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

    def message(self, args: list[str], opts: dict) -> dict:
        """Build request properties from gcircusctl's positional arguments and flags (a switch only when given)."""
        if len(args) < self.min_args:
            raise ArgumentError("Invalid number of arguments.")
        props = self.arguments(args)
        props.update((flag.prop, opts[flag.prop]) for flag in self.flags if opts.get(flag.prop) is not None
                     and (flag.takes_value or opts[flag.prop] == flag.value))
        return props

    def arguments(self, args: list[str]) -> dict:
        """The properties of gcircusctl's positional arguments, `min_args` of them at least."""
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
        for name in self.int_args:
            if name in props:
                props[name] = int_arg(props[name], name)
        return props

    def run_client(self, session, props: dict) -> int:
        """How gcircusctl runs the command, given its gcircusctl Session: send it, print the reply, return the exit
        code. A command gcircusctl carries out itself (listen, help) says so by overriding this."""
        return session.show_reply(self, session.client.call(self.name, **props))

    def console(self, reply: dict) -> str:
        """What gcircusctl prints for a successful reply."""
        return "ok"

    @property
    def help(self) -> str:
        return (self.__doc__ or "").strip()

    @property
    def summary(self) -> str:
        return self.help.splitlines()[0] if self.help else ""


def int_arg(text: str, what: str) -> int:
    """A command-line argument as an integer; ArgumentError naming `what` otherwise."""
    try:
        return int(text)
    except ValueError:
        raise ArgumentError(f"{what} must be an integer, not {text!r}") from None


_PLAIN_KINDS = {"str": (str, "a string"), "object": (dict, "an object"), "list": (list, "a list")}


def _check(prop: Prop, value: Any) -> Any:
    kind = prop.kind
    if kind == "any":
        return value
    if kind in _PLAIN_KINDS:
        expected, what = _PLAIN_KINDS[kind]
        if not isinstance(value, expected):
            raise MessageError(f"{prop.name!r} must be {what}")
        return value
    if kind == "bool":
        return bool(value) if not isinstance(value, str) else value.lower() in ("1", "true", "yes", "on")
    if kind == "signal":
        return to_signum(value, 1 if prop.minimum is None else int(prop.minimum))
    if kind == "strlist":
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MessageError(f"{prop.name!r} must be a list of strings")
        return value
    if kind in ("int", "pid"):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise MessageError(f"{prop.name!r} must be an integer")
    elif kind == "number":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise MessageError(f"{prop.name!r} must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise MessageError(f"{prop.name!r} must be a number")
    else:
        raise AssertionError(f"unknown property kind {kind}")
    if prop.minimum is not None and value < prop.minimum:
        raise MessageError(f"{prop.name!r} must be at least {prop.minimum:g}")
    return value


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
