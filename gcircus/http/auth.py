"""Who may use the HTTP server: the token of `token_file`, browser sessions opened with it, and CSRF tokens.

API clients send `Authorization: Bearer TOKEN`. A browser posts the token once to /login and gets an HttpOnly,
SameSite=Strict session cookie; a state-changing request made with that cookie must also carry the session's CSRF
token (form field `csrf_token` or header `X-CSRF-Token`), which the pages embed (csrf_token()). A Bearer request
needs none: a browser never adds that header by itself. Every comparison of a secret is constant-time.

Without a token_file (loopback or a unix socket only: the config refuses anything else) requests are anonymous and
run everything; to keep a web page the user visits from driving the server through the user's browser, such
requests must then name a loopback Host (no DNS rebinding), and a state-changing one must send JSON or the CSRF
token of the server (csrf_token() again), which a cross-site form cannot.

Roles: a Principal has the role `[http] token_role` gives the token, its sessions and, without a token_file, every
client (define by default: everything). It is not decided here: gcircus.http.api hands the request to the command
runner as a control Peer carrying that role, and the runner holds it to the command table's roles as it holds the
control channel's peers (gcircus.control.access).
"""
from __future__ import annotations

import collections
import ipaddress
import os
import stat
import time
from dataclasses import dataclass

from gcircus import roles
from gcircus.http.web import FORM, JSON, READ_METHODS, HttpError, Request

SESSION_COOKIE = "gcircus_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_LIFETIME = 12 * 3600.0  # seconds a browser session lasts after its login
MAX_SESSIONS = 256  # sessions kept at once: the oldest is dropped past that (logins cannot grow memory)
MAX_TOKEN_FILE_SIZE = 4096
TOKEN_ROLES = (roles.READ, roles.OPERATE, roles.DEFINE)  # what [http] token_role may say


def _secrets():
    """The `secrets` module, imported on first use: it loads OpenSSL (through hmac), megabytes of RSS that a
    gcircusd without an HTTP server should not carry (gcircus.http.settings imports this module for the config)."""
    import secrets

    return secrets


class TokenFileError(ValueError):
    """The token file cannot be used: unreadable, empty, or readable by others than its owner."""


def read_token_file(path: str) -> str:
    """The token (the first line, stripped) of `path`; TokenFileError if group or others may read the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise TokenFileError(f"cannot read the token file: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenFileError(f"the token file is readable or writable by group or others (mode "
                                 f"{stat.S_IMODE(mode):04o}): chmod 600 it")
        data = os.read(fd, MAX_TOKEN_FILE_SIZE)
    finally:
        os.close(fd)
    lines = data.decode("utf-8", "replace").splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise TokenFileError("the token file's first line is empty")
    return token


@dataclass(frozen=True)
class Principal:
    """Who made a request: how (bearer, session or anonymous) and with which role (gcircus.roles)."""

    via: str
    role: str = roles.DEFINE
    session: Session | None = None


@dataclass
class Session:
    """A browser's login: its cookie value, its CSRF token and when it ends."""

    key: str
    csrf: str
    expires: float
    role: str = roles.DEFINE


def is_loopback_host(host_header: str) -> bool:
    """A Host header naming this machine: localhost, a loopback address, or none (a unix socket's clients)."""
    host = host_header.strip()
    if host.startswith("["):  # [::1]:9102
        host = host[1:host.find("]")]
    elif host.count(":") == 1:  # 127.0.0.1:9102 (more colons: a bare IPv6 address)
        host = host.split(":")[0]
    host = host.lower()
    if host in ("", "localhost") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Auth:
    """The token (None: no token_file), the role it gives (token_role), the open sessions, and the checks every
    request goes through."""

    def __init__(self, token: str | None, secure_cookies: bool = False, role: str = roles.DEFINE):
        self.token = token
        self.role = role
        self.secure_cookies = secure_cookies  # served over TLS: the cookie is marked Secure
        self.sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()
        self.open_csrf = _secrets().token_urlsafe(32)  # the CSRF token of a server without a token file

    def token_matches(self, offered: str) -> bool:
        return self.token is not None and _secrets().compare_digest(offered.encode(), self.token.encode())

    def authenticate(self, request: Request) -> Principal:
        """The request's principal; HttpError 401 without valid credentials (a bad token is a 401 too)."""
        authorization = request.header("Authorization")
        if self.token is None:
            if not is_loopback_host(request.header("Host")):
                raise HttpError(403, "no token_file: only requests naming a loopback Host are served")
            return Principal("anonymous", self.role)
        if authorization:
            scheme, _, offered = authorization.partition(" ")
            if scheme.lower() == "bearer" and self.token_matches(offered.strip()):
                return Principal("bearer", self.role)
            raise HttpError(401, "invalid credentials", (("WWW-Authenticate", 'Bearer realm="gcircus"'),))
        session = self.session_of(request)
        if session is not None:
            return Principal("session", session.role, session)
        raise HttpError(401, "authentication required: Authorization: Bearer TOKEN, or log in at /login",
                        (("WWW-Authenticate", 'Bearer realm="gcircus"'),))

    def check_csrf(self, request: Request, principal: Principal) -> None:
        """HttpError 403 when a state-changing request that a browser could have been made to send lacks the CSRF
        token: a session's requests always need it; an anonymous one needs it or a JSON body."""
        if request.method in READ_METHODS or principal.via == "bearer":
            return
        if principal.via == "anonymous" and request.content_type == JSON:
            return  # a cross-site page cannot send JSON without a CORS preflight, which this server never grants
        offered = request.header(CSRF_HEADER)
        if not offered and request.content_type == FORM:
            offered = request.form().get(CSRF_FIELD, "")
        if not offered or not _secrets().compare_digest(offered.encode(), self.csrf_token(principal).encode()):
            raise HttpError(403, "missing or invalid CSRF token: send the page's csrf_token with every POST")

    def csrf_token(self, principal: Principal) -> str:
        """The CSRF token pages embed for `principal` (its session's, or the server's without a token file)."""
        return principal.session.csrf if principal.session is not None else self.open_csrf

    # -- sessions ----------------------------------------------------------------------------------------------------

    def login(self, offered: str) -> Session | None:
        """A new session if `offered` is the token, else None; the oldest session goes past MAX_SESSIONS."""
        if not self.token_matches(offered.strip()):
            return None
        secrets = _secrets()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time() + SESSION_LIFETIME,
                          self.role)
        self.sessions[session.key] = session
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        return session

    def logout(self, session: Session) -> None:
        self.sessions.pop(session.key, None)

    def session_of(self, request: Request) -> Session | None:
        key = request.cookies.get(SESSION_COOKIE)
        session = self.sessions.get(key) if key else None
        if session is None:  # a 256-bit random key: a dict lookup leaks nothing usable about the others
            return None
        if session.expires < time.time():
            self.sessions.pop(session.key, None)
            return None
        return session

    def cookie(self, session: Session | None) -> str:
        """The Set-Cookie value opening `session`, or clearing the cookie for None (logout)."""
        secure = "; Secure" if self.secure_cookies else ""
        if session is None:
            return f"{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
        return (f"{SESSION_COOKIE}={session.key}; Path=/; HttpOnly; SameSite=Strict; "
                f"Max-Age={int(SESSION_LIFETIME)}{secure}")
