"""Endpoint safety rules: control and event sockets stay on loopback unless they require CURVE or the operator opts in
explicitly, and an ipc:// socket file is created with the mode, owner and group the operator chose, in a directory no
one else can replace it from."""
from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import socket
import stat
from dataclasses import dataclass
from urllib.parse import urlparse

import zmq

from gcircus.wire.curve import KeyPair, serve_curve

OPT_IN = "allow_remote_endpoints"


class EndpointNotAllowed(ValueError):
    """A TCP endpoint on a non-loopback address without CURVE or the explicit opt-in, or an ipc:// path under a
    directory other users can write to."""


@dataclass(frozen=True)
class IpcMode:
    """How an ipc:// socket file is made: its mode (None: 0600), group ([circus] endpoint_mode, endpoint_group) and,
    for the control socket only, its owner (endpoint_owner)."""

    mode: int | None = None
    group: str | None = None
    owner: str | None = None

    @classmethod
    def of(cls, arbiter, owned: bool = False) -> IpcMode:
        """The arbiter's [circus] endpoint_mode and endpoint_group; its endpoint_owner too if `owned`."""
        return cls(getattr(arbiter, "endpoint_mode", None), getattr(arbiter, "endpoint_group", None),
                   getattr(arbiter, "endpoint_owner", None) if owned else None)

    @property
    def file_mode(self) -> int:
        return (stat.S_IRUSR | stat.S_IWUSR) if self.mode is None else self.mode & 0o777

    @property
    def directory_mode(self) -> int:
        """A directory gcircusd creates: 0700, plus search (never listing nor writing) for those the file's mode lets
        connect: the group, others, or the endpoint_owner (who is an other)."""
        mode = 0o700
        if self.file_mode & 0o060:
            mode |= 0o010
        if self.file_mode & 0o006 or self.owner:
            mode |= 0o001
        return mode


def unsafe_directory(path: str) -> str | None:
    """The first existing directory above the ipc:// file `path` that is group- or world-writable without the sticky
    bit (someone else could rename it away and put their own socket in its place), or None when there is none."""
    directory = os.path.dirname(os.path.realpath(path))
    while True:
        try:
            mode = os.stat(directory).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def check_ipc_directory(option: str, endpoint: str) -> None:
    """EndpointNotAllowed naming the directory when an ipc:// endpoint's file would be under an unsafe one."""
    path = ipc_path(endpoint)
    unsafe = unsafe_directory(path) if path else None
    if unsafe:
        raise EndpointNotAllowed(
            f"refusing to bind {option} {endpoint}: the directory {unsafe} is writable by other users and has no "
            f"sticky bit, so one of them could replace the socket (or a directory above it) with their own. Use a "
            f"directory only gcircusd's user can write, e.g. /run/gcircus (gcircusd creates a missing one 0700)")


def _make_directory(path: str, ipc: IpcMode) -> None:
    """Create the missing directories above the ipc:// file `path` with ipc.directory_mode (given to the group)."""
    missing = []
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
            os.chmod(directory, ipc.directory_mode)
            if ipc.group:
                os.lchown(directory, -1, _group_id(ipc.group))


def _group_id(group: str) -> int:
    return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid


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


def bind_private(sock, option: str, endpoint: str, allow_remote: bool, ipc: IpcMode | str | None = None,
                 curve: KeyPair | None = None) -> bool:
    """Bind a zmq socket the safe way: a tcp:// one as a CURVE server when `curve` keys are given, else on loopback
    unless opted in; an ipc:// file created 0600, then given the mode, group and owner of `ipc` (an IpcMode, or the
    endpoint owner's name), under a directory no one else may write. Returns True when the socket requires CURVE.

    The umask is narrowed around the bind, so the ipc file never exists with wider permissions, even briefly; missing
    directories are created 0700 (see IpcMode.directory_mode). Raises EndpointNotAllowed (a remote address without
    CURVE or the opt-in, an unsafe directory), or OSError naming the option and endpoint when the bind itself fails.
    """
    ipc = ipc if isinstance(ipc, IpcMode) else IpcMode(owner=ipc)
    secured = curve is not None and is_tcp_endpoint(endpoint)
    check_bind_allowed(option, endpoint, allow_remote, secured)
    if curve is not None and secured:
        serve_curve(sock, curve, f"{option} {endpoint}")
    path = ipc_path(endpoint)
    if path:
        check_ipc_directory(option, endpoint)
        _make_directory(path, ipc)
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
        _give_file(path, ipc)
    return secured


def _give_file(path: str, ipc: IpcMode) -> None:
    """The bound ipc:// file's owner and group first (while it is still 0600), then its mode."""
    uid = gid = -1
    if ipc.owner:
        entry = pwd.getpwuid(int(ipc.owner)) if ipc.owner.isdigit() else pwd.getpwnam(ipc.owner)
        uid, gid = entry.pw_uid, entry.pw_gid
    if ipc.group:
        gid = _group_id(ipc.group)
    if (uid, gid) != (-1, -1):
        os.lchown(path, uid, gid)
    os.chmod(path, ipc.file_mode)
