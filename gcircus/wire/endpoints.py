"""Endpoint safety rules: control and event sockets stay on loopback unless they require CURVE or the operator opts in
explicitly."""
from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import socket
import stat
from urllib.parse import urlparse

import zmq

from gcircus.wire.curve import KeyPair, serve_curve

OPT_IN = "allow_remote_endpoints"


class EndpointNotAllowed(ValueError):
    """A TCP endpoint on a non-loopback address without CURVE or the explicit opt-in."""


def ipc_path(endpoint: str) -> str | None:
    """The filesystem path of an `ipc://` endpoint, else None."""
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc:// and inproc:// endpoints and tcp:// ones whose host resolves only to loopback addresses."""
    if not endpoint.startswith("tcp://"):
        return True
    parsed = urlparse(endpoint)
    if not parsed.netloc.endswith(":*"):  # zmq's "any free port"
        if parsed.port is None:  # raises ValueError itself for a port that is not a number
            raise ValueError(f"{endpoint!r} has no port")
    host = parsed.hostname or ""
    if host in ("*", ""):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def is_tcp_endpoint(endpoint: str) -> bool:
    """True for a tcp:// endpoint: the only kind whose channel is a CURVE server when curve_secret_key is set (an
    ipc:// peer is known by the kernel, an inproc:// one is in the process)."""
    return endpoint.startswith("tcp://")


def check_bind_allowed(option: str, endpoint: str, allow_remote: bool, curve: bool = False) -> None:
    """Refuse a non-loopback TCP bind unless CURVE authenticates its clients (`curve`) or `allow_remote_endpoints =
    true`, saying why and how."""
    if allow_remote or curve or is_loopback_endpoint(endpoint):
        return
    raise EndpointNotAllowed(
        f"refusing to bind {option} {endpoint}: it is not a loopback address, and without CURVE the control protocol "
        f"has no authentication, so anyone who can reach it could run any command as gcircusd's user. Use an ipc:// "
        f"path or 127.0.0.1, set curve_secret_key and curve_clients in [circus] so that only listed clients get in, "
        f"or set `{OPT_IN} = true` to accept the risk.")


def ipc_in_use(path: str) -> bool:
    """True when something accepts connections on the unix socket at `path`.

    zmq binds an ipc path by removing whatever file is there, so without this check a second daemon would silently
    take the endpoint of a running one. A file nobody listens on (left by a daemon that was killed) is stale.
    """
    if not os.path.exists(path):
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(path)
    except OSError:  # ECONNREFUSED: a stale socket file (or not a socket at all)
        return False
    finally:
        probe.close()
    return True


def close_bound(sock, endpoint: str, cap=None, linger: int | None = None) -> None:
    """Close what bind_private bound: the connection cap watching the socket, the socket, and its ipc:// file."""
    if cap is not None:
        cap.close()
    if sock is not None:
        sock.close(linger=linger)
    path = ipc_path(endpoint)
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


def bind_private(sock, option: str, endpoint: str, allow_remote: bool, owner: str | None = None,
                 curve: KeyPair | None = None) -> bool:
    """Bind a zmq socket the safe way: a tcp:// one as a CURVE server when `curve` keys are given, else on loopback
    unless opted in; an ipc:// file created 0600 (owned by `owner`). Returns True when the socket requires CURVE.

    The umask is narrowed around the bind, so the ipc file never exists with wider permissions, even briefly.
    Raises EndpointNotAllowed, or OSError naming the option and endpoint when the bind itself fails.
    """
    secured = curve is not None and is_tcp_endpoint(endpoint)
    check_bind_allowed(option, endpoint, allow_remote, secured)
    if curve is not None and secured:
        serve_curve(sock, curve, f"{option} {endpoint}")
    path = ipc_path(endpoint)
    if path and ipc_in_use(path):
        raise OSError(f"cannot bind {option} {endpoint}: another process (a gcircusd already running?) listens on "
                      f"it. Stop it first, or use another path; a file nobody listens on is taken over")
    old_umask = os.umask(0o177) if path else None
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise OSError(f"cannot bind {option} {endpoint}: {exc}") from None
    finally:
        if old_umask is not None:
            os.umask(old_umask)
    if path:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        if owner:
            entry = pwd.getpwuid(int(owner)) if owner.isdigit() else pwd.getpwnam(owner)
            os.chown(path, entry.pw_uid, grp.getgrgid(entry.pw_gid).gr_gid)
    return secured
