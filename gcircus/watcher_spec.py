"""A watcher's configuration as one frozen value, with one field per option of the table in gcircus.options.

The config loader, the `add` command and Circus's `Watcher(name, cmd, **kw)` constructor all produce a
WatcherSpec, so a watcher is built one way whatever asked for it; `set` derives the next spec with `changed`, and
reloadconfig compares two specs field by field. The fields are generated from the table, so a new option is one
row there and nothing here.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from gcircus import options as opts
from gcircus.command_line import CommandLineError, check_command_line
from gcircus.errors import InvalidValue, quote_value
from gcircus.identity import IdentityError, resolve_user

# Where the option families' members fold (see opts.FAMILIES), then the configured environment and the free-form
# options Circus keeps for plugins (an unknown key that is no typo of an option).
GROUPS = ("rlimits", "stdout_stream", "stderr_stream", "hooks", "flapping", "env", "options")
PLAIN = tuple(name for name, option in opts.WATCHER_OPTIONS.items() if not option.is_prefix)
# Circus's Watcher takes these positionally, in this order, after name and cmd.
CIRCUS_POSITIONAL = ("args", "numprocesses", "warmup_delay", "working_dir", "shell", "shell_args", "uid",
                     "max_retry", "gid", "send_hup", "stop_signal", "stop_children", "env", "graceful_timeout",
                     "prereload_fn", "rlimits", "executable", "stdout_stream", "stderr_stream", "priority", "loop",
                     "singleton", "use_sockets", "copy_env", "copy_path", "max_age", "max_age_variance", "hooks",
                     "respawn", "autostart", "on_demand", "virtualenv", "stdin_socket", "close_child_stdin",
                     "close_child_stdout", "close_child_stderr", "virtualenv_py_ver")
# Circus constructor arguments that are not options: accepted and not kept.
IGNORED_KWARGS = frozenset({"prereload_fn", "loop", "__name__"})
TYPO_CUTOFF = 0.85  # an unknown keyword this close to an option is a typo, not a free-form option


class _SpecMethods(Mapping):
    """Behaviour of the generated WatcherSpec class.

    A spec reads as a mapping too (`spec["cmd"]`, `Watcher(**spec)`), as the watcher dicts of Circus's config do.
    """

    def __getitem__(self, key: str) -> Any:
        if key not in FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(FIELDS)

    def __len__(self) -> int:
        return len(FIELDS)

    if TYPE_CHECKING:  # the fields are generated from the table at import: to a type checker each one is Any
        def __init__(self, **fields: Any) -> None: ...
        def __getattr__(self, name: str) -> Any: ...

    def replace(self, **values: Any) -> WatcherSpec:
        """A copy with some fields changed (the spec itself is frozen)."""
        return dataclasses.replace(self, **values)  # type: ignore[type-var]  # a generated dataclass

    def changed(self, key: str, value: Any) -> WatcherSpec:
        """The spec with one `set` change applied (a converted value; None removes a hook or stream member)."""
        groups = {group: dict(getattr(self, group)) for group in GROUPS}
        return self.replace(**groups) if opts.fold(groups, key, value) else self.replace(**{key: value})

    def problem(self, identity: bool = True) -> tuple[str, str] | None:
        """(option, reason) if the spec cannot run: options in conflict, an unknown user (unless `identity` is
        false: the user of a running watcher is not looked up again), a command line that cannot be split."""
        broken = opts.watcher_rule_problem({key: getattr(self, key) for key in ("singleton", "numprocesses",
                                                                                "copy_env", "copy_path", "virtualenv")})
        if broken is not None:
            return broken
        try:
            if identity:
                resolve_user(self.uid, self.gid)
            check_command_line(self.cmd, self.args, self.shell, self.shell_args)
        except (IdentityError, CommandLineError) as exc:
            return exc.option, str(exc)
        return None


if TYPE_CHECKING:
    WatcherSpec = _SpecMethods
else:
    WatcherSpec = dataclasses.make_dataclass(
        "WatcherSpec",
        [("name", str)]
        + [(name, Any, dataclasses.field(default=opts.WATCHER_OPTIONS[name].default)) for name in PLAIN]
        + [(group, dict, dataclasses.field(default_factory=dict)) for group in GROUPS],
        bases=(_SpecMethods,), frozen=True, eq=False)  # equality is Mapping's: a spec equals an equal dict
    WatcherSpec.__module__ = __name__
FIELDS = tuple(field.name for field in dataclasses.fields(WatcherSpec))  # type: ignore[arg-type]
WatcherSpec.__doc__ = "A watcher's options, frozen: one field per plain option, plus the family groups."


def from_kwargs(name: str, cmd: str, positional: tuple = (), kwargs: dict | None = None) -> WatcherSpec:
    """The spec for Circus's `Watcher(name, cmd, *args, **kwargs)`; ValueError naming the watcher if it is wrong.

    Values are Python values (not ini text): they are checked against the table's minimums and rules, not converted.
    A keyword that is no option is kept as a free-form option (plugins read them), unless it looks like a typo of an
    option, which is refused with the option it probably meant.
    """
    if len(positional) > len(CIRCUS_POSITIONAL):
        raise TypeError(f"Watcher takes at most {len(CIRCUS_POSITIONAL) + 2} positional arguments")
    given = dict(zip(CIRCUS_POSITIONAL, positional))
    for key, value in (kwargs or {}).items():
        if key in given:
            raise TypeError(f"Watcher got multiple values for argument {key!r}")
        given[key] = value
    try:
        opts.check_name(name)
    except InvalidValue as exc:
        raise ValueError(f"invalid watcher name {quote_value(name)}: {exc.reason}") from None
    values: dict[str, Any] = {"name": name, "cmd": cmd, "options": dict(given.pop("options", None) or {})}
    for key, value in given.items():
        _take(values, name, key, value)
    spec = WatcherSpec(**values)
    problem = spec.problem()
    if problem is not None:
        raise ValueError(f"watcher {name!r}: {problem[1]}")
    return spec


def _take(values: dict, name: str, key: str, value: Any) -> None:
    """Put one constructor keyword into `values`: an option, a group, or a free-form option."""
    if key in IGNORED_KWARGS:
        return
    if key in GROUPS:
        values[key] = dict(value or {})
        return
    option = opts.WATCHER_OPTIONS.get(key)
    if option is None or option.is_prefix:
        meant = None if "." in key else opts.suggest(key, "watcher", TYPO_CUTOFF)
        if meant is not None:
            raise ValueError(f"watcher {name!r}: unknown option {key!r} (did you mean {meant!r}?)")
        values["options"][key] = value
        return
    coerce = _COERCE.get(option.convert)
    try:
        if coerce is not None:
            value = coerce(value)
        values[key] = option.check_minimum(value)
    except InvalidValue as exc:
        raise ValueError(f"watcher {name!r}: {key} {exc.reason} (got {value!r})") from None


# Numbers given as other types (a string from a dict, a Signals member) are coerced, as Circus's constructor does;
# gcircus's own structured options are taken in their ini form too (depends_on="db cache", ready="tcp:...").
_COERCE = {opts.to_int: lambda value: int(value or 0), opts.to_float: lambda value: float(value or 0),
           opts.to_signal: lambda value: int(value or 0), opts.to_names: opts.to_names,
           opts.to_ready_check: opts.to_ready_check, opts.to_health_check: opts.to_health_check}
