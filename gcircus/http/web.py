"""What a route handler sees and returns: a Request read from the WSGI environ within bounds, a Response, a Route.

Handlers are `handler(app, request) -> Response` where `app` is the serving gcircus.http.server.HttpApp (the
arbiter, the auth, the command runner). A Response body may be bytes or an iterable of bytes: an iterable is
streamed as it is produced (server-sent events), on the connection's own greenlet.
"""
from __future__ import annotations

import http.cookies
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
READ_METHODS = frozenset({"GET", "HEAD"})  # the methods that never change state


class HttpError(Exception):
    """Answer the request with `status` and a JSON body {"error": reason}; raised anywhere in a handler."""

    def __init__(self, status: int, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    content_type: str = TEXT
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(data).encode(), JSON)


class Request:
    """One request: method, path, query parameters, headers, cookies; the body is read once, within max_body."""

    def __init__(self, environ: dict, max_body: int):
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "") or "/"
        self.query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        self.max_body = max_body
        self.principal: Any = None  # who made it, once authenticated (gcircus.http.auth.Principal)
        self._body: bytes | None = None

    def header(self, name: str, default: str = "") -> str:
        key = name.upper().replace("-", "_")
        return self.environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}", default)

    @property
    def cookies(self) -> dict[str, str]:
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        try:
            jar.load(self.header("Cookie"))
        except http.cookies.CookieError:
            return {}
        return {name: morsel.value for name, morsel in jar.items()}

    @property
    def content_type(self) -> str:
        return self.header("Content-Type").split(";")[0].strip().lower()

    def body(self) -> bytes:
        """The body, at most max_body bytes: HttpError 413 beyond (a declared length is refused before reading)."""
        if self._body is None:
            length = self.header("Content-Length")
            if length and int(length) > self.max_body:
                raise HttpError(413, f"request body of {length} bytes is larger than max_body_size "
                                     f"({self.max_body})")
            data = self.environ["wsgi.input"].read(self.max_body + 1)
            if len(data) > self.max_body:
                raise HttpError(413, f"request body is larger than max_body_size ({self.max_body})")
            self._body = data
        return self._body

    def form(self) -> dict[str, str]:
        """An application/x-www-form-urlencoded body as a dict (the last value of a repeated field)."""
        text = self.body().decode("utf-8", "replace")
        return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


Handler = Callable[[Any, Request], Response]


@dataclass(frozen=True)
class Route:
    """One entry of the route table (gcircus.http.routes): a path (a prefix when it ends with "/"), its handler,
    the methods it takes, and whether it is served without authentication (the probes, the login page)."""

    path: str
    handler: Handler
    methods: tuple[str, ...] = ("GET", "HEAD")
    public: bool = False

    def matches(self, path: str) -> bool:
        return path.startswith(self.path) if self.path.endswith("/") and self.path != "/" else path == self.path
