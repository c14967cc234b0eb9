"""The HTTP server of gcircusd: gevent.pywsgi on the daemon's hub, every route from one table, within bounds.

Each connection is served by one greenlet of a bounded pool (`max_connections`; more connections wait in the listen
backlog), with a socket timeout (`request_timeout`) on every read and write, the TLS handshake included, so a silent
or slow client holds one slot for a bounded time. A request line is at most 8 KiB (pywsgi's own bound), its headers
at most MAX_HEADER_BYTES together, its body at most `max_body_size` (gcircus.http.web). Handlers read gcircusd's
state in memory and never block the hub.

HttpService is what the daemon's wiring attaches to the arbiter (gcircus.service.Service): it binds at start and
closes at stop. With `probe_bind`, it runs a second server on that address serving the probes alone
(gcircus.http.routes.PROBE_ROUTES), in plain HTTP on any address: Kubernetes' httpGet probes come from the node to the
pod's own IP, where the full server (token, TLS) has no business listening.

HttpApp is the WSGI application: it finds the request's route in gcircus.http.routes.ROUTES,
authenticates it unless the route is public, checks its CSRF token, and turns an HttpError into its reply.
"""
from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import gevent
import gevent.pool
import gevent.socket
import psutil
from gevent.pywsgi import WSGIHandler, WSGIServer

from gcircus.control.audit import AuditLog
from gcircus.control.runner import CommandRunner, RequestCounts
from gcircus.http import routes as route_table
from gcircus.http.auth import Auth, TokenFileError, read_token_file
from gcircus.http.dashboard.service import Dashboard
from gcircus.http.metrics import registry_for
from gcircus.http.web import HttpError, Request, Response, Route
from gcircus.options import split_http_bind
from gcircus.wire.endpoints import ipc_in_use

log = logging.getLogger("gcircus.http")

MAX_HEADER_BYTES = 16 * 1024  # all header lines of one request together
STOP_GRACE = 1.0  # seconds requests in progress get to finish when the server stops
# Headers every reply carries unless its handler set them: no sniffing, no framing (the buttons of a page cannot be
# clickjacked), no referrer, nothing cached.
DEFAULT_HEADERS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                   ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"))


class _HeaderBudget:
    """The connection's input as pywsgi's header parser reads it, refusing more than `budget` bytes of headers."""

    def __init__(self, rfile, budget: int):
        self.rfile, self.budget = rfile, budget

    def readline(self, limit: int = -1) -> bytes:
        line = self.rfile.readline(min(limit, self.budget + 1) if limit >= 0 else self.budget + 1)
        self.budget -= len(line)
        if self.budget < 0:
            raise ValueError(f"request headers larger than {MAX_HEADER_BYTES} bytes")
        return line


class BoundedHandler(WSGIHandler):
    """pywsgi's handler with a bound on the total size of a request's headers (a ValueError is pywsgi's 400)."""

    def read_request(self, raw_requestline):
        rfile: Any = self.__dict__["rfile"]  # pywsgi sets it per connection (untyped for mypy)
        self.rfile = _HeaderBudget(rfile, MAX_HEADER_BYTES)
        try:
            return super().read_request(raw_requestline)
        finally:
            self.rfile = rfile


class BoundedServer(WSGIServer):
    """WSGIServer whose connections time out: every read and write, the TLS handshake included."""

    request_timeout = 30.0

    def wrap_socket_and_handle(self, client_socket, address):
        client_socket.settimeout(self.request_timeout)
        return super().wrap_socket_and_handle(client_socket, address)

    def handle(self, sock, address):
        sock.settimeout(self.request_timeout)
        return super().handle(sock, address)


class HttpApp:
    """The WSGI application, and what route handlers see as `app`: the arbiter, the settings, the auth, the runner."""

    def __init__(self, arbiter, settings: dict, auth: Auth, runner: CommandRunner, routes: Sequence[Route]):
        self.arbiter, self.settings, self.auth, self.runner = arbiter, settings, auth, runner
        self.routes = tuple(routes)
        self.registry = registry_for(arbiter, runner.counts, daemon_start_time())
        self.dashboard = Dashboard(arbiter, settings.get("max_connections"))

    def stopping(self) -> bool:
        """gcircusd is shutting down (the daemon's arbiter says so; an embedded one is never)."""
        shutting_down = getattr(self.arbiter, "shutting_down", None)
        return bool(shutting_down is not None and shutting_down.is_set())

    def __call__(self, environ, start_response):
        request = Request(environ, self.settings["max_body_size"])
        try:
            response = self.dispatch(request)
        except HttpError as exc:
            response = Response.json({"error": exc.reason}, exc.status)
            response.headers.extend(exc.headers)
        except Exception:  # noqa: BLE001 - a handler's bug is a 500 for that request, never the server's end
            log.exception("HTTP %s %s failed", request.method, request.path)
            response = Response.json({"error": "internal error (logged by gcircusd)"}, 500)
        return self.respond(response, start_response)

    def dispatch(self, request: Request) -> Response:
        route = next((r for r in self.routes if r.matches(request.path)), None)
        if route is None:
            raise HttpError(404, f"no such page: {request.path}")
        if request.method not in route.methods:
            raise HttpError(405, f"{request.method} is not allowed here", (("Allow", ", ".join(route.methods)),))
        if not route.public:
            request.principal = self.auth.authenticate(request)
            self.auth.check_csrf(request, request.principal)
        return route.handler(self, request)

    @staticmethod
    def respond(response: Response, start_response):
        names = {name.lower() for name, _ in response.headers}
        headers = [("Content-Type", response.content_type), *response.headers,
                   *((name, value) for name, value in DEFAULT_HEADERS if name.lower() not in names)]
        body = response.body
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        return [body] if isinstance(body, bytes) else body


def daemon_start_time() -> float:
    """When this process (gcircusd) started, Unix time: what the uptime metric counts from."""
    return psutil.Process(os.getpid()).create_time()


def describe_bind(settings: dict) -> str:
    where = split_http_bind(settings["bind"])
    scheme = "https" if settings.get("certfile") else "http"
    return f"unix:{where}" if isinstance(where, str) else f"{scheme}://{settings['bind']}"


class HttpService:
    """The HTTP server as a Service of the arbiter: bound at start (OSError if it cannot be), closed at stop."""

    def __init__(self, arbiter, settings: dict, counts: RequestCounts | None = None, audit: AuditLog | None = None,
                 routes: Sequence[Route] | None = None):
        self.arbiter, self.settings = arbiter, dict(settings)
        self.counts, self.audit = counts, audit
        self.routes = route_table.ROUTES if routes is None else tuple(routes)
        self.app: HttpApp | None = None
        self.server: BoundedServer | None = None
        self.probe_server: BoundedServer | None = None
        self.unix_paths: list[str] = []

    def start(self) -> None:
        settings = self.settings
        try:
            token = read_token_file(settings["token_file"]) if settings.get("token_file") else None
        except TokenFileError as exc:
            raise OSError(f"[http] token_file {settings['token_file']}: {exc}") from None
        auth = Auth(token, secure_cookies=bool(settings.get("certfile")), role=settings["token_role"])
        self.app = HttpApp(self.arbiter, settings, auth,
                           CommandRunner(self.arbiter, self.counts, self.audit, describe_bind(settings)),
                           self.routes)
        try:
            self.server = self._serve("bind", self.app, **self._tls())
            log.info("HTTP server listening on %s", describe_bind(settings))
            if settings.get("probe_bind"):
                probe_app = HttpApp(self.arbiter, settings, self.app.auth, self.app.runner, route_table.PROBE_ROUTES)
                self.probe_server = self._serve("probe_bind", probe_app)
                log.info("HTTP probes (/healthz, /readyz) listening on %s",
                         describe_bind({"bind": settings["probe_bind"]}))
        except Exception:
            self.stop()
            raise

    def _serve(self, option: str, app: HttpApp, **tls) -> BoundedServer:
        """A started server for `app` on the address of the [http] option `option`."""
        listener = self._listen(option)
        server = BoundedServer(listener, app, spawn=gevent.pool.Pool(self.settings["max_connections"]), log=None,
                               error_log=log, handler_class=BoundedHandler, **tls)
        server.request_timeout = self.settings["request_timeout"]
        try:
            server.start()
        except Exception:
            listener.close()
            raise
        return server

    def stop(self) -> None:
        if self.app is not None:
            self.app.dashboard.close()  # its event streams end, so the server's stop need not wait for them
        for server in (self.probe_server, self.server):
            if server is not None:
                server.stop(timeout=STOP_GRACE)
        self.server = self.probe_server = None
        if self.app is not None:
            gevent.joinall(self.app.runner.operations.running(), timeout=STOP_GRACE)
        for path in self.unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.unix_paths = []

    close = stop  # what the daemon's Channel calls

    @property
    def address(self):
        """Where the server listens: (host, port) (the real port when 0 was asked for), or the unix socket path."""
        return self.server.socket.getsockname() if self.server is not None else None

    @property
    def probe_address(self):
        """Where the probe server listens (as `address`), or None without probe_bind."""
        return self.probe_server.socket.getsockname() if self.probe_server is not None else None

    def _tls(self) -> dict:
        certfile, keyfile = self.settings.get("certfile"), self.settings.get("keyfile")
        if not certfile:
            return {}
        import ssl  # here, not at the top: OpenSSL costs every gcircusd megabytes, and only HTTPS needs it

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise OSError(f"[http] certfile {certfile} / keyfile {keyfile} cannot be loaded: {exc}") from None
        return {"ssl_context": context}

    def _listen(self, option: str):
        where = split_http_bind(self.settings[option])
        if isinstance(where, str):
            return self._listen_unix(option, where)
        host, port = where
        try:
            return BoundedServer.get_listener((host, port), family=gevent.socket.AF_INET6 if ":" in host else
                                              gevent.socket.AF_INET)
        except OSError as exc:
            raise OSError(f"cannot bind [http] {option} = {self.settings[option]}: {exc.strerror or exc}") from None

    def _listen_unix(self, option: str, path: str):
        """A unix socket readable by gcircusd's user only; a file nobody listens on is taken over, a live one not."""
        if ipc_in_use(path):
            raise OSError(f"cannot bind [http] {option} = unix:{path}: another process listens on it")
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)
        sock = gevent.socket.socket(gevent.socket.AF_UNIX, gevent.socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot bind [http] {option} = unix:{path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        self.unix_paths.append(path)
        return sock
