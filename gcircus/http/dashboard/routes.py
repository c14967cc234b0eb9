"""The dashboard's handlers and the Routes the server's table (gcircus.http.routes) includes.

- `/`: the page. Its route is public so that a browser without a session is sent to /login (and comes back)
  instead of getting a bare 401: the handler authenticates the request itself, with the server's Auth.
- `/dashboard/static/NAME`: the CSS, script and icon (public: no secret in them; the login page may use them).
- `/dashboard/events`: the state feed; `/dashboard/tail?name=W`: a watcher's output. Both are server-sent event
  streams, behind the token or session like everything else.
Buttons post to /api/COMMAND (gcircus.http.api) with the page's CSRF token: the dashboard has no write path of its own.
The page offers only the buttons of commands the viewer's role allows (gcircus.control.access, as the API decides).
"""
from __future__ import annotations

from gcircus.control import access
from gcircus.http import api
from gcircus.http.dashboard import assets, model, page
from gcircus.http.dashboard.sse import TooManyStreams
from gcircus.http.dashboard.usage import UsageSampler
from gcircus.http.web import HTML, HttpError, Request, Response, Route

EVENTS_PATH = "/dashboard/events"
TAIL_PATH = "/dashboard/tail"
EVENT_STREAM = "text/event-stream; charset=utf-8"
# Everything the page loads comes from gcircusd itself; no inline script, no framing.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
STREAM_HEADERS = [("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")]


def dashboard_page(app, request: Request) -> Response:
    try:
        request.principal = app.auth.authenticate(request)
    except HttpError as exc:
        if exc.status == 401 and not request.header("Authorization"):
            return Response(303, b"", headers=[("Location", "/login?next=/")])
        raise
    usage = app.dashboard.feed.last_usage
    samples = usage["watchers"] if usage else UsageSampler().sample(model.pid_groups(app.arbiter))
    may_run = access.runnable(api.http_peer(request), access.Policy.of(app.arbiter))
    body = page.render(model.all_views(app.arbiter), samples, app.auth.csrf_token(request.principal),
                       logout=request.principal.via == "session", may_run=may_run)
    return Response(200, body.encode(), HTML, [("Cache-Control", "no-store"), ("Content-Security-Policy", PAGE_POLICY)])


def static_file(app, request: Request) -> Response:
    asset = assets.load(request.path[len(assets.PREFIX):])
    if asset is None:
        raise HttpError(404, f"no such file: {request.path}")
    cache = "public, max-age=31536000, immutable" if request.query.get("v") else "no-cache"
    headers = [("ETag", asset.etag), ("Cache-Control", cache)]
    if request.header("If-None-Match") == asset.etag:
        return Response(304, b"", asset.content_type, headers)
    return Response(200, asset.data, asset.content_type, headers)


def events(app, request: Request) -> Response:
    try:
        subscriber, first = app.dashboard.feed.open()
    except TooManyStreams as exc:
        raise HttpError(503, str(exc), (("Retry-After", "5"),)) from None
    return Response(200, subscriber.body(first), EVENT_STREAM, list(STREAM_HEADERS))


def tail(app, request: Request) -> Response:
    name = request.query.get("name", "")
    if not name:
        raise HttpError(400, "expected /dashboard/tail?name=WATCHER")
    try:
        opened = app.dashboard.tails.open(name)
    except TooManyStreams as exc:
        raise HttpError(503, str(exc), (("Retry-After", "5"),)) from None
    if opened is None:
        raise HttpError(404, f"watcher {name!r} does not exist or gcircusd does not read its output (no stream "
                             "configured)")
    subscriber, first = opened
    return Response(200, subscriber.body(first), EVENT_STREAM, list(STREAM_HEADERS))


ROUTES: tuple[Route, ...] = (
    Route("/", dashboard_page, public=True),
    Route(assets.PREFIX, static_file, public=True),
    Route(EVENTS_PATH, events, ("GET",)),
    Route(TAIL_PATH, tail, ("GET",)),
)
