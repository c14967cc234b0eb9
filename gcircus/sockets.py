"""Managed sockets (`[socket:NAME]`): bound by the arbiter before any watcher starts, handed to children by fd.

A `CircusSocket` is a `socket.socket` built from a `[socket:NAME]` section (or keyword arguments, as in Circus's
library API). The arbiter keeps them in a `Sockets` dict keyed by name, binds them all before it starts the first
watcher and closes them only after the last watcher stopped, so they stay bound while processes are restarted or
reloaded: connections made meanwhile wait in the kernel's listen queue until a new worker accepts them.

Differences from Circus, on purpose:

* The sockets are *not* inheritable (close-on-exec, Python's default). A child receives exactly the sockets its
  watcher may use, through `pass_fds`, and only when the watcher has `use_sockets = true`: the sockets its `cmd` or
  `args` name (`$(circus.sockets.NAME)` / `((circus.sockets.NAME))`) plus its `stdin_socket`; a watcher that names
  none gets all the arbiter's sockets (what Circus's children see). `stdin_socket` is dup'ed onto fd 0 whether or
  not `use_sockets` is set. Circus marks every socket inheritable and leaves it to `close_fds`.
* `umask` is read as octal (`022` is 0o22); Circus parses it in base 10 (PROTOCOL.md 8.16). Empty means the
  daemon's umask is kept.
* `so_reuseport` sockets are bound by the daemon like the others, with SO_REUSEPORT set (so workers may bind more
  sockets on the same address); Circus skips them and binds a fresh one at each spawn.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import stat

import gevent
import gevent.select

log = logging.getLogger(__name__)

_NAMED = re.compile(r"(?:\$\(|\(\()circus\.sockets\.([\w.-]+)\)\)?", re.IGNORECASE)
ON_DEMAND_POLL = 0.1  # how often a started on-demand watcher is checked for having gone back to stopped


class SocketError(OSError):
    """A managed socket cannot be bound (address in use, path exists, bad interface...); the message says which."""


class CircusSocket(socket.socket):
    """A listening socket described by a `[socket:NAME]` section."""

    def __init__(self, name: str = "", host: str = "localhost", port: int = 8080, family=socket.AF_INET,
                 type=socket.SOCK_STREAM, proto: int = 0, backlog: int = 2048, path: str | None = None,
                 umask: int | None = None, replace: bool = False, interface: str | None = None,
                 so_reuseport: bool = False, blocking: bool = False, fileno: int | None = None, **extra):
        if path:
            family = socket.AF_UNIX
        # `fileno`: a socket gcircusd already bound and carried over its re-exec (see adopt_bound): not bound again.
        super().__init__(family=int(family), type=int(type), proto=int(proto or 0), fileno=fileno)
        self.name = name.lower()
        self.host = None if path else host
        self.port = None if path else int(port)
        self.path = path or None
        self.socktype = int(type)
        self.backlog = int(backlog)
        self.umask = umask
        self.replace = replace
        self.interface = interface
        self.so_reuseport = bool(so_reuseport) and hasattr(socket, "SO_REUSEPORT")
        self.blocking = blocking
        self._cfg = {k: v for k, v in extra.items() if not k.startswith("_")}
        self._cfg.update(name=self.name, host=host, port=port, family=int(family), type=int(type), proto=proto,
                         backlog=backlog, path=path, umask=umask, replace=replace, interface=interface,
                         so_reuseport=so_reuseport, blocking=blocking)
        self.bound = False
        self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.so_reuseport:
            self.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.setblocking(bool(blocking))

    @classmethod
    def load_from_config(cls, cfg: dict) -> CircusSocket:
        """A socket from a parsed `[socket:NAME]` dict (gcircus.config); the dict is kept as `_cfg`."""
        return cls(**cfg)

    @classmethod
    def adopt_bound(cls, cfg: dict, fd: int) -> CircusSocket:
        """The socket of `cfg` around descriptor `fd`, bound and listening before gcircusd re-executed itself: its
        listen queue (and the connections waiting in it) carries over, nothing is bound again."""
        sock = cls(**cfg, fileno=fd)
        if not sock.is_unix:
            sock.host, sock.port = sock.getsockname()[:2]
        sock.bound = True
        return sock

    @property
    def config(self) -> dict:
        return dict(self._cfg)

    @property
    def is_unix(self) -> bool:
        return self.family == socket.AF_UNIX

    @property
    def location(self) -> str:
        return str(self.path) if self.is_unix else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"socket {self.name!r} at {self.location}"

    def bind_and_listen(self) -> None:
        """Bind (applying umask, replace and interface) and listen; SocketError says what went wrong and where."""
        try:
            if self.is_unix:
                self._bind_unix()
            else:
                if self.interface:
                    self.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_BINDTODEVICE", 25),
                                    self.interface.encode() + b"\0")
                infos = socket.getaddrinfo(self.host, self.port, self.family, self.socktype)
                self.bind(infos[0][4])
            if self.socktype in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
                self.listen(self.backlog)
        except SocketError:
            raise
        except OSError as exc:  # socket.gaierror included
            where = self.location + (f" (interface {self.interface})" if self.interface and not self.is_unix else "")
            raise SocketError(exc.errno, f"socket {self.name!r}: cannot bind {where}: {exc.strerror or exc}") from None
        if not self.is_unix:
            address = self.getsockname()
            self.host, self.port = address[0], address[1]  # port 0: the kernel's choice, read back
        self.bound = True
        log.info("%s bound (fd %d)", self, self.fileno())

    def _bind_unix(self) -> None:
        path = self.path
        if os.path.lexists(path):
            if not self.replace:
                raise SocketError(17, f"socket {self.name!r}: {path!r} already exists; remove it, or set "
                                      f"'replace = true' to replace it")
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise SocketError(17, f"socket {self.name!r}: {path!r} exists and is not a socket; not replacing it")
            os.unlink(path)
        old = os.umask(self.umask) if self.umask is not None else None
        try:
            self.bind(path)
        finally:
            if old is not None:
                os.umask(old)

    def close(self) -> None:
        """Close the socket; a unix socket's file is removed (if it is still ours)."""
        was_bound = self.bound and self.fileno() != -1
        super().close()
        if was_bound and self.is_unix and self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.bound = False


class Sockets(dict):
    """The arbiter's sockets by (lowercase) name."""

    def __init__(self, sockets=None):
        super().__init__()
        for sock in sockets or ():
            self.add(sock)

    def add(self, sock=None, **kwargs) -> CircusSocket:
        """Add a CircusSocket, a config dict, or keyword arguments; ValueError on a duplicate name."""
        if sock is None:
            sock = CircusSocket(**kwargs)
        elif isinstance(sock, dict):
            sock = CircusSocket.load_from_config(sock)
        if sock.name in self:
            sock.close()
            raise ValueError(f"socket {sock.name!r} already exists")
        self[sock.name] = sock
        return sock

    def bind_and_listen_all(self) -> None:
        """Bind every socket not bound yet (closed ones are made again from their config). All or nothing."""
        done = []
        try:
            for name, sock in list(self.items()):
                if sock.fileno() == -1:
                    sock = self[name] = CircusSocket.load_from_config(sock.config)
                if not sock.bound:
                    sock.bind_and_listen()
                    done.append(sock)
        except BaseException:
            for sock in done:
                sock.close()
            raise

    def close_all(self) -> None:
        for sock in self.values():
            sock.close()

    def for_watcher(self, watcher) -> dict:
        """The sockets a watcher may use: those its cmd/args name (all if none), plus its stdin_socket."""
        names = named_sockets(watcher)
        unknown = sorted(n for n in names if n not in self)
        if unknown:
            log.warning("watcher %r names unknown socket(s) %s", watcher.name, ", ".join(unknown))
        chosen = {n: self[n] for n in names if n in self} if names else dict(self)
        stdin = (watcher.stdin_socket or "").lower()
        if stdin and stdin in self:
            chosen[stdin] = self[stdin]
        return chosen


def named_sockets(watcher) -> set[str]:
    """Socket names a watcher's cmd and args refer to, lowercased."""
    args = watcher.args
    text = " ".join([str(watcher.cmd)] + ([str(a) for a in args] if isinstance(args, (list, tuple))
                                          else [str(args or "")]))
    return {m.lower() for m in _NAMED.findall(text)}


class OnDemand:
    """Starts one on-demand watcher when a connection (or datagram) is pending on one of its sockets.

    The connection is not accepted here: it waits in the listen queue for the child. Every on-demand watcher has its
    own waiter, so watchers sharing a socket all start on the first connection (Circus starts only the first,
    PROTOCOL.md 8.28). A watcher that went back to stopped (its processes exited, or `stop`) waits again; a watcher
    the flapping guard stopped is left to the guard.
    """

    def __init__(self, watcher, sockets: dict):
        self.watcher = watcher
        self.sockets = sockets
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self.greenlet is None and self.sockets:
            self.greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        greenlet, self.greenlet = self.greenlet, None
        if greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.kill(block=True)

    def _idle(self) -> bool:
        return self.watcher.is_stopped()  # not backing off or failed: the respawn policy owns those

    def _run(self) -> None:
        w = self.watcher
        while True:
            if not self._idle():
                gevent.sleep(ON_DEMAND_POLL)
                continue
            fds = [s.fileno() for s in self.sockets.values() if s.fileno() != -1]
            if not fds:
                return
            readable, _, _ = gevent.select.select(fds, [], [], 1.0)
            if not readable or not self._idle():
                continue
            log.info("watcher %r: connection pending on its socket(s), starting it (on_demand)", w.name)
            try:
                w.start()
            except Exception:  # noqa: BLE001 - keep waiting; the next connection tries again
                log.exception("watcher %r: on-demand start failed", w.name)
                gevent.sleep(1.0)
            if self._idle():  # it could not start (spawn failures, a hook): do not spin on the pending connection
                gevent.sleep(1.0)
