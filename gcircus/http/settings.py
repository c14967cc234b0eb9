"""What the [http] settings may say: the control channel's loopback rule, plus TLS and a token off loopback.

Checked when the configuration is loaded, so a mistake is a configuration error naming the option, before anything
starts. The token file is read here too: one readable by group or others is refused, as gcircusd would refuse it.
"""
from __future__ import annotations

import os

from gcircus.http.auth import TOKEN_ROLES, TokenFileError, read_token_file
from gcircus.options import split_http_bind
from gcircus.wire.endpoints import is_loopback_endpoint


def is_loopback_bind(bind: str) -> bool:
    """A unix socket, or a TCP address the control channel's rule (gcircus.wire.endpoints) calls loopback."""
    where = split_http_bind(bind)
    if isinstance(where, str):
        return True
    host, port = where
    return is_loopback_endpoint(f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}")


def problem(settings: dict) -> tuple[str, str] | None:
    """(option, why) for the first thing wrong with `settings` (the [http] options, typed), or None."""
    if not is_loopback_bind(settings["bind"]):
        missing = [key for key in ("token_file", "certfile") if not settings.get(key)]
        if not settings.get("allow_remote_endpoints"):
            return "bind", ("refusing to listen on a non-loopback address: set allow_remote_endpoints = true in "
                            "[http] to accept it (with token_file, certfile and keyfile), or use 127.0.0.1 or "
                            "unix:PATH")
        if missing:
            return "bind", (f"a non-loopback address needs {' and '.join(missing)} in [http]: anyone who reaches it "
                            f"could otherwise read or drive gcircusd")
    if settings.get("token_role", TOKEN_ROLES[-1]) not in TOKEN_ROLES:
        return "token_role", (f"expected {', '.join(TOKEN_ROLES)}: the role of the HTTP API's clients (a client "
                              "without a role would be refused every command: remove [http] instead)")
    if settings.get("keyfile") and not settings.get("certfile"):
        return "keyfile", "keyfile needs certfile (the certificate it is the key of)"
    for key in ("certfile", "keyfile"):
        path = settings.get(key)
        if path and not os.access(path, os.R_OK):
            return key, "the file cannot be read"
    if settings.get("token_file"):
        try:
            read_token_file(settings["token_file"])
        except TokenFileError as exc:
            return "token_file", str(exc)
    return None
