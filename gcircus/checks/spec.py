"""What a `ready` or `health` option says: a Check parsed from its text, refused with a reason naming the forms.

Pure parsing (no gevent, no sockets): the option table uses it as the converter of both options, so the config
loader, `set` and `add` refuse a malformed check before any process runs. Values that hold placeholders
(`$(circus.wid)`, `$PORT`) can only be checked for their shape here; the probe reports what is wrong once they are
filled in (see `split_host_port` and `check_http_url`, which both stages use).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gcircus.errors import InvalidValue
from gcircus.expand import expand_circus_vars

if TYPE_CHECKING:
    import urllib.parse

NONE, NOTIFY, FD, TCP, HTTP, EXEC, WATCHDOG = "none", "notify", "fd", "tcp", "http", "exec", "watchdog"
PROBED_KINDS = (TCP, HTTP, EXEC)  # run by gcircusd against the process (gcircus.checks.probes)
READY_FORMS = "none, notify, fd:N, tcp:HOST:PORT, http:URL or exec:COMMAND"
HEALTH_FORMS = "none, watchdog, tcp:HOST:PORT, http:URL or exec:COMMAND"
LOWEST_READY_FD = 3  # 0, 1 and 2 are the child's stdin, stdout and stderr

_PLACEHOLDER = re.compile(r"\$|\(\(")
_ENV_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Check:
    """One readiness or health check: `kind` (one of the constants above) and its `argument` as written.

    `argument` is what follows `kind:` (tcp: "HOST:PORT", http: the URL, exec: the command line, fd: "N"), with
    placeholders still in it; `text` is the option's value as the user wrote it (stripped).
    """

    kind: str
    argument: str = ""
    text: str = NONE

    @property
    def fd(self) -> int | None:
        """The child's descriptor number of an fd:N check, else None."""
        return int(self.argument) if self.kind == FD else None

    @property
    def probed(self) -> bool:
        """True for the kinds gcircusd runs itself (tcp, http, exec); the others are told by the process."""
        return self.kind in PROBED_KINDS

    def __str__(self) -> str:
        return self.text


def has_placeholders(text: str) -> bool:
    """True if `text` holds a `$...` or `((...))` placeholder, filled only when the check is run."""
    return bool(_PLACEHOLDER.search(text))


def split_host_port(address: str) -> tuple[str, int]:
    """("host", port) of "HOST:PORT" or "[IPV6]:PORT"; ValueError saying what is wrong otherwise."""
    host, colon, port = address.rpartition(":")
    if not colon or not host:
        raise ValueError("expected HOST:PORT, as in 127.0.0.1:8000 (an IPv6 address in brackets: [::1]:8000)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets, as in [::1]:80")
    if not host or any(c in host for c in "[]/ "):
        raise ValueError(f"bad host {host!r}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 1 to 65535")
    return host, int(port)


def check_http_url(url: str) -> urllib.parse.SplitResult:
    """The parts of an http:// URL with a host (and a valid port, if any); ValueError saying what is wrong."""
    import urllib.parse  # (an http check's URL only: not imported at every start)

    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "http":
        raise ValueError("expected an http:// URL (https is not supported: probe the plain-http port)")
    try:
        parts.port  # noqa: B018 - urllib checks the port only when it is read
    except ValueError:
        raise ValueError("the URL's port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError("the URL has no host")
    return parts


def _check_argument(kind: str, argument: str) -> None:
    """ValueError unless `argument` suits `kind` (as far as it can be told before placeholders are filled)."""
    if kind == FD:
        if not argument.isdigit() or int(argument) < LOWEST_READY_FD:
            raise ValueError(f"fd:N needs a descriptor number N of at least {LOWEST_READY_FD} (0, 1 and 2 are the "
                             "child's stdin, stdout and stderr)")
    elif not argument.strip():
        raise ValueError(f"{kind}: needs {'HOST:PORT' if kind == TCP else 'a URL' if kind == HTTP else 'a command'}")
    elif kind == EXEC:
        if "\x00" in argument:
            raise ValueError("the command contains a NUL byte")
        try:
            shlex.split(argument)
        except ValueError as exc:
            raise ValueError(f"the command cannot be split into arguments ({exc})") from None
    elif has_placeholders(argument):
        if kind == TCP and ":" not in argument:
            raise ValueError("expected tcp:HOST:PORT (an IPv6 address in brackets: tcp:[::1]:80)")
    elif kind == TCP:
        split_host_port(argument)
    else:
        check_http_url(argument)


def parse_check(text: object, *, health: bool = False) -> Check:
    """The Check `text` describes; InvalidValue naming the bad value and the accepted forms otherwise.

    `health` also accepts `watchdog` (WATCHDOG=1 pings, a health check only). An http check is written
    `http:http://HOST:PORT/PATH` or just as its URL, `http://HOST:PORT/PATH`.
    """
    if isinstance(text, Check):
        text = text.text
    if not isinstance(text, str):
        raise InvalidValue("expected a check as text", text)
    stripped = text.strip()
    kind, _colon, argument = stripped.partition(":")
    kind = kind.lower()
    forms = HEALTH_FORMS if health else READY_FORMS
    if kind == HTTP and argument.startswith("//"):
        argument = stripped  # the URL itself: http://host/path
    if not stripped:
        return Check(NONE, "", NONE)  # an empty value means no check, as for the other optional options
    if kind == "https":
        raise InvalidValue(f"https is not supported: probe a plain-http port (a check is one of {forms})", text)
    if health and kind in (NOTIFY, FD):
        raise InvalidValue(f"{kind} is a readiness check (health is one of {forms}; sd_notify pings: watchdog)", text)
    if kind in (NONE, NOTIFY, WATCHDOG) and not argument:
        if kind == WATCHDOG and not health:
            raise InvalidValue(f"watchdog is a health check only (ready is one of {forms})", text)
        return Check(kind, "", stripped)
    if kind not in (FD, TCP, HTTP, EXEC):
        raise InvalidValue(f"unknown check (expected {forms})", text)
    try:
        _check_argument(kind, argument.strip())
    except ValueError as exc:
        raise InvalidValue(f"{exc} (a check is one of {forms})", text) from None
    return Check(kind, argument.strip(), stripped)


def fill_placeholders(text: str, *, wid: int, env: dict[str, str]) -> str:
    """`text` with `$(circus.wid)` / `((circus.wid))` (any case; also `$(circus.env.NAME)`) and `$NAME` / `${NAME}`
    filled from the process's worker id and environment.

    An unknown placeholder or an unset variable is left as written, so a failing probe shows what was missing.
    """
    if not has_placeholders(text):
        return text
    text = expand_circus_vars(text, {"wid": str(wid), "env": env})

    def variable(match: re.Match) -> str:
        value = env.get(match.group(1) or match.group(2))
        return match.group(0) if value is None else value

    return _ENV_REFERENCE.sub(variable, text)
