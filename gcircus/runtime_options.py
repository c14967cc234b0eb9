"""Watcher options given at run time (the `set` and `add` commands): which keys exist and how values convert.

`parse(key, value)` is pure: it checks the key and converts the value with the option table's converter, raising
`UnknownKey` or a ValueError that names the key and the value. It imports nothing and touches no file, so gcircusctl
uses it too (on the text of its command line) and the daemon uses it again on what arrives over the wire. Checks that
need the watcher or the system (hooks importable, users known, singleton limits) belong to `Watcher.check_options`.

Values are returned in the form the Watcher stores: hooks as `(dotted, ignore_failure)`, rlimits as integers,
stream options as strings.
"""
from __future__ import annotations

from typing import Any

from gcircus import options as opts
from gcircus.errors import quote_value


class UnknownKey(ValueError):
    """A key that is not an option (or, for `set`, not settable at run time)."""

    def __init__(self, key: str):
        super().__init__(f"unknown key {key!r}")
        self.key = key


class CircusReason(ValueError):
    """A bad value refused with Circus's own reason text, which `parse` passes on as it is (clients compare it)."""


def action_for(key: str) -> str | None:
    """What applying `key` requires (the option table's on_change): RESPAWN, RECOUNT or NOTHING."""
    option = opts.runtime_option(key)
    return option.on_change if option is not None else None


def is_settable(key: str) -> bool:
    """True if `set` accepts `key` (its value may still be invalid)."""
    return isinstance(key, str) and opts.runtime_option(key) is not None


def parse_set(key: str, value: Any) -> Any:
    """Convert one `set` value; UnknownKey for keys `set` does not know, ValueError naming key and value."""
    if not is_settable(key):
        raise UnknownKey(str(key))
    return parse(key, value)


def parse(key: str, value: Any) -> Any:
    """Convert one watcher option value (any option of the table, its families and env/hooks/streams objects)."""
    try:
        return _convert(key, value)
    except (UnknownKey, CircusReason):
        raise
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid value {quote_value(value)} for {key!r}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or str(exc)


def _convert(key: str, value: Any) -> Any:
    if key == "env":
        return _env(value)
    if key == "hooks":
        return _hooks(value)
    if key in ("stdout_stream", "stderr_stream"):
        return _stream(value)
    if key == "args":
        return _args(value)
    if key == "cmd":
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected a non-empty command line")
        return opts.check_exec_text(value)
    if key in ("uid", "gid"):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("expected a user or group name or number")
        return value if isinstance(value, int) else opts.check_exec_text(value.strip())
    family = opts.family_member(key)
    if family is not None:
        if opts.member_problem(*family):
            raise UnknownKey(key)
        return opts.parse_member(*family, value)
    option = opts.WATCHER_OPTIONS.get(key) or opts.RUNTIME_OBJECT_OPTIONS.get(key)
    if option is None or option.is_prefix:
        raise UnknownKey(key)
    if option.convert in (opts.to_int, opts.to_float) and isinstance(value, bool):
        raise ValueError("expected a number")
    return option.parse(value)


def _env(value: Any) -> dict:
    if isinstance(value, str):  # gcircusctl's `K=V,K2=V2`
        return parse_env_text(value)
    if not isinstance(value, dict):
        raise ValueError("expected an object of NAME: value")
    env = {}
    for name, item in value.items():
        if not isinstance(item, str):  # refused as Circus does, not stringified: 1 and true are not "1" and "True"
            raise CircusReason(f"{quote_value(name)} isn't a string")
        env[opts.check_env_name(name)] = opts.check_exec_text(item)
    return env


def parse_env_text(text: str) -> dict:
    """`K=V,K2=V2` (gcircusctl's notation) into a dict; an empty text is an empty environment."""
    env = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, val = item.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"expected NAME=value, got {quote_value(item)}")
        env[opts.check_env_name(name.strip())] = opts.check_exec_text(val)
    return env


def _hooks(value: Any) -> dict:
    if isinstance(value, str):  # gcircusctl's `before_start:a.b,after_start:c.d`
        value = parse_hooks_text(value)
    if not isinstance(value, dict):
        raise ValueError("expected an object of hook name: dotted path")
    hooks = {}
    for name, spec in value.items():
        if problem := opts.member_problem("hooks", name):
            raise ValueError(problem)
        hooks[name] = opts.to_hook(spec)
    return hooks


def parse_hooks_text(text: str) -> dict:
    """`before_start:a.b,after_start:c.d` into {hook: dotted}."""
    hooks = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, colon, dotted = item.partition(":")
        if not colon or not dotted.strip():
            raise ValueError(f"expected hook:dotted.path, got {item!r}")
        hooks[name.strip()] = dotted.strip()
    return hooks


def _stream(value: Any) -> dict:
    if not isinstance(value, dict) or "class" not in value:
        raise ValueError("expected an object with a 'class' key")
    opts.check_stream_class(value["class"])
    return {str(k): opts.check_exec_text(v) for k, v in value.items() if v is not None}


def _args(value: Any):
    if value is None:
        return value
    if isinstance(value, str):
        return opts.check_exec_text(value)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                       for v in value):
        return [opts.check_exec_text(v) for v in value]
    raise ValueError("expected a string or a list of strings")


def watcher_kwargs(options: dict) -> dict:
    """Turn `add`'s options object into Watcher keyword arguments (families folded into their dicts).

    Every key goes through `parse`, so an unknown key or a bad value raises before anything is built.
    """
    kwargs: dict = {}
    for key, value in options.items():
        if not isinstance(key, str):
            raise UnknownKey(str(key))
        converted = parse(key, value)
        if opts.fold(kwargs, key, converted):
            continue
        if key in ("stdout_stream", "stderr_stream"):
            kwargs.setdefault(key, {}).update(converted)
        else:
            kwargs[key] = converted
    return kwargs


def client_value(key: str, text: str) -> Any:
    """gcircusctl's conversion of one `set KEY VALUE` pair: typed for the wire, checked like the daemon does."""
    value = parse_set(key, text)
    if key == "hooks":
        return {name: _hook_text(spec) for name, spec in value.items()}
    family = opts.family_member(key)
    return _hook_text(value) if family is not None and family[0] == "hooks" else value


def _hook_text(spec: tuple[str, bool] | None) -> str:
    """A hook as Circus's wire form `dotted[,true]` (also what circusd accepts)."""
    if not spec:
        return ""
    return f"{spec[0]},true" if spec[1] else spec[0]
