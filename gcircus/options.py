"""The option table: every configuration option, declared once.

The config loader, the ``set``/``get``/``options`` commands, error messages
and the README reference all read :data:`OPTIONS`, so an option's name, type,
default and run-time settability cannot drift apart between them.

Converters take the raw ini string and return a typed value, or raise
``ValueError`` with a message naming the bad value.
"""

from __future__ import annotations

import difflib
import os
import re
import resource
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gcircus.checks.spec import parse_check
from gcircus.errors import InvalidValue, quote_value
from gcircus.roles import ROLES
from gcircus.suggest import closest

SECTIONS = ("circus", "watcher", "socket", "plugin", "flapping", "http", "access")

HOOK_NAMES = ("before_start", "after_start", "before_spawn", "after_spawn", "before_stop", "after_stop",
              "before_signal", "after_signal", "before_reap", "after_reap", "extended_stats")
# Failures of these hooks never change what the watcher does (Circus's default ignore list).
HOOKS_IGNORED_BY_DEFAULT = frozenset({"before_stop", "after_stop", "before_signal", "after_signal", "extended_stats"})

# The stream classes gcircus ships (gcircus.streams.sinks), by the name a `class` option gives them in any case.
STREAM_CLASS_NAMES = ("FileStream", "WatchedFileStream", "TimedRotatingFileStream", "QueueStream", "StdoutStream",
                      "FancyStdoutStream", "PrefixedStdoutStream", "JournalStream")


class UnknownStreamClass(ValueError):
    """A bare `class` name that is none of gcircus's stream classes; `suggestion` is the closest one, if any."""

    def __init__(self, name: str, suggestion: str | None):
        hint = f"did you mean {suggestion!r}? " if suggestion else ""
        super().__init__(f"stream configuration invalid: unknown stream class {name!r} ({hint}valid classes: "
                         f"{', '.join(STREAM_CLASS_NAMES)}, or a dotted path to a class)")
        self.suggestion = suggestion


def stream_class_name(name: str) -> str:
    """The shipped stream class `name` means, in any case; UnknownStreamClass naming the closest one otherwise."""
    by_lower = {known.lower(): known for known in STREAM_CLASS_NAMES}
    meant = by_lower.get(name.lower()) or by_lower.get(closest(name.lower(), list(by_lower)) or "")
    if meant is not None and meant.lower() == name.lower():
        return meant
    raise UnknownStreamClass(name, meant)


def check_stream_class(value: Any) -> None:
    """ValueError unless `value` is a dotted path (checked when the stream is built) or a shipped class name.

    The config loader and `set` both check a `class` option with this, so they accept and suggest the same.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected a stream class name or a dotted path, got {value!r}")
    if not re.search(r"\w[.:]\w", value):
        stream_class_name(value)


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _typed(type_name: str) -> Callable:
    """Tag a converter with the type name shown in docs and errors."""
    def tag(func: Callable) -> Callable:
        setattr(func, "type_name", type_name)  # noqa: B010 - a function attribute, read with getattr
        return func
    return tag


@_typed("bool")
def to_bool(value: Any) -> bool:
    """true/false, yes/no, on/off, 1/0 in any case; the empty string is invalid."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidValue("expected a boolean (true/false, yes/no, on/off, 1/0)", value)


@_typed("int")
def to_int(value: Any) -> int:
    """A base-10 integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip(), 10)
    except ValueError:
        raise InvalidValue("expected an integer", value) from None


@_typed("float")
def to_float(value: Any) -> float:
    """A number; ``0.5`` is accepted where Circus only took integers."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise InvalidValue("expected a number", value) from None


@_typed("float")
def to_positive_float(value: Any) -> float:
    """A number greater than zero (an interval)."""
    number = to_float(value)
    if not number > 0:
        raise InvalidValue("expected a number greater than 0", value)
    return number


@_typed("float")
def to_optional_float(value: Any) -> float | None:
    """A number; empty or ``none`` means unset (None)."""
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    return to_float(value)


@_typed("str")
def to_str(value: Any) -> str:
    """Any text, kept as written."""
    return str(value)


@_typed("str")
def to_optional_str(value: Any) -> str | None:
    """Any text; an empty value means unset (None)."""
    text = str(value)
    return text if text else None


@_typed("names")
def to_names(value: Any) -> tuple[str, ...]:
    """Whitespace- or comma-separated names (a list is taken as is); empty means none."""
    items = value if isinstance(value, (list, tuple)) else re.split(r"[\s,]+", str(value))
    return tuple(str(item).strip() for item in items if str(item).strip())


@_typed("str")
def check_exec_text(value: Any) -> str:
    """Text that ends up in a child's argv, environment or a path (command line, arguments): refused here, not at exec.

    A NUL byte, or a lone surrogate that has no byte form (a JSON "\\ud800" escape), passes every other check
    and then makes the spawn itself fail, when the old processes are already being replaced.
    """
    text = str(value)
    if "\x00" in text:
        raise InvalidValue("contains a NUL byte, which cannot be passed to a program", value)
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        raise InvalidValue("contains characters with no byte form (lone surrogates)", value) from None
    return text


@_typed("str")
def to_optional_exec_str(value: Any) -> str | None:
    """Like check_exec_text; an empty value means unset (None)."""
    text = str(value)
    return check_exec_text(text) if text else None


def check_env_name(name: Any) -> str:
    """An environment variable name exec accepts: not empty, no `=`, no NUL byte."""
    text = check_exec_text(name)
    if not text or "=" in text:
        raise InvalidValue("is not a valid environment variable name (empty, or contains '=')", name)
    return text


MAX_NAME_LENGTH = 255  # characters of a watcher name (it is in every event topic, reply and log line about it)


def check_name(value: Any) -> str:
    """A watcher name: it goes into every event topic and reply as UTF-8, and into logs and `list` output.

    Lone surrogates (a JSON "\\udcff" escape) cannot be encoded, so every event of such a watcher would fail to
    publish; control characters would garble logs and terminals. Any printable text is accepted, as Circus does.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue("a name must be non-empty text", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue("a name must be valid text (it holds a lone surrogate, which UTF-8 cannot encode)",
                           value) from None
    if not value.isprintable():
        raise InvalidValue("a name must be printable (no control characters)", value)
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidValue(f"a name must be at most {MAX_NAME_LENGTH} characters long", value)
    return value


@_typed("signal")
def to_signal(value: Any) -> int:
    """A signal name (``TERM``, ``SIGTERM``, ``sigterm``) or number."""
    text = str(value).strip().upper()
    if isinstance(value, int) and not isinstance(value, bool):
        number: int | None = value
    elif text.isdigit():
        number = int(text)
    else:
        name = text if text.startswith("SIG") else "SIG" + text
        member = getattr(signal.Signals, name, None) if name.isidentifier() else None
        number = None if member is None else int(member)  # every member is one of signal.valid_signals()
    if number is None or number not in signal.valid_signals():
        raise InvalidValue("unknown signal", value, f"unknown signal {value!r}")
    return number


@_typed("octal")
def to_octal(value: Any) -> int | None:
    """An octal number such as ``022``; empty means unset (None)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        number = int(text, 8)
    except ValueError:
        raise InvalidValue("expected an octal number such as 022", value) from None
    if not 0 <= number <= 0o7777:
        raise InvalidValue("octal mode out of range 0..7777", value)
    return number


@_typed("rlimit")
def to_rlimit(value: Any) -> int:
    """An integer limit; empty means unlimited (``resource.RLIM_INFINITY``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return resource.RLIM_INFINITY
    return to_int(value)


@_typed("cgroup root")
def to_cgroup_root(value: Any) -> str | None:
    """`auto`, or an existing writable cgroup v2 directory (absolute path); empty or `off` means no cgroups."""
    text = str(value).strip() if value is not None else ""
    if text.lower() in ("", "off", "none", "false"):
        return None
    if text.lower() == "auto":
        return "auto"
    if not os.path.isabs(text):
        raise InvalidValue("expected auto or an absolute path", value)
    if not os.path.isfile(os.path.join(text, "cgroup.procs")):
        raise InvalidValue("expected auto or a cgroup v2 directory (no cgroup.procs there)", value)
    if not (os.access(text, os.W_OK | os.X_OK) and os.access(os.path.join(text, "cgroup.procs"), os.W_OK)):
        raise InvalidValue("this cgroup v2 directory is not writable by gcircusd", value)
    return text


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


@_typed("bytes")
def to_memory_max(value: Any) -> str | None:
    """cgroup v2 memory.max: `max`, or bytes with an optional K, M, G or T suffix (powers of 1024); empty: unset."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    if text.lower() == "max":
        return "max"
    match = re.fullmatch(r"(\d+)\s*([kmgt]?)b?", text, re.IGNORECASE)
    if not match:
        raise InvalidValue("expected max or a size in bytes such as 512M or 2G", value)
    return str(int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


@_typed("int or max")
def to_pids_max(value: Any) -> str | None:
    """cgroup v2 pids.max: `max` or a number of processes (at least 1); empty: unset."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    if text.lower() == "max":
        return "max"
    if not text.isdigit() or int(text) < 1:
        raise InvalidValue("expected max or a number of processes (1 or more)", value)
    return str(int(text))


@_typed("int")
def to_cpu_weight(value: Any) -> str | None:
    """cgroup v2 cpu.weight: 1 to 10000 (100 is the kernel's default); empty: unset."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 10000:
        raise InvalidValue("expected a weight from 1 to 10000", value)
    return str(int(text))


_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*([.:][A-Za-z_]\w*)$")


@_typed("dotted")
def to_dotted(value: Any) -> str:
    """A Python object path, ``pkg.mod.name`` or ``pkg.mod:name``; syntax only, not imported."""
    text = str(value).strip()
    if not _DOTTED.match(text):
        raise InvalidValue("expected a dotted path such as 'package.module.name'", value)
    return text


@_typed("str")
def to_hook(value: Any) -> tuple[str, bool] | None:
    """A hook, `dotted[, ignore_failure]` or `[dotted, ignore_failure]`, as (dotted, ignore_failure); empty or null
    means no hook (None). The config loader, `set`/`add` and gcircusctl all read a hook with this."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (list, tuple)) and len(value) in (1, 2):
        dotted, flag = value[0], (value[1] if len(value) == 2 else False)
    elif isinstance(value, str):
        dotted, comma, flag = value.partition(",")
        flag = flag.strip() if comma else False
    else:
        raise ValueError("expected 'dotted.path[, ignore_failure]'")
    return to_dotted(dotted), to_bool(flag)


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@_typed("size")
def to_size(value: Any) -> int:
    """A byte count, optionally with a K/M/G/T suffix (powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value).strip())
    if not match:
        raise InvalidValue("expected a size such as 10M", value)
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


@_typed("port")
def to_port(value: Any) -> int:
    """A TCP/UDP port number, 0 (ephemeral) to 65535."""
    number = to_int(value)
    if not 0 <= number <= 65535:
        raise InvalidValue("port out of range 0..65535", value)
    return number


UNIX_BIND_PREFIX = "unix:"


def split_http_bind(value: str) -> tuple[str, int] | str:
    """An [http] bind as (host, port), or the socket path of `unix:PATH`; InvalidValue saying the expected form."""
    text = str(value).strip()
    if text.startswith(UNIX_BIND_PREFIX):
        path = text[len(UNIX_BIND_PREFIX):]
        if not path:
            raise InvalidValue("unix: needs a socket path (unix:/run/gcircus/http.sock)", value)
        return path
    host, colon, port = text.rpartition(":")
    if not colon or not port:
        raise InvalidValue("expected HOST:PORT (127.0.0.1:9102) or unix:PATH", value)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1]:9102
    return host, to_port(port)


@_typed("bind")
def to_http_bind(value: Any) -> str:
    """Where the HTTP server listens: HOST:PORT or unix:PATH (checked by split_http_bind), as written."""
    split_http_bind(value)
    return str(value).strip()


def _socket_constant(prefix: str, names: tuple[str, ...]) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        name = str(value).strip().upper()
        if not name.startswith(prefix):
            name = prefix + name
        if name not in names or not hasattr(socket, name):
            allowed = ", ".join(names)
            kind = "family" if prefix == "AF_" else "socket type"
            raise InvalidValue(f"unknown {kind} (expected one of {allowed})", value,
                               f"unknown {kind} {value!r} (expected one of {allowed})")
        return int(getattr(socket, name))
    return convert


to_family = _typed("family")(_socket_constant("AF_", ("AF_INET", "AF_INET6", "AF_UNIX")))
to_family.__doc__ = "A socket family: AF_INET, AF_INET6 or AF_UNIX (any case)."
to_socktype = _typed("socktype")(_socket_constant(
    "SOCK_", ("SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW", "SOCK_RDM", "SOCK_SEQPACKET")))
to_socktype.__doc__ = "A socket type: SOCK_STREAM, SOCK_DGRAM, ... (any case)."


@_typed("proto")
def to_proto(value: Any) -> int:
    """A protocol number or name known to ``getprotobyname`` (tcp, udp...); empty means 0."""
    text = str(value).strip()
    if not text:
        return 0
    if text.isdigit():
        return int(text)
    try:
        return socket.getprotobyname(text)
    except OSError:
        raise InvalidValue("unknown protocol", value, f"unknown protocol {value!r}") from None


@_typed("role")
def to_role(value: Any) -> str:
    """A role of the control channel: none, read, operate or define (gcircus.roles), in any case."""
    text = str(value).strip().lower()
    if text not in ROLES:
        raise InvalidValue(f"expected a role ({', '.join(ROLES)})", value)
    return text


@_typed("users")
def to_user_names(value: Any) -> tuple[str, ...]:
    """User names or uids separated by commas or spaces; gcircus.grants checks that each exists and is not root."""
    names = tuple(name for name in re.split(r"[\s,]+", str(value).strip()) if name)
    if not names:
        raise InvalidValue("expected one or more user names or uids", value)
    return names


@_typed("check")
def to_ready_check(value: Any) -> str:
    """A readiness check (gcircus.checks.spec), kept as written; the watcher parses it again into a Check."""
    return parse_check(value).text


@_typed("check")
def to_health_check(value: Any) -> str:
    """A health check: the readiness kinds or `watchdog`, kept as written."""
    return parse_check(value, health=True).text


OWN_NAME = ""  # Option.options_key: the option is listed by `options` under its own name

# What a change of an option needs once applied at run time (Option.on_change); None: it cannot change live.
RESPAWN = "respawn"  # watcher: new processes (a graceful reload)
RECOUNT = "recount"  # watcher: only count the processes again (start/stop the difference)
NOTHING = "nothing"  # watcher: nothing; the next stop or spawn reads the new value
APPLY = "apply"  # [circus]: reloadconfig applies it to the running daemon
PARSE = "parse"  # [circus]: only shapes the parse; its effect is in the watcher sections reloadconfig compares


@dataclass(frozen=True)
class Option:
    """One configuration option of one section."""

    name: str
    section: str
    convert: Callable[[Any], Any]
    default: Any
    on_change: str | None
    doc: str
    # The key the `options` command reports this option under, as Circus's does: its own name (OWN_NAME), another
    # key (the stream families are Circus's stdout_stream_conf/stderr_stream_conf dicts), or None for an option
    # Circus's command does not list (read it with `get`).
    options_key: str | None = OWN_NAME
    minimum: float | None = None  # smallest value accepted, in the config file and at run time
    # Changes only how many processes run, when, and how they are stopped or retried: not what runs nor as whom
    # (the only options an endpoint_owner client may set on a watcher that does not run as the owner).
    scheduling: bool = False
    # Why a true value acts inside gcircusd, as its user, whatever the watcher runs as (hooks run there...): an
    # endpoint_owner client may not set it on any watcher.
    daemon_side: str | None = None
    global_rank: int | None = None  # where the `globaloptions` reply lists this [circus] key (Circus's order)
    whole_number: bool = False  # a whole value is replied as an int, as circusd does (Circus refuses fractions)

    @property
    def live(self) -> bool:
        """Settable at run time (`set`), or applied live by reloadconfig for a [circus] option."""
        return self.on_change in (RESPAWN, RECOUNT, NOTHING, APPLY)

    @property
    def options_reply_key(self) -> str | None:
        """The key of this option in the `options` reply, or None when it is not listed there."""
        if self.options_key == OWN_NAME:
            return None if self.is_prefix else self.name
        return self.options_key

    @property
    def type_name(self) -> str:
        return getattr(self.convert, "type_name", "str")

    @property
    def is_prefix(self) -> bool:
        """True for families of options such as ``hooks.*`` or ``rlimit_*``."""
        return self.name.endswith("*")

    @property
    def family(self) -> str | None:
        """The watcher field a family's members fold into (`rlimits` for rlimit_*), None for a plain option."""
        return FAMILIES.get(self.name[:-1]) if self.is_prefix else None

    def parse(self, value: Any) -> Any:
        """Convert *value* and check it against the minimum; InvalidValue says why."""
        return self.check_minimum(self.convert(value))

    def check_minimum(self, value: Any) -> Any:
        """*value* (already typed) if it is at least the minimum; InvalidValue otherwise."""
        if self.minimum is not None and value is not None and value < self.minimum:
            wording = {0: "must not be negative", -1: "must be -1 (forever) or more"}.get(int(self.minimum))
            raise InvalidValue(wording or f"must be at least {self.minimum:g}", value)
        return value


def _table(section: str, rows: list[tuple]) -> dict[str, Option]:
    """Rows are (name, convert, default, on_change, doc[, options_key][, {extra fields}])."""
    table = {}
    for row in rows:
        extra = row[-1] if isinstance(row[-1], dict) else {}
        fields = row[:-1] if extra else row
        table[row[0]] = Option(fields[0], section, *fields[1:], **extra)
    return table


_S, _OS, _B, _I, _F = to_str, to_optional_str, to_bool, to_int, to_float
_R, _C, _N = RESPAWN, RECOUNT, NOTHING
_SCHED = {"scheduling": True}
_NON_NEGATIVE = {"minimum": 0}
_NON_NEGATIVE_SCHED = {"minimum": 0, "scheduling": True}
_RETRIES = {"minimum": -1, "scheduling": True}
_WHOLE_SCHED = {"minimum": 0, "scheduling": True, "whole_number": True}
_DAEMON_HOOKS = {"daemon_side": "hooks run inside gcircusd"}
_DAEMON_STREAMS = {"daemon_side": "gcircusd itself opens stream files and imports stream classes"}
_DAEMON_CHECKS = {"daemon_side": "its checks connect and run commands from gcircusd"}
_DAEMON_SOCKETS = {"daemon_side": "the sockets are gcircusd's, bound with its privileges"}

CIRCUS_OPTIONS = _table("circus", [
    ("endpoint", _S, "tcp://127.0.0.1:5555", None, "control (ROUTER) endpoint", {"global_rank": 0}),
    ("endpoint_owner", _OS, None, None, "user owning an ipc:// control socket; requests get that user's rights only"),
    ("endpoint_mode", to_octal, None, None, "mode of the ipc:// socket files of endpoint, pubsub_endpoint and "
     "stats_endpoint (octal, e.g. 0660 with endpoint_group); empty means 0600"),
    ("endpoint_group", _OS, None, None, "group given the ipc:// socket files (and the directory gcircusd creates "
     "for them); its members reach them with endpoint_mode 0660"),
    ("pubsub_endpoint", _S, "tcp://127.0.0.1:5556", None, "event (PUB) endpoint", {"global_rank": 2}),
    ("multicast_endpoint", _OS, None, None, "UDP discovery endpoint; empty or absent means off",
     {"global_rank": 4}),
    ("stats_endpoint", _S, "tcp://127.0.0.1:5557", None, "stats (PUB) endpoint; setting it turns statsd on",
     {"global_rank": 1}),
    ("statsd", _B, False, None, "publish process stats on stats_endpoint (sampled inside gcircusd)"),
    ("statsd_close_outputs", _B, False, None, "close the stats publisher's stdout/stderr"),
    ("stats_interval", to_positive_float, 1.0, None, "seconds between two samples on the stats channel"),
    ("check_delay", _F, 5.0, APPLY, "kept for `globaloptions`; gcircus reacts to SIGCHLD, it does not poll",
     {"global_rank": 3}),
    ("umask", to_octal, None, None, "umask of gcircusd and its children (octal); empty means inherit"),
    ("warmup_delay", _F, 0.0, APPLY, "seconds to wait between starting two watchers"),
    ("httpd", _B, False, None, "Circus's switch for its web server: true runs gcircus's HTTP server on "
     "httpd_host:httpd_port (as [http] bind; an [http] section wins)"),
    ("httpd_host", _S, "localhost", None, "host of the HTTP server httpd = true runs"),
    ("httpd_port", to_port, 8080, None, "port of the HTTP server httpd = true runs"),
    ("httpd_close_outputs", _B, False, None, "close circus-web's stdout/stderr"),
    ("debug", _B, False, None, "internal watchers write to gcircusd's stdout, at debug level"),
    ("debug_gc", _B, False, None, "enable gc.DEBUG_LEAK"),
    ("pidfile", _OS, None, None, "pid file path (the command line wins)"),
    ("loglevel", _OS, None, APPLY, "log level (the command line wins); default info"),
    ("logoutput", _OS, None, None,
     "log destination: -, stderr, a file, syslog://..., or journal (the command line wins); default - (stdout)"),
    ("loggerconfig", _OS, None, None, "logging config file: .ini, .json, .yaml (with PyYAML) or 'default'"),
    ("fqdn_prefix", _OS, None, None, "prefix for this host's fqdn in stats"),
    ("stream_backend", _S, "thread", None, "accepted for Circus compatibility; gcircus always uses gevent"),
    ("include", _OS, None, PARSE, "whitespace-separated globs of extra ini files, relative to this file"),
    ("include_dir", _OS, None, PARSE, "whitespace-separated directories whose *.ini files are included"),
    ("pdeathsig", _B, True, PARSE, "children get PR_SET_PDEATHSIG so they die if gcircusd is killed"),
    ("allow_remote_endpoints", _B, False, None,
     "allow binding endpoint/pubsub_endpoint to non-loopback TCP addresses (unauthenticated!); not needed with CURVE"),
    ("curve_secret_key", _OS, None, None,
     "the daemon's secret CURVE certificate (zmq.auth format, mode 0600): its tcp:// channels then require CURVE"),
    ("curve_clients", _OS, None, None,
     "directory of the public certificates (NAME.key) CURVE lets in as curve:NAME; re-read by reloadconfig and HUP"),
    ("max_message_size", _I, 1048576, None, "largest control request accepted, in bytes"),
    ("audit_log", _OS, None, None, "audit log of state-changing requests and refusals, one JSON line each: a file, "
     "syslog (or syslog:///socket[?facility]), or journal; empty means off (see README, Audit log)"),
    ("prefix_output", _B, False, PARSE,
     "send unconfigured watcher output through gcircusd's stdout/stderr as `name[wid] | line`"),
    ("stop_timeout", to_optional_float, None, APPLY,
     "upper bound in seconds on gcircusd's whole shutdown, then whatever is left is SIGKILLed; empty: no bound",
     _NON_NEGATIVE),
    ("name", _OS, None, None, "this daemon's name; names its cgroup directory (default: from the config file path)"),
    ("cgroup_root", to_cgroup_root, None, None,
     "a cgroup (v2) per watcher under this directory: auto, or a writable cgroup v2 path; empty means off"),
])

# Where gcircusd listens and clients connect when nothing else is configured.
DEFAULT_ENDPOINT = CIRCUS_OPTIONS["endpoint"].default
DEFAULT_PUBSUB_ENDPOINT = CIRCUS_OPTIONS["pubsub_endpoint"].default
DEFAULT_STATS_ENDPOINT = CIRCUS_OPTIONS["stats_endpoint"].default

WATCHER_OPTIONS = _table("watcher", [
    ("cmd", check_exec_text, "", _R, "command line, shlex-split at spawn"),
    ("args", check_exec_text, "", _R, "extra arguments appended to cmd"),
    ("numprocesses", _I, 1, _C, "number of processes to keep running", _NON_NEGATIVE_SCHED),
    ("warmup_delay", _F, 0.0, _C, "seconds between two spawns", _WHOLE_SCHED),
    ("working_dir", to_optional_exec_str, None, _R, "working directory of the children; default gcircusd's",
     {"daemon_side": "gcircusd enters it before the child becomes the owner, so it may be one the owner cannot "
                     "reach"}),
    ("shell", _B, False, _R, "run the command through /bin/sh"),
    ("shell_args", to_optional_exec_str, None, None, "extra shell arguments when shell is on"),
    ("executable", to_optional_exec_str, None, None, "program to execute instead of argv[0]"),
    ("uid", to_optional_exec_str, None, _R, "user name or id to run as"),
    ("gid", to_optional_exec_str, None, _R, "group name or id to run as"),
    ("send_hup", _B, False, _C, "reload by sending SIGHUP instead of respawning", _SCHED),
    ("stop_signal", to_signal, int(signal.SIGTERM), _C, "signal sent to stop a process", _SCHED),
    ("stop_children", _B, False, _C, "also send stop_signal to the process's children", _SCHED),
    ("max_retry", _I, 5, _C, "spawn attempts before giving up; -1 means forever", _RETRIES),
    ("graceful_timeout", _F, 30.0, _N, "seconds between stop_signal and SIGKILL", _NON_NEGATIVE_SCHED),
    ("priority", _I, 0, None, "higher starts first and stops last", _SCHED),
    ("singleton", _B, False, _C, "at most one process", _SCHED),
    ("use_sockets", _B, False, None, "let children inherit the gcircus sockets", _DAEMON_SOCKETS),
    ("copy_env", _B, False, _C, "start children from gcircusd's environment",
     {"daemon_side": "it hands gcircusd's own environment to the child"}),
    ("copy_path", _B, False, None, "set PYTHONPATH to gcircusd's sys.path (needs copy_env)", None),
    ("max_age", _F, 0.0, _R, "restart a process after this many seconds; 0 disables", _WHOLE_SCHED),
    ("max_age_variance", _F, 30.0, _R, "random extra seconds added to max_age", _WHOLE_SCHED),
    ("respawn", _B, True, _C, "respawn processes that exit", _SCHED),
    ("autostart", _B, True, None, "start the watcher with gcircusd", None, _SCHED),
    ("on_demand", _B, False, None, "start when one of the sockets becomes readable"),
    ("close_child_stdin", _B, True, _C, "give children /dev/null as stdin"),
    ("close_child_stdout", _B, False, _C, "give children /dev/null as stdout"),
    ("close_child_stderr", _B, False, _C, "give children /dev/null as stderr"),
    ("virtualenv", to_optional_exec_str, None, None, "virtualenv to run in (needs copy_env)", None),
    ("virtualenv_py_ver", _OS, None, None, "Python X.Y of the virtualenv", None),
    ("stdin_socket", _OS, None, None, "name of a socket given to children as stdin", None, _DAEMON_SOCKETS),
    ("umask", to_octal, None, None, "umask of the children (octal); empty means inherit", None),
    ("pdeathsig", _B, None, None, "children die with gcircusd; default from [circus] pdeathsig", None),
    ("hook_timeout", _F, 30.0, None, "seconds a hook may run before it counts as failed", None, _NON_NEGATIVE_SCHED),
    ("check_flapping", _B, True, None, "back off when processes crash in a loop", None, _SCHED),
    ("prefix_output", _B, None, None, "prefix unconfigured output lines; default from [circus] prefix_output", None),
    ("ready", to_ready_check, "none", _R,
     "when a process is ready: none, notify, fd:N, tcp:HOST:PORT, http:URL or exec:COMMAND", None, _DAEMON_CHECKS),
    ("ready_timeout", _F, 60.0, _N, "seconds a process may take to become ready, then it is stopped; 0: no limit",
     None, _NON_NEGATIVE_SCHED),
    ("health", to_health_check, "none", _R, "health check of a ready process: none, watchdog, or a `ready` kind",
     None, _DAEMON_CHECKS),
    ("health_interval", to_positive_float, 10.0, _N, "seconds between two health checks of a process", None,
     _SCHED),
    ("health_timeout", to_positive_float, 5.0, _N, "seconds a health check may take before it counts as failed",
     None, _SCHED),
    ("health_retries", _I, 3, _N, "failed health checks in a row that make a process unhealthy (it is replaced)",
     None, {"minimum": 1, "scheduling": True}),
    ("watchdog_sec", _F, 0.0, _R, "with health = watchdog: seconds between two WATCHDOG=1 pings at most", None,
     _NON_NEGATIVE_SCHED),
    ("essential", _B, False, _N, "gcircusd stops everything and exits 3 when this watcher fails (or, with "
     "respawn = false, its processes all exited)", None,
     {"daemon_side": "its failure stops gcircusd and every watcher"}),
    ("depends_on", to_names, (), _N, "watchers that must be active before this one starts (it stops before them)",
     None, _SCHED),
    ("memory_max", to_memory_max, None, _N, "cgroup memory.max of the watcher (needs cgroup_root): max or a size "
     "such as 512M", None),
    ("pids_max", to_pids_max, None, _N, "cgroup pids.max of the watcher (needs cgroup_root): max or a count", None),
    ("cpu_weight", to_cpu_weight, None, _N, "cgroup cpu.weight of the watcher (needs cgroup_root): 1 to 10000",
     None),
    ("rlimit_*", to_rlimit, None, _C, "resource limit RLIMIT_<NAME>; empty means unlimited"),
    ("stdout_stream.*", _S, None, _C, "stdout sink options (class, filename, ...)", "stdout_stream_conf",
     _DAEMON_STREAMS),
    ("stderr_stream.*", _S, None, _C, "stderr sink options (class, filename, ...)", "stderr_stream_conf",
     _DAEMON_STREAMS),
    ("hooks.*", _S, None, _C, "hook: dotted.path[, ignore_failure]", _DAEMON_HOOKS),
    ("flapping.*", _S, None, _C, "per-watcher override of a [flapping] option", _SCHED),
])

# Keys `set` and `add` take beside the table's (Circus's wire forms): whole objects for a family or the
# environment, and Circus's name for flapping.retry_in. Their values are JSON objects (see runtime_options).
RUNTIME_OBJECT_OPTIONS = _table("watcher", [
    ("env", _S, None, _R, "the children's environment variables (in a file: [env:NAME] sections)"),
    ("hooks", _S, None, _C, "every hook at once", _DAEMON_HOOKS),
    ("stdout_stream", _S, None, _C, "every stdout sink option at once", _DAEMON_STREAMS),
    ("stderr_stream", _S, None, _C, "every stderr sink option at once", _DAEMON_STREAMS),
    ("retry_in", _F, None, _C, "Circus's name for flapping.retry_in", _NON_NEGATIVE_SCHED),
])

# The option families: the prefix of their keys, and the watcher field their members fold into
# (rlimit_nofile = 10 is rlimits["nofile"] = 10).
FAMILIES = {"rlimit_": "rlimits", "stdout_stream.": "stdout_stream", "stderr_stream.": "stderr_stream",
            "hooks.": "hooks", "flapping.": "flapping"}

SOCKET_OPTIONS = _table("socket", [
    ("host", _S, "localhost", None, "host or address to bind"),
    ("port", to_port, 8080, None, "port to bind; 0 picks a free one"),
    ("path", _OS, None, None, "unix socket path; implies family AF_UNIX"),
    ("family", to_family, int(socket.AF_INET), None, "AF_INET, AF_INET6 or AF_UNIX"),
    ("type", to_socktype, int(socket.SOCK_STREAM), None, "SOCK_STREAM, SOCK_DGRAM, ..."),
    ("proto", to_proto, 0, None, "protocol name or number"),
    ("backlog", _I, 2048, None, "listen() backlog"),
    ("umask", to_octal, None, None, "umask (octal) while binding a unix socket; empty means inherit"),
    ("replace", _B, False, None, "replace an existing unix socket file"),
    ("blocking", _B, False, None, "leave the socket in blocking mode"),
    ("interface", _OS, None, None, "network interface to bind to (SO_BINDTODEVICE)"),
    ("so_reuseport", _B, False, None, "set SO_REUSEPORT on the socket (gcircusd binds it once, as the others)"),
])

PLUGIN_OPTIONS = _table("plugin", [
    ("use", to_dotted, None, None, "dotted path of the plugin class (required)"),
    ("priority", _I, 1, None, "start order of the plugin"),
    ("active", _B, True, None, "run the plugin"),
])

FLAPPING_OPTIONS = _table("flapping", [
    ("attempts", _I, 2, None, "exits within `window` that count as flapping", _NON_NEGATIVE),
    ("window", _F, 1.0, None, "seconds in which `attempts` exits mean flapping", _NON_NEGATIVE),
    ("retry_in", _F, 7.0, None, "seconds to wait before starting a flapping watcher again", _NON_NEGATIVE),
    ("max_retry", _I, 5, None, "back-offs before the watcher stays stopped; -1 means forever", {"minimum": -1}),
])

# Who may do what on the control channel (README, Securing the control channel): the grants of roles (gcircus.roles)
# to peers, which gcircus.grants checks and resolves. reloadconfig applies the whole section at once.
ACCESS_OPTIONS = _table("access", [
    ("user:*", to_role, None, APPLY, "role of a local user (name or uid); `user:*`: every identified local user"),
    ("group:*", to_role, None, APPLY, "role of the members of a group (name or gid)"),
    ("curve:*", to_role, None, APPLY, "role of a CURVE client (its certificate's name); `curve:*`: every listed key"),
    ("runas:*", to_user_names, None, APPLY, "users (not root) that a non-root `define` client of a root gcircusd "
     "may name as uid besides itself; `runas:curve:NAME` for a CURVE client"),
    ("everyone", to_role, None, APPLY, "role of every peer of every endpoint, identified or not (`define`: Circus's "
     "openness)"),
    ("local_tcp", to_role, "read", APPLY, "role of every peer of a tcp:// endpoint without CURVE, whoever it is"),
])

HTTP_OPTIONS = _table("http", [
    ("bind", to_http_bind, "127.0.0.1:9102", None,
     "where the HTTP server listens: HOST:PORT, or unix:PATH; the section's presence turns the server on"),
    ("token_file", _OS, None, None,
     "file whose first line is the token guarding everything but /healthz and /readyz (owner-only permissions)"),
    ("token_role", to_role, "define", None,
     "role (read, operate or define) of the HTTP API's clients: the token's, its browser sessions', and, without "
     "token_file, every client's; held to the command table's roles as the control channel's peers are"),
    ("certfile", _OS, None, None, "TLS certificate (PEM); with keyfile, the server speaks HTTPS"),
    ("keyfile", _OS, None, None, "TLS private key (PEM) of certfile"),
    ("allow_remote_endpoints", _B, False, None,
     "allow a non-loopback bind (it then needs token_file, certfile and keyfile too)"),
    ("max_connections", _I, 64, None, "connections served at once; more wait in the listen backlog",
     {"minimum": 1}),
    ("max_body_size", to_size, 1048576, None, "largest request body accepted, in bytes (413 beyond)",
     {"minimum": 0}),
    ("request_timeout", to_positive_float, 30.0, None,
     "seconds a connection may stay silent while a request is read or its reply written"),
    ("max_hub_latency", to_positive_float, 1.0, None,
     "seconds of hub latency beyond which /healthz answers 503"),
    ("probe_bind", to_http_bind, None, None,
     "also serve /healthz and /readyz, and nothing else, in plain HTTP on HOST:PORT or unix:PATH, any address "
     "(for Kubernetes' httpGet probes, which reach the pod's own IP)"),
])

OPTIONS: dict[str, dict[str, Option]] = {
    "circus": CIRCUS_OPTIONS,
    "watcher": WATCHER_OPTIONS,
    "socket": SOCKET_OPTIONS,
    "plugin": PLUGIN_OPTIONS,
    "flapping": FLAPPING_OPTIONS,
    "http": HTTP_OPTIONS,
    "access": ACCESS_OPTIONS,
}


def family_member(key: str) -> tuple[str, str] | None:
    """(field, member) of a family key (`rlimit_NOFILE` is ("rlimits", "nofile")), or None for any other key."""
    for prefix, field in FAMILIES.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            member = key[len(prefix):]
            return field, member.lower() if field == "rlimits" else member
    return None


def member_problem(field: str, member: str) -> str | None:
    """Why `member` is no member of the family folded into `field` (an unknown limit, hook...), or None."""
    if field == "rlimits" and not hasattr(resource, "RLIMIT_" + member.upper()):
        return f"unknown resource limit 'RLIMIT_{member.upper()}'"
    if field == "hooks" and member not in HOOK_NAMES:
        return f"unknown hook {quote_value(member)} (hooks are {', '.join(HOOK_NAMES)})"
    if field == "flapping" and member not in FLAPPING_OPTIONS:
        return f"unknown option {quote_value('flapping.' + member)}"
    return None


def parse_member(field: str, member: str, value: Any) -> Any:
    """Convert the value of a known member of the family folded into `field` (from a file's text or from JSON)."""
    if field == "rlimits":
        if isinstance(value, (bool, float)):
            raise ValueError("expected an integer or null (unlimited)")
        return to_rlimit(value)
    if field == "hooks":
        return to_hook(value)
    if field == "flapping":
        return FLAPPING_OPTIONS[member].parse(value)
    if member == "class":
        check_stream_class(value)
    return None if value is None else check_exec_text(value)


def fold(values: dict, key: str, value: Any, mirror: Any = None) -> bool:
    """Put the converted `value` of `key` into a watcher's `values` if it folds into a group; False if it does not.

    A family member goes into its group (None removes a hook or stream member); a flapping.X is also kept in
    "options" as given (`mirror`, the file's text, else `value`), where Circus's plugins look for it; Circus's
    retry_in is flapping.retry_in; `hooks` merges every hook at once. The config loader, `add` and `set` all fold
    with this, so a member lands in the same place whoever gave it.
    """
    family = family_member(key) or {"retry_in": ("flapping", "retry_in"), "hooks": ("hooks", None)}.get(key)
    if family is None:
        return False
    field, member = family
    merged = {**values.get(field, {}), **(value if member is None else {member: value})}
    values[field] = {name: spec for name, spec in merged.items() if spec is not None}
    if key.startswith("flapping."):
        values.setdefault("options", {})[key] = value if mirror is None else mirror
    return True


def watcher_rule_problem(values: dict) -> tuple[str, str] | None:
    """(option, reason) when a watcher's values break a rule between options, or None.

    The config loader, the Watcher constructor and `set` all ask this, so a rule has one wording.
    """
    if values.get("singleton") and values.get("numprocesses", 1) > 1:
        return "numprocesses", f"a singleton watcher runs at most 1 process (numprocesses = {values['numprocesses']})"
    for key in ("copy_path", "virtualenv"):
        if values.get(key) and not values.get("copy_env"):
            return key, f"{key} needs copy_env = true"
    return None


def get_option(name: str, section: str) -> Option | None:
    """The table entry for *name* in *section*, matching prefix families too."""
    table = OPTIONS[section]
    if name in table:
        return table[name]
    for option in table.values():
        if option.is_prefix and name.startswith(option.name[:-1]) and len(name) > len(option.name) - 1:
            return option
    return None


def only_schedules(key: str) -> bool:
    """The option table says `key` (of `set` or `add`) only schedules: how many processes run, when, and how they are
    stopped or retried, not what runs nor as whom (Option.scheduling). A `set` of such keys alone needs the operate
    role, not define; they are also all an endpoint_owner client may set on a watcher that does not run as it."""
    option = RUNTIME_OBJECT_OPTIONS.get(key) or get_option(key, "watcher")
    return option is not None and option.scheduling


def live_options() -> list[str]:
    """Watcher option names settable at run time (prefix families end with ``*``)."""
    return [name for name, option in WATCHER_OPTIONS.items() if option.live]


def runtime_option(key: str) -> Option | None:
    """The option `set` changes with *key* (a table option, a family member or a whole object), or None."""
    option = RUNTIME_OBJECT_OPTIONS.get(key) or get_option(key, "watcher")
    return option if option is not None and option.live else None


def defaults(section: str) -> dict[str, Any]:
    """Default values of every plain (non-prefix) option of *section*."""
    return {name: o.default for name, o in OPTIONS[section].items() if not o.is_prefix}


def suggest(name: str, section: str, cutoff: float = 0.8) -> str | None:
    """The valid option name closest to *name*: a case-insensitive match, else difflib."""
    names = [n for n in OPTIONS[section] if not n.endswith("*")]
    for candidate in names:
        if candidate.lower() == name.lower():
            return candidate
    matches = difflib.get_close_matches(name, names, n=1, cutoff=cutoff)
    return matches[0] if matches else None


def _format_default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


def option_reference_markdown() -> str:
    """A Markdown table per section: name, type, default, live, doc."""
    out = []
    for section in SECTIONS:
        heading = {"circus": "[circus]", "watcher": "[watcher:NAME]", "socket": "[socket:NAME]",
                   "plugin": "[plugin:NAME]", "flapping": "flapping ([plugin:X] use = ...Flapping, "
                   "or flapping.<key> in a watcher)", "http": "[http]", "access": "[access]"}[section]
        out.append(f"### {heading}\n")
        out.append("| option | type | default | live | description |")
        out.append("|---|---|---|---|---|")
        for option in OPTIONS[section].values():
            out.append(f"| `{option.name}` | {option.type_name} | {_format_default(option.default)} | "
                       f"{'yes' if option.live else ''} | {option.doc} |")
        out.append("")
    return "\n".join(out)
