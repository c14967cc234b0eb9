"""Watcher options given at run time (the `set` and `add` commands): which keys exist and how values convert.

`parse(key, value)` is pure: it checks the key and converts the value with the option table's converter, raising
`UnknownKey` or a ValueError that names the key and the value. It imports nothing and touches no file, so gcircusctl
uses it too (on the text of its command line) and the daemon uses it again on what arrives over the wire. Checks that
need the watcher or the system (hooks importable, users known, singleton limits) belong to `Watcher.check_options`.

Values are returned in the form the Watcher stores: hooks as `(dotted, ignore_failure)`, rlimits as integers,
stream options as strings.
"""
from __future__ import annotations

import re
import resource
from typing import Any

from gcircus import options as opts
from gcircus.errors import quote_value
from gcircus.streams.factory import builtin_stream_class

# Keys `set` accepts: the option table's live options, plus the rest of Circus's list (PROTOCOL 2.6) and the
# flapping.* family, which the table does not mark live (they apply from the next spawn, or to the back-off).
# Each one takes effect; none is silently ignored (see README).
SET_EXTRA_KEYS = frozenset({"env", "hooks", "stdout_stream", "stderr_stream", "copy_env", "singleton", "retry_in"})
SET_EXTRA_PREFIXES = ("rlimit_", "flapping.")

# Circus's action codes: what a change needs once applied.
MANAGE, RELOAD, NOTHING = 0, 1, -1
_RELOAD_KEYS = frozenset({"working_dir", "uid", "gid", "shell", "env", "cmd", "args", "max_age", "max_age_variance"})

_NON_NEGATIVE = frozenset({"numprocesses", "warmup_delay", "graceful_timeout", "max_age", "max_age_variance",
                           "retry_in", "hook_timeout"})


class UnknownKey(ValueError):
    """A key that is not an option (or, for `set`, not settable at run time)."""

    def __init__(self, key: str):
        super().__init__(f"unknown key {key!r}")
        self.key = key


class CircusReason(ValueError):
    """A bad value refused with Circus's own reason text, which `parse` passes on as it is (clients compare it)."""


def action_for(key: str) -> int:
    """What applying `key` requires: RELOAD (new processes), MANAGE (re-count processes) or NOTHING."""
    if key in _RELOAD_KEYS:
        return RELOAD
    if key == "graceful_timeout":
        return NOTHING
    return MANAGE


def is_settable(key: str) -> bool:
    """True if `set` accepts `key` (its value may still be invalid)."""
    if key in SET_EXTRA_KEYS or any(key.startswith(p) and len(key) > len(p) for p in SET_EXTRA_PREFIXES):
        return True
    option = opts.get_option(key, "watcher")
    return option is not None and option.live


def parse_set(key: str, value: Any) -> Any:
    """Convert one `set` value; UnknownKey for keys `set` does not know, ValueError naming key and value."""
    if not isinstance(key, str) or not is_settable(key):
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
        return opts.to_exec_str(value)
    if key in ("uid", "gid"):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("expected a user or group name or number")
        return value if isinstance(value, int) else opts.check_exec_text(value.strip())
    if key == "retry_in":
        return _non_negative(key, opts.to_float(value))
    if key.startswith("rlimit_") and len(key) > 7:
        if not hasattr(resource, "RLIMIT_" + key[7:].upper()):
            raise UnknownKey(key)
        if isinstance(value, (bool, float)):
            raise ValueError("expected an integer or null (unlimited)")
        return opts.to_rlimit(value)
    prefix, dot, sub = key.partition(".")
    if dot and prefix in ("stdout_stream", "stderr_stream"):
        if sub == "class":
            _check_stream_class(value)
        return None if value is None else opts.check_exec_text(value)
    if dot and prefix == "hooks":
        if sub not in opts.HOOK_NAMES:
            raise UnknownKey(key)
        return _hook(value)
    if dot and prefix == "flapping":
        option = opts.FLAPPING_OPTIONS.get(sub)
        if option is None:
            raise UnknownKey(key)
        return _non_negative(sub, option.convert(value)) if sub != "max_retry" else _max_retry(option.convert(value))
    option = opts.WATCHER_OPTIONS.get(key)
    if option is None or option.is_prefix:
        raise UnknownKey(key)
    if option.convert in (opts.to_int, opts.to_float) and isinstance(value, bool):
        raise ValueError("expected a number")
    converted = option.convert(value)
    if key == "max_retry":
        return _max_retry(converted)
    if key in _NON_NEGATIVE:
        return _non_negative(key, converted)
    return converted


def _non_negative(key: str, value):
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _max_retry(value: int) -> int:
    if value < -1:
        raise ValueError("must be -1 (forever) or more")
    return value


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


def _hook(value: Any) -> tuple[str, bool] | None:
    """`dotted[, ignore_failure]` or `[dotted, ignore_failure]`; empty or null removes the hook."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (list, tuple)) and len(value) in (1, 2):
        dotted, flag = value[0], (value[1] if len(value) == 2 else False)
    elif isinstance(value, str):
        dotted, comma, flag = value.partition(",")
        flag = flag.strip() if comma else False
    else:
        raise ValueError("expected 'dotted.path[, ignore_failure]'")
    return opts.to_dotted(dotted), opts.to_bool(flag)


def _hooks(value: Any) -> dict:
    if isinstance(value, str):  # gcircusctl's `before_start:a.b,after_start:c.d`
        value = parse_hooks_text(value)
    if not isinstance(value, dict):
        raise ValueError("expected an object of hook name: dotted path")
    hooks = {}
    for name, spec in value.items():
        if name not in opts.HOOK_NAMES:
            raise ValueError(f"unknown hook {name!r} (hooks are {', '.join(opts.HOOK_NAMES)})")
        hooks[name] = _hook(spec)
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
    _check_stream_class(value["class"])
    return {str(k): opts.check_exec_text(v) for k, v in value.items() if v is not None}


def _check_stream_class(value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"expected a stream class name or a dotted path, got {quote_value(value)}")
    if not re.search(r"\w[.:]\w", value):
        builtin_stream_class(value)  # the same check, and suggestion, as the config loader's


def _args(value: Any):
    if value is None:
        return value
    if isinstance(value, str):
        return opts.to_exec_str(value)
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                       for v in value):
        return [opts.to_exec_str(v) for v in value]
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
        prefix, dot, sub = key.partition(".")
        if key.startswith("rlimit_"):
            kwargs.setdefault("rlimits", {})[key[7:].lower()] = converted
        elif dot and prefix in ("stdout_stream", "stderr_stream"):
            if converted is not None:
                kwargs.setdefault(prefix, {})[sub] = converted
        elif dot and prefix == "hooks":
            if converted is not None:
                kwargs.setdefault("hooks", {})[sub] = converted
        elif dot and prefix == "flapping":
            kwargs.setdefault("flapping", {})[sub] = converted
            kwargs.setdefault("options", {})[key] = converted
        elif key == "retry_in":
            kwargs.setdefault("flapping", {})["retry_in"] = converted
        elif key == "hooks":
            kwargs.setdefault("hooks", {}).update({k: v for k, v in converted.items() if v is not None})
        elif key in ("stdout_stream", "stderr_stream"):
            kwargs.setdefault(key, {}).update(converted)
        else:
            kwargs[key] = converted
    return kwargs


def client_value(key: str, text: str) -> Any:
    """gcircusctl's conversion of one `set KEY VALUE` pair: typed for the wire, checked like the daemon does."""
    value = parse_set(key, text)
    if key.startswith("hooks."):
        return _hook_text(value)
    if key == "hooks":
        return {name: _hook_text(spec) for name, spec in value.items()}
    return value


def _hook_text(spec: tuple[str, bool] | None) -> str:
    """A hook as Circus's wire form `dotted[,true]` (also what circusd accepts)."""
    if not spec:
        return ""
    return f"{spec[0]},true" if spec[1] else spec[0]
