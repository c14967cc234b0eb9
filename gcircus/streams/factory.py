"""Build a watcher's stdout/stderr sink from its `stdout_stream.*` / `stderr_stream.*` options (Circus's rules).

`class` wins (a class name of gcircus.streams.sinks, or a dotted path `mod.Class` / `mod:Class`), then `stream` (a
ready callable, for library users), then `filename` (a FileStream). An empty conf means no sink: the child inherits
gcircusd's own stdout/stderr. The conf is never modified, so a later `set stdout_stream.X` rebuilds the same class.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable

from gcircus.hooks import resolve_name
from gcircus.options import stream_class_name
from gcircus.streams.sinks import STREAM_CLASSES, PrefixedStdoutStream, StdoutStream, output_fd_option

_PER_PROCESS = re.compile(r"\$\(circus\.wid\)|\(\(circus\.wid\)\)", re.IGNORECASE)
# Circus's own import paths for its classes, used by configs written for Circus: they mean our classes.
_CIRCUS_MODULES = ("circus.stream", "circus.stream.file_stream")


def get_stream(conf: dict | None, watcher_name: str) -> Callable | None:
    """The sink for one watcher stream, or None when the stream is not configured (inherit gcircusd's fd)."""
    plan = _plan(conf, watcher_name)
    if plan is None:
        return None
    cls, options = plan
    return cls(**options) if options is not None else cls


def check_stream(conf: dict | None, watcher_name: str) -> None:
    """Raise ValueError if get_stream would reject `conf`, without opening any file (config load and `set`)."""
    plan = _plan(conf, watcher_name)
    if plan is not None and plan[1] is not None:
        check_options = getattr(plan[0], "check_options", None)
        if plan[0] in STREAM_CLASSES.values() and check_options is not None:
            check_options(**plan[1])


def output_fd(conf: dict | None, watcher_name: str) -> int | None:
    """gcircusd's own descriptor (1 or 2) that the sink of `conf` writes to, or None for any other sink."""
    plan = _plan(conf, watcher_name)
    if plan is None or not isinstance(plan[0], type) or not issubclass(plan[0], StdoutStream):
        return None
    if plan[0] is PrefixedStdoutStream:
        return output_fd_option((plan[1] or {}).get("fd", 1))
    return plan[0].fd


def prefixed_stdout(watcher_name: str, fd: int = 1) -> PrefixedStdoutStream:
    """The `name[wid] | line` sink on gcircusd's stdout (fd 1) or stderr (fd 2), for unconfigured streams."""
    return PrefixedStdoutStream(watcher_name, fd=fd)


def _plan(conf: dict | None, watcher_name: str) -> tuple[Callable, dict | None] | None:
    """(class, options) to instantiate, (ready callable, None), or None for no sink; ValueError if invalid."""
    if not conf:
        return None
    if "class" in conf:
        cls = stream_class(conf["class"])
        options = {key: value for key, value in conf.items() if key != "class"}
        if cls is PrefixedStdoutStream or getattr(cls, "takes_watcher_name", False):
            options.setdefault("watcher_name", watcher_name)
        _check_signature(cls, options)
        return cls, options
    if "stream" in conf:
        stream = conf["stream"]
        if not callable(stream):
            raise ValueError(f"stream configuration invalid: 'stream' must be a callable, got {stream!r}")
        return stream, None
    if "filename" in conf:
        return STREAM_CLASSES["FileStream"], dict(conf)
    raise ValueError(f"stream configuration invalid: expected 'class', 'stream' or 'filename' among the options, "
                     f"got {', '.join(sorted(map(str, conf)))}")


def stream_class(name) -> type | Callable:
    """Resolve a `class` option: a bare gcircus class name (any case), Circus's path to it, or any dotted path."""
    if not isinstance(name, str):
        if callable(name):
            return name  # library users may pass the class itself
        raise ValueError(f"stream configuration invalid: class must be a name, got {name!r}")
    text = name.strip()
    module, _, attribute = text.replace(":", ".").rpartition(".")
    if module in _CIRCUS_MODULES and attribute in STREAM_CLASSES:
        return STREAM_CLASSES[attribute]
    if "." in text or ":" in text:
        try:
            return resolve_name(text)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"stream configuration invalid: cannot import stream class {text!r} ({exc})") from exc
    return STREAM_CLASSES[stream_class_name(text)]  # in any case; UnknownStreamClass naming the closest otherwise


def needs_per_process(conf: dict | None) -> bool:
    """Whether an option (normally `filename`) contains `$(circus.wid)`, so each process needs a sink of its own."""
    return any(isinstance(value, str) and _PER_PROCESS.search(value) for value in (conf or {}).values())


def reopen_sink(sink) -> None:
    """Reopen a sink's file if it has one (third-party sinks may have no `reopen`)."""
    reopen = getattr(sink, "reopen", None)
    if callable(reopen):
        reopen()


def close_sink(sink) -> None:
    """Close a sink if it can be closed (third-party sinks may have no `close`)."""
    close = getattr(sink, "close", None)
    if callable(close):
        close()


def _check_signature(cls: Callable, options: dict) -> None:
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise ValueError(f"stream configuration invalid: {getattr(cls, '__name__', cls)} does not accept these "
                         f"options ({exc})") from None
    except ValueError:
        pass  # no signature to inspect (a builtin): the call itself decides
