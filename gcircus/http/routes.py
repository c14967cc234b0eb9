"""THE route table: every path the HTTP server answers, declared once, in the order they are matched.

A module adding pages (the dashboard) adds its Routes here. A path ending with "/" matches every path below it.
`public` routes are served without the token (the probes, the login page); every other one authenticates its
request, and a state-changing one (any method but GET and HEAD) needs the CSRF token of a browser session
(gcircus.http.auth). Handlers are `handler(app, request) -> Response` (gcircus.http.web).
"""
from __future__ import annotations

from gcircus.http import api, login, metrics, probes
from gcircus.http.dashboard import routes as dashboard
from gcircus.http.web import Route

GET, POST = ("GET", "HEAD"), ("POST",)

# What the probe listener ([http] probe_bind) serves, alone: public, read-only, no secret in them.
PROBE_ROUTES: tuple[Route, ...] = (
    Route("/healthz", probes.healthz, public=True),
    Route("/readyz", probes.readyz, public=True),
)

ROUTES: tuple[Route, ...] = (
    *PROBE_ROUTES,
    Route("/login", login.login_page, GET + POST, public=True),
    Route("/logout", login.logout, POST),
    Route("/session", login.session_info),
    Route("/metrics", metrics.metrics),
    Route(api.PREFIX, api.run_command, GET + POST),
    *dashboard.ROUTES,
)
