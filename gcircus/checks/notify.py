"""The sd_notify protocol, server side: one datagram socket per watcher that its processes report readiness through.

A child finds the socket in its NOTIFY_SOCKET variable and sends newline-separated KEY=VALUE datagrams (READY=1,
STATUS=..., WATCHDOG=1...), as it would to systemd. The kernel stamps each datagram with the sender's pid
(SO_PASSCRED / SCM_CREDENTIALS), so a message is credited to the process that sent it, or to the supervised
ancestor of a helper that sent it (`owner_of`), never to whatever the text claims. The address is abstract (no file
to clean up or to race for) and unique per gcircusd, watcher and socket, so no watcher hears another's processes.
"""
from __future__ import annotations

import array
import logging
import os
import re
import socket
from collections.abc import Callable, Container

import gevent
import gevent.socket

from gcircus import linux

log = logging.getLogger(__name__)

# The assignments gcircus acts on or shows; everything else a child sends is ignored.
KNOWN_FIELDS = frozenset({"READY", "STATUS", "RELOADING", "STOPPING", "WATCHDOG", "MAINPID", "EXTEND_TIMEOUT_USEC",
                          "WATCHDOG_USEC"})
MAX_DATAGRAM = 4096  # bytes; a longer datagram is dropped whole (systemd reads at most a page per message too)
MAX_ANCESTRY = 16  # parents walked up from a sender to find the supervised process it runs under
_UCRED_SIZE = array.array("i").itemsize * 3  # struct ucred: pid, uid, gid
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]")


def parse_message(data: bytes) -> dict[str, str]:
    """The known KEY=VALUE assignments of a datagram; lines that are not UTF-8, have no `=` or an unknown key are
    skipped (a later assignment of a key wins)."""
    fields = {}
    for line in data.split(b"\n"):
        key, equals, value = line.partition(b"=")
        if not equals:
            continue
        try:
            name, text = key.decode("ascii"), value.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if name in KNOWN_FIELDS:
            fields[name] = text
    return fields


def sender_pid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The pid the kernel put in a datagram's SCM_CREDENTIALS, or None when there is none (or it is 0: a sender
    outside our pid namespace)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED_SIZE:
            pid = array.array("i", data[:_UCRED_SIZE])[0]
            return pid if pid > 0 else None
    return None


def parent_of(pid: int) -> int:
    """The parent pid of `pid` from /proc/PID/stat (raises OSError once `pid` is gone)."""
    data = linux.read_proc(pid, "stat")
    # The command name may contain spaces and parentheses: the fields resume after its last ")".
    return int(data[data.rfind(b")") + 2:].split(None, 2)[1])


def owner_of(pid: int, known_pids: Container[int]) -> int | None:
    """The pid among `known_pids` that `pid` is or descends from (up to MAX_ANCESTRY parents), else None.

    So `sh -c 'python app.py'` is credited to the shell gcircusd spawned. A sender that has already exited cannot
    be placed (its /proc entry is gone) and gives None, as for systemd.
    """
    for _ in range(MAX_ANCESTRY):
        if pid in known_pids:
            return pid
        if pid <= 1:
            return None
        try:
            pid = parent_of(pid)
        except (OSError, ValueError, IndexError):
            return None
    return None


def abstract_address(watcher_name: str) -> str:
    """A fresh abstract socket name for `watcher_name` (without the leading NUL): gcircus, our pid, the name made
    safe and short, and a random token, so two watchers, daemons or restarts never share one."""
    safe = _UNSAFE_NAME_CHARACTERS.sub("_", watcher_name)[:40]
    return f"gcircus/{os.getpid()}/{safe}/{os.urandom(8).hex()}"


class NotifySocket:
    """The NOTIFY_SOCKET of one watcher's processes; `on_message(pid, fields)` is called for each datagram with
    known fields, from the reader greenlet the socket owns (started by `start`, killed and joined by `close`).

    `pid` is the sender's, as the kernel saw it: map it to a supervised process with `owner_of`.
    """

    def __init__(self, watcher_name: str, on_message: Callable[[int, dict[str, str]], None],
                 carried: tuple[int, str] | None = None):
        """`carried`: (descriptor, address) of the socket the image gcircusd replaced bound (gcircus.handover): the
        children keep their NOTIFY_SOCKET, and what they sent meanwhile waits in it."""
        self.watcher_name = watcher_name
        self.on_message = on_message
        self._reader: gevent.Greenlet | None = None
        if carried is not None:
            fd, self.address = carried
            os.set_inheritable(fd, False)  # inheritable for the exec only
            self._socket = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM, fileno=fd)
            return
        self.address = abstract_address(watcher_name)
        self._socket = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # not inherited by children
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self._socket.bind("\0" + self.address)
        except OSError:
            self._socket.close()
            raise

    def fileno(self) -> int:
        return self._socket.fileno()

    @property
    def env_value(self) -> str:
        """The NOTIFY_SOCKET value for the children: '@' stands for the abstract address's leading NUL."""
        return "@" + self.address

    def start(self) -> None:
        """Start reading datagrams (once)."""
        if self._reader is None:
            self._reader = gevent.spawn(self._read_forever)

    def close(self) -> None:
        """Stop the reader (killed and joined) and close the socket; the address is free at once."""
        if self._reader is not None:
            self._reader.kill(block=True)
        self._socket.close()

    def _read_forever(self) -> None:
        space = socket.CMSG_SPACE(_UCRED_SIZE)
        while True:
            try:
                data, ancillary, flags, _ = self._socket.recvmsg(MAX_DATAGRAM, space)
            except OSError as exc:
                log.error("watcher %r: notify socket closed: %s", self.watcher_name, exc)
                return
            self._deliver(data, ancillary, flags)

    def _deliver(self, data: bytes, ancillary: list, flags: int) -> None:
        """Hand a datagram's known fields to on_message; drop a truncated one or one without credentials."""
        pid = sender_pid(ancillary)
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or pid is None:
            log.debug("watcher %r: notify datagram dropped (too long, or no sender credentials)", self.watcher_name)
            return
        fields = parse_message(data)
        if not fields:
            return
        try:
            self.on_message(pid, fields)
        except Exception:
            log.exception("watcher %r: handling a notify message from pid %d failed", self.watcher_name, pid)
