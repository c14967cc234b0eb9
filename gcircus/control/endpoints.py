"""Endpoint safety rules: control and event sockets stay on loopback unless the operator opts in explicitly."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

OPT_IN = "allow_remote_endpoints"


class EndpointNotAllowed(ValueError):
    """A TCP endpoint on a non-loopback address without the explicit opt-in."""


def ipc_path(endpoint: str) -> str | None:
    """The filesystem path of an `ipc://` endpoint, else None."""
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc:// and inproc:// endpoints and tcp:// ones whose host resolves only to loopback addresses."""
    if not endpoint.startswith("tcp://"):
        return True
    host = urlparse(endpoint).hostname or ""
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


def check_bind_allowed(option: str, endpoint: str, allow_remote: bool) -> None:
    """Refuse a non-loopback TCP bind unless `allow_remote_endpoints = true`, saying why and how."""
    if allow_remote or is_loopback_endpoint(endpoint):
        return
    raise EndpointNotAllowed(
        f"refusing to bind {option} {endpoint}: it is not a loopback address, and the control protocol has no "
        f"authentication, so anyone who can reach it could run any command as gcircusd's user. Use an ipc:// "
        f"path or 127.0.0.1, or set `{OPT_IN} = true` in [circus] to accept the risk.")
