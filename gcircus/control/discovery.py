"""Multicast discovery: answer any datagram on the configured UDP group with the control endpoint (PROTOCOL 2.8).

Off unless `multicast_endpoint` is set (Circus turns it on by default and binds 0.0.0.0, announcing its control
endpoint to the whole network segment). When on, it joins the group on every interface, as Circus does.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import socket
import struct
from typing import Any
from urllib.parse import urlparse

import gevent
from gevent import socket as gsocket

log = logging.getLogger(__name__)


class DiscoveryError(ValueError):
    """A multicast_endpoint that is not udp://<multicast group>:<port>."""


def parse_multicast_endpoint(endpoint: str) -> tuple[str, int]:
    parsed = urlparse(endpoint)
    if parsed.scheme != "udp" or not parsed.hostname or not parsed.port:
        raise DiscoveryError(f"multicast_endpoint {endpoint!r} must look like udp://237.219.251.97:12027")
    try:
        group = ipaddress.ip_address(parsed.hostname)
    except ValueError:
        raise DiscoveryError(f"multicast_endpoint {endpoint!r}: {parsed.hostname!r} is not an IP address") from None
    if not group.is_multicast or group.version != 4:
        raise DiscoveryError(f"multicast_endpoint {endpoint!r}: {group} is not an IPv4 multicast group "
                             "(224.0.0.0-239.255.255.255)")
    return str(group), parsed.port


class DiscoveryResponder:
    """A greenlet answering discovery probes with `{"endpoint": <control endpoint>}`."""

    def __init__(self, multicast_endpoint: str, control_endpoint: str):
        self.group, self.port = parse_multicast_endpoint(multicast_endpoint)
        self.reply = json.dumps({"endpoint": control_endpoint}).encode()
        self.sock: Any = None  # a gevent UDP socket while started
        self._loop: gevent.Greenlet | None = None

    def start(self) -> None:
        sock = gsocket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        membership = struct.pack("4s4s", socket.inet_aton(self.group), socket.inet_aton("0.0.0.0"))
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            sock.bind(("0.0.0.0", self.port))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self._loop = gevent.spawn(self._answer_forever)
        log.info("multicast discovery on udp://%s:%d", self.group, self.port)

    def _answer_forever(self) -> None:
        while True:
            try:
                _, sender = self.sock.recvfrom(1024)
                self.sock.sendto(self.reply, sender)
            except OSError as exc:
                if self.sock is None:
                    return
                log.warning("multicast discovery: %s", exc)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if self._loop is not None:
            self._loop.kill()  # waits for it to end before its socket closes
            self._loop = None
        if sock is not None:
            sock.close()
