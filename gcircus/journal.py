"""systemd-journald's native protocol: one datagram per entry, sent to the journal's AF_UNIX socket.

An entry is a list of fields. A field whose value has no newline goes as `KEY=VALUE\\n`; one with a newline (a
traceback, binary output) as `KEY\\n`, its length as a 64-bit little-endian integer, the bytes, `\\n`. journald adds
the trusted fields itself (`_PID`, `_UID`, `_SYSTEMD_UNIT`...: those of gcircusd, the sender), so what gcircus knows
about a child goes in fields of its own (GCIRCUS_PID...).

This is used from threads, never from the gevent hub: gcircusd's log writer thread (`logoutput = journal`) and the
stream sinks' worker threads (JournalStream). So the socket is a plain blocking one, taken from before any monkey
patching, with a send timeout: a journal that stops taking entries makes the sender fail after SEND_TIMEOUT, which
the caller treats as any output failure, instead of waiting forever.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import struct
from collections.abc import Iterable

from gevent import monkey

DEFAULT_SOCKET = "/run/systemd/journal/socket"
# Where the journal socket is looked for instead of DEFAULT_SOCKET (the tests point gcircusd at a socket they bound).
SOCKET_VARIABLE = "GCIRCUS_JOURNAL_SOCKET"
SEND_TIMEOUT = 5.0  # seconds one entry may wait for the journal to take it
# Bytes of MESSAGE per entry, as journald cuts stdout lines (LineMax=48K): a longer line goes as several entries, so
# that a datagram stays well below 64 KiB (larger ones need costly kernel allocations that may fail).
MAX_MESSAGE = 48 * 1024
IDENTIFIER = "gcircusd"

# logging levels to syslog priorities (what journalctl -p filters on)
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
# gcircus's own log lines about one watcher start with `watcher 'NAME'` (the name as %r writes it).
_WATCHER_MESSAGE = re.compile(r"watcher (['\"])(.+?)\1")

_socket_class = monkey.get_original("socket", "socket")


def socket_path() -> str:
    """The journal socket to send to: $GCIRCUS_JOURNAL_SOCKET if set, else systemd's."""
    return os.environ.get(SOCKET_VARIABLE) or DEFAULT_SOCKET


def encode_entry(fields: Iterable[tuple[str, str | bytes]]) -> bytes:
    """One entry in the native format; values are str (UTF-8) or bytes (sent as they are)."""
    parts = []
    for key, value in fields:
        data = value.encode("utf-8", "replace") if isinstance(value, str) else value
        if b"\n" in data:
            parts.append(key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            parts.append(key.encode() + b"=" + data + b"\n")
    return b"".join(parts)


class JournalSocket:
    """A connection to the journal socket, made at the first entry and again after an error (OSError raised)."""

    def __init__(self, path: str | None = None):
        self.path = path or socket_path()
        self._socket = None

    def send(self, fields: Iterable[tuple[str, str | bytes]]) -> None:
        """Send one entry; OSError (a timeout included) if the journal did not take it. Blocks: call off the hub."""
        data = encode_entry(fields)
        try:
            self._connected().send(data)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def connect(self) -> None:
        """Connect now (OSError naming the path if the journal cannot be reached); send() connects when needed."""
        self._connected()

    def _connected(self):
        if self._socket is None:
            # Connected, so that a full journal queue makes send wait (poll) for room instead of failing at once.
            sock = _socket_class(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.settimeout(SEND_TIMEOUT)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                raise OSError(exc.errno, f"cannot reach the journal at {self.path}: {exc.strerror}") from None
            self._socket = sock
        return self._socket


def check_available(path: str | None = None) -> str | None:
    """Why the journal cannot be used (its socket is missing), or None when it can."""
    path = path or socket_path()
    if not os.path.exists(path):
        return f"the journal socket {path} does not exist (is systemd-journald running?)"
    return None


class JournalHandler(logging.Handler):
    """gcircusd's log as journal entries: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=gcircusd and, for a line about one
    watcher, GCIRCUS_WATCHER. Meant to sit behind gcircusd's log writer thread (gcircus.logqueue): it blocks."""

    def __init__(self, path: str | None = None, identifier: str = IDENTIFIER):
        super().__init__()
        self.identifier = identifier
        self.journal = JournalSocket(path)
        self._failing = False
        self.setFormatter(logging.Formatter("%(message)s"))  # journald keeps the time, pid and unit itself

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            fields = [("MESSAGE", message[:MAX_MESSAGE]), ("PRIORITY", str(priority(record.levelno))),
                      ("SYSLOG_IDENTIFIER", self.identifier)]
            watcher = _WATCHER_MESSAGE.match(message)
            if watcher is not None:
                fields.append(("GCIRCUS_WATCHER", watcher.group(2)))
            self.journal.send(fields)
        except Exception as exc:  # noqa: BLE001 - a log that cannot be written has nowhere else to go but stderr
            self._report(exc)
            return
        self._failing = False

    def _report(self, error: Exception) -> None:
        if not self._failing:
            self._failing = True
            os.write(2, f"gcircusd: cannot write to the journal ({self.journal.path}): {error}\n".encode())

    def close(self) -> None:
        self.journal.close()
        super().close()


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (a custom level gets that of the level below it)."""
    for level in sorted(PRIORITIES, reverse=True):
        if levelno >= level:
            return PRIORITIES[level]
    return 7
