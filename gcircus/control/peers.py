"""Who sent a control request: the peer's identity, as the kernel (or ZeroMQ's CURVE handshake) vouches for it.

- A CURVE client: ZeroMQ's ZAP handler authenticated its key and set the message's `User-Id` to `curve:NAME`.
- ipc://: the uid, gid and pid of the process that connected, from SO_PEERCRED. libzmq reads them when it accepts
  the connection and appends them to the `Peer-Address` property (`...:UID:GID:PID`); when it does not, they are
  read from the connection's own file descriptor (the `srcfd` libzmq records with each message).
- tcp:// on loopback: the uid that owns the client's socket, looked up as identd does in the kernel's socket
  tables by the connection's two addresses and ports (over netlink sock_diag, the kernel's index of those tables;
  /proc/net/tcp and tcp6 where netlink cannot be used). `Peer-Address` carries only the IP, so
  the ports are read from the connection's file descriptor (getpeername, getsockname). A peer whose socket is not
  found (another network namespace, a remote host, a connection already closed) is anonymous.
- inproc://: a thread of gcircusd itself, with gcircusd's identity.
- An HTTP API client (gcircus.http.api, transport `http`): no uid; how it authenticated (its token, a session opened
  with it, or none), its address, and the role the HTTP server gives it (`[http] token_role`).

Nothing is cached between requests: each request is identified from its own message. What comes from the
connection's descriptor is read at once in the receive loop (Sighting: properties and the connection's addresses):
libzmq's I/O thread may close a connection whose peer left and give the number to a new connection, so the window is
kept as short as can be, and a tcp peer's address must still be the one libzmq recorded with the message. The
socket-table and user lookups happen in the request's own greenlet (`identify`). The file descriptor is zmq's: it
is dup'ed, never closed, never used for I/O.
"""
from __future__ import annotations

import errno
import os
import pwd
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import zmq

T = TypeVar("T")
CURVE_PREFIX = "curve:"
HTTP = "http"  # the transport of an HTTP API client's Peer
TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
MAX_TABLE_SIZE = 64 << 20  # a socket table is read whole; bound what a host with countless sockets costs


@dataclass(frozen=True)
class Peer:
    """The sender of one request. `transport` is the endpoint's scheme (ipc, tcp, inproc...); uid, gid and pid are
    the kernel's (pid and gid unknown on tcp); `curve` is the CURVE client's name; nothing known: anonymous. An HTTP
    client (transport `http`) has `http` (bearer, session or anonymous), `address` and the `role` its credentials
    carry instead."""

    transport: str
    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    user: str | None = None
    curve: str | None = None
    http: str | None = None
    address: str | None = None
    role: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.uid is None and self.curve is None

    def audit(self) -> dict[str, Any]:
        """The audit log's form: {"curve": NAME} for a CURVE client, else {"uid", "gid", "pid", "user"} (None where
        unknown: all four for an anonymous peer); {"http": VIA, "address": ADDRESS} for an HTTP client."""
        if self.transport == HTTP:
            return {"http": self.http, "address": self.address}
        if self.curve is not None:
            return {"curve": self.curve}
        return {"uid": self.uid, "gid": self.gid, "pid": self.pid, "user": self.user}

    def __str__(self) -> str:
        if self.transport == HTTP:
            return f"the HTTP client at {self.address} ({self.http})"
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
    """(peer, ours) of the message's connection; None when its descriptor no longer is a TCP connection from the
    address libzmq recorded for the message (Peer-Address), e.g. closed, or reused for another peer's connection."""
    recorded = _property(frame, "Peer-Address")

    def addresses(sock: socket.socket) -> tuple[tuple, tuple] | None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        peer = sock.getpeername()
        if recorded is not None and recorded.strip("[]") != peer[0]:
            return None
        return peer, sock.getsockname()
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
    getpeername/getsockname give them), or None when no such socket is in this network namespace.

    The kernel is asked for that one socket over netlink (sock_diag, what `ss` uses: a hash lookup, microseconds);
    where netlink is not available, /proc/net/tcp and tcp6 are searched (a read of every socket of the host).
    """
    candidates = _candidates(client, server)
    try:
        owners = (_diag_owner(family, (ours, client[1]), (theirs, server[1])) for family, ours, theirs in candidates)
        return next((uid for uid in owners if uid is not None), None)
    except OSError:
        pass
    for family, ours, theirs in candidates:
        uid = _table_owner(family, _proc_address(family, ours, client[1]), _proc_address(family, theirs, server[1]))
        if uid is not None:
            return uid
    return None


def _table_owner(family: int, local: str, remote: str) -> int | None:
    """The uid in the line of /proc/net/tcp (or tcp6) whose addresses are `local` and `remote`, or None."""
    text = _read_table(TCP_TABLES[family == socket.AF_INET6])
    at = text.find(f": {local} {remote} ".encode())
    if at < 0:
        return None
    end = text.find(b"\n", at)
    fields = text[at:end if end >= 0 else len(text)].split()
    try:
        return int(fields[7])  # `: local remote st tx:rx tr:when retrnsmt uid ...` (man 5 proc)
    except (IndexError, ValueError):
        return None


def _proc_address(family: int, host: str, port: int) -> str:
    """HOST:PORT as /proc/net/tcp* print it: each 32-bit word of the address in host byte order, in hex."""
    packed = socket.inet_pton(family, host)
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def _candidates(client: tuple, server: tuple) -> list[tuple[int, str, str]]:
    """(family, client host, server host) to look the client's socket up as: IPv6 as given, and IPv4 for IPv4
    addresses or IPv4-mapped IPv6 ones (the client may be an AF_INET socket)."""
    found: list[tuple[int, str, str]] = []
    for family, prefix in ((socket.AF_INET, "::ffff:"), (socket.AF_INET6, "")):
        hosts = [_plain(host.split("%")[0], prefix) for host in (client[0], server[0])]
        if None in hosts:
            continue
        try:
            for host in hosts:
                socket.inet_pton(family, str(host))
        except OSError:
            continue
        found.append((family, str(hosts[0]), str(hosts[1])))
    return found


def _plain(host: str, mapped_prefix: str) -> str | None:
    """`host` in the family of a table: as it is for tcp6 (no prefix), unmapped for tcp (None if not mapped)."""
    if not mapped_prefix or ":" not in host:
        return host
    return host[len(mapped_prefix):] if host.lower().startswith(mapped_prefix) else None


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_UID_OFFSET = 16 + 4 + 48 + 12  # nlmsghdr, inet_diag_msg's family/state/timer/retrans, its sockid, expires/queues


def _diag_owner(family: int, client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid of the TCP socket at `client` connected to `server`, asked of the kernel over netlink (sock_diag,
    linux/inet_diag.h); None when there is none; OSError when netlink cannot be used here. The kernel answers an
    exact lookup while it handles the request, so the reply is read without waiting."""
    def packed(host: str) -> bytes:
        return socket.inet_pton(family, host).ljust(16, b"\0")
    sockid = (struct.pack("!HH", client[1], server[1]) + packed(client[0]) + packed(server[0])
              + struct.pack("=III", 0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as link:
        link.sendto(header + request, (0, 0))
        reply = link.recv(8192, socket.MSG_DONTWAIT)
    kind = struct.unpack_from("=H", reply, 4)[0]
    if kind == NLMSG_ERROR:
        error = -struct.unpack_from("=i", reply, 16)[0]
        if error == errno.ENOENT:
            return None
        raise OSError(error, os.strerror(error))
    if kind != SOCK_DIAG_BY_FAMILY or len(reply) < _UID_OFFSET + 4:
        raise OSError(errno.EPROTO, "unexpected sock_diag reply")
    return struct.unpack_from("=I", reply, _UID_OFFSET)[0]


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
