"""A datagram socket the test binds in place of systemd's: the notify socket or the journal socket gcircusd sends to.

`DatagramReceiver(address)` binds an AF_UNIX datagram socket (a path, or an abstract name given with a leading '@')
and collects every datagram from a reader greenlet it owns; `close()` kills it and closes the socket. The parsers
read the two formats: sd_notify's `KEY=VALUE` lines, and the journal's native protocol, whose values may also be
sent as `KEY\\n<64-bit little-endian length><bytes>\\n` (that form carries newlines).
"""
from __future__ import annotations

import os
import socket
import struct

import gevent
import gevent.socket

from tests.support.waiting import wait_for


class DatagramReceiver:
    """Every datagram sent to `address`, in order of arrival (`datagrams`)."""

    def __init__(self, address: str):
        self.address = address
        self.datagrams: list[bytes] = []
        self._socket = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self._reader = gevent.spawn(self._read_forever)

    def _read_forever(self) -> None:
        while True:
            self.datagrams.append(self._socket.recv(1 << 20))

    def close(self) -> None:
        self._reader.kill(block=True)
        self._socket.close()
        if not self.address.startswith("@") and os.path.exists(self.address):
            os.unlink(self.address)

    def notifications(self) -> list[dict[str, str]]:
        """The datagrams read as sd_notify messages."""
        return [parse_notification(data) for data in self.datagrams]

    def journal_entries(self) -> list[dict[str, str]]:
        """The datagrams read as native journal entries."""
        return [parse_journal_entry(data) for data in self.datagrams]

    def wait_notification(self, key: str, value: str | None = None, after: int = 0, timeout: float = 30) -> int:
        """Wait for a notification (from index `after` on) holding `key` (= `value` if given); return its index."""
        def find():
            for index, message in enumerate(self.notifications()[after:], after):
                if key in message and (value is None or message[key] == value):
                    return index + 1  # truthy even for the first message
            return None
        return wait_for(find, timeout, message=f"a notification with {key}" + (f"={value}" if value else "")) - 1


def parse_notification(data: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)


def parse_journal_entry(data: bytes) -> dict[str, str]:
    """One native-protocol datagram as {FIELD: value} (values decoded as UTF-8)."""
    return {key: value.decode() for key, value in parse_journal_fields(data).items()}


def parse_journal_fields(data: bytes) -> dict[str, bytes]:
    """One native-protocol datagram as {FIELD: the value's bytes}."""
    fields: dict[str, bytes] = {}
    while data:
        line, _, rest = data.partition(b"\n")
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value
            data = rest
            continue
        (size,) = struct.unpack("<Q", rest[:8])
        fields[line.decode()] = rest[8:8 + size]
        data = rest[8 + size + 1:]
    return fields
