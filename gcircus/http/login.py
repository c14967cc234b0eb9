"""/login and /logout: a browser trades the token for a session cookie once, instead of sending it with each page.

GET /login shows a form; POST /login with `token` (form-encoded) sets the HttpOnly, SameSite=Strict session cookie
and redirects to `next` (a path on this server, "/" by default); a wrong token gets the form again with 401.
POST /logout ends the session (it needs the session's CSRF token, as every state-changing request with a cookie).
GET /session tells a page who it is and the CSRF token to send with its POSTs (a cross-site page cannot read it: the
cookie is SameSite=Strict and the server grants no CORS).
"""
from __future__ import annotations

import html

from gcircus.http.dashboard import assets
from gcircus.http.web import HTML, Request, Response

# Styled by the dashboard's stylesheet (a public asset); readable without it.
FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>gcircus: log in</title><link rel="stylesheet" href="{css}"><link rel="icon" href="{icon}"></head>
<body><main class="login"><div class="brand"><img src="{icon}" alt="" width="32" height="32"><h1>gcircus</h1></div>
{message}<form method="post" action="/login">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus
 aria-describedby="token-hint">
<p class="hint" id="token-hint">The first line of the [http] token_file.</p>
<input type="hidden" name="next" value="{next}">
<button class="primary" type="submit">Log in</button>
</form></main></body></html>
"""


def safe_next(target: str) -> str:
    """Where to go after the login: a path on this server only (never another site: no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


def login_page(app, request: Request) -> Response:
    if request.method != "POST":
        return _form(request.query.get("next", "/"), "", 200)
    fields = request.form()
    session = app.auth.login(fields.get("token", ""))
    target = safe_next(fields.get("next", "/"))
    if session is None:
        return _form(target, '<p role="alert">Wrong token.</p>', 401)
    return Response(303, b"", headers=[("Location", target), ("Set-Cookie", app.auth.cookie(session))])


def logout(app, request: Request) -> Response:
    session = request.principal.session
    if session is not None:
        app.auth.logout(session)
    return Response(303, b"", headers=[("Location", "/login"), ("Set-Cookie", app.auth.cookie(None))])


def session_info(app, request: Request) -> Response:
    principal = request.principal
    return Response.json({"authenticated_by": principal.via, "role": principal.role,
                          "csrf_token": app.auth.csrf_token(principal)})


def _form(target: str, message: str, status: int) -> Response:
    page = FORM.format(message=message, next=html.escape(safe_next(target), quote=True),
                       css=assets.url("dashboard.css"), icon=assets.url("icon.svg"))
    return Response(status, page.encode(), HTML, [("Cache-Control", "no-store")])
