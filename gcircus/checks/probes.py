"""Run a tcp, http or exec check against a process, cooperatively and within a timeout.

gcircusd probes hundreds of processes from one hub, so a probe only ever waits on gevent (gevent.socket,
gevent.subprocess), and everything it could be made to hold is bounded: the time (the timeout covers name
resolution, connecting, the response and the command's run), the bytes read, and the processes an exec check
leaves behind (its whole process group is killed when it times out).
"""
from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import shlex
import signal
import subprocess

import gevent
import gevent.socket
import gevent.subprocess

from gcircus import identity
from gcircus.checks.outcome import Outcome
from gcircus.checks.spec import EXEC, HTTP, TCP, Check, check_http_url, fill_placeholders, split_host_port

STDERR_KEPT = 4096  # bytes of an exec check's stderr read for its detail; the rest is read and dropped
REAP_GRACE = 5.0  # seconds to wait for a SIGKILLed check command to be reaped


def probe(check: Check, *, wid: int, env: dict[str, str], timeout: float, cwd: str | None = None,
          uid: int | str | None = None, gid: int | str | None = None) -> Outcome:
    """Run `check` (a tcp, http or exec Check) for the process of worker id `wid` and environment `env`.

    Placeholders in the check are filled from `wid` and `env` first. Blocks only the calling greenlet, at most
    about `timeout` seconds. An exec check runs in `cwd` as `uid`/`gid` (names or numbers) with `env`.
    """
    argument = fill_placeholders(check.argument, wid=wid, env=env)
    runners = {TCP: _probe_tcp, HTTP: _probe_http}
    if check.kind == EXEC:
        return _within(timeout, f"exec {argument!r}", _probe_exec, argument, env, cwd, uid, gid)
    if check.kind not in runners:
        raise ValueError(f"a {check.kind!r} check is not probed by gcircusd")
    return _within(timeout, f"{check.kind} {argument}", runners[check.kind], argument, timeout)


def _within(timeout: float, label: str, runner, *args) -> Outcome:
    """runner(*args), or a failed Outcome saying `label` timed out after `timeout` seconds."""
    timer = gevent.Timeout(timeout)
    timer.start()
    try:
        return runner(*args)
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        return Outcome.failed(f"{label} timed out after {timeout:g}s")
    finally:
        timer.close()


def _connect_failure(kind: str, address: str, exc: OSError) -> Outcome:
    if isinstance(exc, ConnectionRefusedError):
        return Outcome.failed(f"{kind} {address} refused")
    if isinstance(exc, gevent.socket.gaierror):
        return Outcome.failed(f"{kind} {address}: cannot resolve the host ({exc.strerror or exc})")
    if isinstance(exc, TimeoutError):
        return Outcome.failed(f"{kind} {address} timed out")
    return Outcome.failed(f"{kind} {address}: {exc.strerror or exc}")


def _connect(host: str, port: int, timeout: float | None) -> gevent.socket.socket:
    """A connected gevent socket to host:port. An IP address is connected to directly: create_connection would
    send even a literal address through getaddrinfo, which gevent runs on its thread pool, a hand-off to another
    thread per probe that cost more than the connection itself when 100 processes are probed every second."""
    try:
        family = gevent.socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else gevent.socket.AF_INET
    except ValueError:  # a host name: resolved (cooperatively, on the thread pool)
        return gevent.socket.create_connection((host, port), timeout=timeout)
    sock = gevent.socket.socket(family, gevent.socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _probe_tcp(address: str, timeout: float) -> Outcome:
    """Ready when a connection to HOST:PORT is accepted; it is closed at once."""
    try:
        host, port = split_host_port(address)
    except ValueError as exc:
        return Outcome.failed(f"tcp {address}: {exc}")
    try:
        _connect(host, port, timeout).close()
    except OSError as exc:
        return _connect_failure("tcp", address, exc)
    return Outcome(True, f"tcp {address} accepted")


@functools.cache
def _http_client():
    """http.client, and the stdlib's HTTP client on a gevent socket: its parsing (with its own line and header
    limits) never blocks the hub. Built on the first http check: http.client imports ssl and email, 5 MiB of RSS
    and 12 ms of start-up that a gcircusd without http checks should not pay."""
    import http.client

    class CooperativeHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = _connect(self.host, self.port, self.timeout)

    return http.client, CooperativeHTTPConnection


def _probe_http(url: str, timeout: float) -> Outcome:
    """Ready when a GET of `url` answers 2xx; only the status line and headers are read."""
    try:
        parts = check_http_url(url)
    except ValueError as exc:
        return Outcome.failed(f"http {url}: {exc}")
    address = parts.netloc.rpartition("@")[2]
    client, connection_class = _http_client()
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                           headers={"Host": address, "User-Agent": "gcircus-check", "Connection": "close"})
        status = connection.getresponse().status
    except OSError as exc:
        return _connect_failure("http", address, exc)
    except client.HTTPException as exc:
        return Outcome.failed(f"http {address}: bad response ({type(exc).__name__})")
    finally:
        connection.close()
    return Outcome(200 <= status < 300, f"http {status}")


def _probe_exec(command: str, env: dict[str, str], cwd: str | None, uid, gid) -> Outcome:
    """Ready when `command` (shlex-split, no shell) exits 0; the first line of its stderr explains a failure."""
    try:
        argv = shlex.split(command)
        user, group, username = identity.resolve_user(uid, gid)
        groups = identity.supplementary_groups(user, group, username)
    except (ValueError, identity.IdentityError) as exc:
        return Outcome.failed(f"exec: {exc}")
    if not argv:
        return Outcome.failed("exec: empty command")
    try:
        child = gevent.subprocess.Popen(argv, env=env, cwd=cwd, user=user, group=group, extra_groups=groups,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        close_fds=True, start_new_session=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return Outcome.failed(f"exec {argv[0]!r}: {getattr(exc, 'strerror', None) or exc}")
    try:
        stderr = _drain(child.stderr)
        code = child.wait()
    finally:
        _kill_group(child)
        child.stderr.close()
    if code == 0:
        return Outcome(True, "exec exited 0")
    first_line = stderr.decode("utf-8", "replace").strip().partition("\n")[0]
    how = f"killed by signal {-code}" if code < 0 else f"exited {code}"
    return Outcome.failed(f"exec {how}: {first_line}" if first_line else f"exec {how}")


def _drain(pipe) -> bytes:
    """The first STDERR_KEPT bytes the pipe gives until EOF; the rest is read and dropped, so the command never
    blocks on a full pipe."""
    kept = pipe.read(STDERR_KEPT)
    while pipe.read(65536):
        pass
    return kept


def _kill_group(child) -> None:
    """SIGKILL what is left of the check's process group (a timed-out command, its children) and reap the command.

    Once the command is reaped and no member is left, its pid is free for another process: a pid that exists
    again then belongs to someone else, so it is left alone.
    """
    if child.returncode is not None and os.path.exists(f"/proc/{child.pid}"):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(REAP_GRACE)
