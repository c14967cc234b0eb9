"""Who sent a control request: the peer's identity, as the kernel (or ZeroMQ's CURVE handshake) vouches for it.

- A CURVE client: ZeroMQ's ZAP handler authenticated its key and set the message's `User-Id` to `curve:NAME`.
- ipc://: the uid, gid and pid of the process that connected, from SO_PEERCRED. libzmq reads them when it accepts
  the connection and appends them to the `Peer-Address` property (`...:UID:GID:PID`); when it does not, they are
  read from the connection's own file descriptor (the `srcfd` libzmq records with each message).
- tcp:// on loopback: the uid that owns the client's socket, looked up as identd does in the kernel's socket
  tables (/proc/net/tcp, tcp6) by the connection's two addresses and ports. `Peer-Address` carries only the IP, so
  the ports are read from the connection's file descriptor (getpeername, getsockname). A peer whose socket is not
  found (another network namespace, a remote host, a connection already closed) is anonymous.
- inproc://: a thread of gcircusd itself, with gcircusd's identity.

Nothing is cached between requests: each request is identified from its own message. Only what can be read at once
is read in the receive loop (Sighting: properties and the connection's addresses, before libzmq can close that
descriptor and reuse its number for another connection); the socket-table and user lookups happen in the request's
own greenlet (`identify`). The file descriptor is zmq's: it is dup'ed, never closed, never used for I/O.
"""
from __future__ import annotations

import os
import pwd
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import zmq

T = TypeVar("T")
CURVE_PREFIX = "curve:"
TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
MAX_TABLE_SIZE = 64 << 20  # a socket table is read whole; bound what a host with countless sockets costs


@dataclass(frozen=True)
class Peer:
    """The sender of one request. `transport` is the endpoint's scheme (ipc, tcp, inproc...); uid, gid and pid are
    the kernel's (pid and gid unknown on tcp); `curve` is the CURVE client's name; nothing known: anonymous."""

    transport: str
    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    user: str | None = None
    curve: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.uid is None and self.curve is None

    def audit(self) -> dict[str, Any]:
        """The audit log's form: {"curve": NAME} for a CURVE client, else {"uid", "gid", "pid", "user"} (None where
        unknown: all four for an anonymous peer)."""
        if self.curve is not None:
            return {"curve": self.curve}
        return {"uid": self.uid, "gid": self.gid, "pid": self.pid, "user": self.user}

    def __str__(self) -> str:
        if self.curve is not None:
            return f"CURVE client {self.curve!r}"
        if self.uid is None:
            return f"an anonymous {self.transport} peer (its uid could not be found)"
        details = f"uid {self.uid}" + (f", pid {self.pid}" if self.pid is not None else "")
        return f"user {self.user!r} ({details})" if self.user else f"a user without a passwd entry ({details})"


class Sighting(NamedTuple):
    """What one message says about its sender, read as soon as it is received (see the module docstring)."""

    transport: str
    user_id: str | None  # the User-Id property (set by a ZAP handler)
    credentials: tuple[int, int, int] | None  # ipc: (uid, gid, pid)
    addresses: tuple[tuple, tuple] | None  # tcp: (the peer's address, ours), as getpeername/getsockname give them


def transport_of(endpoint: str) -> str:
    """The scheme of a zmq endpoint: ipc, tcp, inproc..."""
    return endpoint.partition("://")[0].lower()


def sight(frame, transport: str) -> Sighting:
    """Read the sender's traces from one received zmq Frame (any frame of the message): cheap, no lookups."""
    user_id = _property(frame, "User-Id")
    if user_id is not None and user_id.startswith(CURVE_PREFIX):
        return Sighting(transport, user_id, None, None)
    if transport == "ipc":
        return Sighting(transport, user_id, _ipc_credentials(frame), None)
    if transport == "tcp":
        return Sighting(transport, user_id, None, _tcp_addresses(frame))
    return Sighting(transport, user_id, None, None)


def identify(seen: Sighting) -> Peer:
    """The peer of a Sighting: the CURVE name, the kernel's credentials, or the owner of the tcp socket."""
    if seen.user_id is not None and seen.user_id.startswith(CURVE_PREFIX):
        return Peer(seen.transport, curve=seen.user_id[len(CURVE_PREFIX):])
    if seen.transport == "inproc":
        return _local(seen.transport, os.geteuid(), os.getegid(), os.getpid())
    if seen.credentials is not None:
        return _local(seen.transport, *seen.credentials)
    if seen.addresses is not None:
        uid = tcp_socket_owner(*seen.addresses)
        if uid is not None:
            return _local(seen.transport, uid, None, None)
    return Peer(seen.transport)


def ourselves() -> Peer:
    """gcircusd itself (a request handed to the server in-process, not received from a socket)."""
    return identify(Sighting("inproc", None, None, None))


def _local(transport: str, uid: int, gid: int | None, pid: int | None) -> Peer:
    try:
        user: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = None
    return Peer(transport, uid, gid, pid, user)


def _property(frame, name: str) -> str | None:
    try:
        value = frame.get(name)
    except (zmq.ZMQError, AttributeError, TypeError):  # not set on this message, or not a zmq Frame
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _source_fd(frame) -> int | None:
    try:
        fd = frame.get(zmq.SRCFD)
    except (zmq.ZMQError, AttributeError, TypeError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _ipc_credentials(frame) -> tuple[int, int, int] | None:
    """(uid, gid, pid) from Peer-Address (`...:UID:GID:PID`), else SO_PEERCRED of the message's connection."""
    parts = (_property(frame, "Peer-Address") or "").rsplit(":", 3)
    if len(parts) == 4 and all(part.isdigit() for part in parts[1:]):
        uid, gid, pid = (int(part) for part in parts[1:])
        return uid, gid, pid

    def peercred(sock: socket.socket) -> tuple[int, int, int] | None:
        if sock.family != socket.AF_UNIX:
            return None
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return uid, gid, pid
    return _on_copy(_source_fd(frame), peercred)


def _tcp_addresses(frame) -> tuple[tuple, tuple] | None:
    def addresses(sock: socket.socket) -> tuple[tuple, tuple] | None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return sock.getpeername(), sock.getsockname()
    return _on_copy(_source_fd(frame), addresses)


def _on_copy(fd: int | None, read: Callable[[socket.socket], T | None]) -> T | None:
    """`read(sock)` on a socket object over a dup of zmq's file descriptor `fd` (None when there is none, it is no
    socket, or the connection just closed): the dup is closed after, zmq's descriptor never is."""
    if fd is None:
        return None
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        return read(sock)
    except OSError:
        return None
    finally:
        sock.close()


# -- the kernel's socket tables ----------------------------------------------------------------------------------

def tcp_socket_owner(client: tuple, server: tuple) -> int | None:
    """The uid owning the local TCP socket bound at `client` and connected to `server` ((host, port, ...) tuples as
    getpeername/getsockname give them), or None when no such socket is in this network namespace."""
    for table, local, remote in _table_keys(client, server):
        needle = f": {local} {remote} ".encode()
        text = _read_table(table)
        at = text.find(needle)
        if at < 0:
            continue
        end = text.find(b"\n", at)
        fields = text[at:end if end >= 0 else len(text)].split()
        try:
            return int(fields[7])  # `: local remote st tx:rx tr:when retrnsmt uid ...` (man 5 proc)
        except (IndexError, ValueError):
            return None
    return None


def _table_keys(client: tuple, server: tuple) -> list[tuple[str, str, str]]:
    """(table, local, remote) to look for, as /proc/net/tcp* print addresses: an IPv4-mapped IPv6 pair is also
    looked up as IPv4 (the client may be an AF_INET socket)."""
    keys = []
    for table, family, prefix in ((TCP_TABLES[0], socket.AF_INET, "::ffff:"), (TCP_TABLES[1], socket.AF_INET6, "")):
        client_host, server_host = _plain(client[0], prefix), _plain(server[0], prefix)
        if client_host is None or server_host is None:
            continue
        try:
            local, remote = _proc_address(family, client_host, client[1]), _proc_address(family, server_host, server[1])
        except OSError:
            continue
        keys.append((table, local, remote))
    return keys


def _plain(host: str, mapped_prefix: str) -> str | None:
    """`host` in the family of a table: as it is for tcp6 (no prefix), unmapped for tcp (None if not mapped)."""
    if not mapped_prefix:
        return host
    if ":" not in host:
        return host
    return host[len(mapped_prefix):] if host.lower().startswith(mapped_prefix) else None


def _proc_address(family: int, host: str, port: int) -> str:
    """HOST:PORT as the kernel prints it: each 32-bit word of the address in host byte order, in hex."""
    packed = socket.inet_pton(family, host.split("%")[0])
    words = struct.unpack(f"{'<' if sys.byteorder == 'little' else '>'}{len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def _read_table(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    chunks, size = [], 0
    try:
        while size < MAX_TABLE_SIZE:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
