"""Requests to gcircusd's HTTP server from tests: the stdlib's blocking http.client (the test process is not
monkey-patched) over TCP or a unix socket, with a timeout, and a gcircusd configured with an [http] section."""
from __future__ import annotations

import http.client
import json
import os
import socket
import textwrap
from dataclasses import dataclass

from tests.support.daemons import Daemon, circus_config
from tests.support.ports import free_port
from tests.support.waiting import wait_for

TOKEN = "test-token-0123456789"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class UnixConnection(http.client.HTTPConnection):
    """HTTP over the unix socket at `path`."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def request(where: str, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None,
            timeout: float = 20.0) -> Reply:
    """One request to `where` (HOST:PORT or unix:PATH); the reply, whatever its status."""
    if where.startswith("unix:"):
        connection: http.client.HTTPConnection = UnixConnection(where[5:], timeout)
    else:
        host, port = where.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def bearer(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def write_token(tmp_path, token: str = TOKEN, mode: int = 0o600) -> str:
    path = tmp_path / "token"
    path.write_text(token + "\n")
    os.chmod(path, mode)
    return str(path)


class HttpDaemon:
    """gcircusd with [http] on a free port of 127.0.0.1 (or `bind`), token_file set unless `token` is None, and the
    `circus` lines in [circus]."""

    def __init__(self, tmp_path, watchers: str, http: str = "", token: str | None = TOKEN, bind: str | None = None,
                 circus: str = ""):
        self.bind = bind or f"127.0.0.1:{free_port()}"
        token_line = f"token_file = {write_token(tmp_path, token)}\n" if token is not None else ""
        section = f"[http]\nbind = {self.bind}\n{token_line}{textwrap.dedent(http)}\n"
        self.config, self.endpoint = circus_config(tmp_path, section + textwrap.dedent(watchers), circus)
        self.headers = bearer(token) if token is not None else {}
        self.daemon = Daemon(self.config)

    def wait_serving(self, timeout: float = 20, started: bool = False) -> HttpDaemon:
        """Once the HTTP server listens; with `started`, once gcircusd has started its watchers too (a fixture
        whose first test checks for leftover processes must not see a child spawned after it began)."""
        expected = ("HTTP server listening", "gcircusd running") if started else ("HTTP server listening",)

        def serving():
            if self.daemon.proc.poll() is not None:
                raise AssertionError(f"gcircusd exited early:\n{self.daemon.output()}")
            return all(line in self.daemon.output() for line in expected)
        wait_for(serving, timeout, message=" and ".join(expected))
        return self

    def get(self, path: str, headers: dict | None = None, auth: bool = True) -> Reply:
        return request(self.bind, "GET", path, headers={**(self.headers if auth else {}), **(headers or {})})

    def post(self, path: str, body: bytes | str | dict | None = None, headers: dict | None = None,
             auth: bool = True) -> Reply:
        extra = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body)
            extra.setdefault("Content-Type", "application/json")
        return request(self.bind, "POST", path, body=body,
                       headers={**(self.headers if auth else {}), **extra})

    def command(self, command: str, /, **props) -> dict:
        """The control reply of `command` sent to /api/ with `props` (Bearer)."""
        reply = self.post(f"/api/{command}", props)
        return reply.json()

    def stop(self) -> None:
        self.daemon.terminate()
