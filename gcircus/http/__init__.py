"""gcircusd's HTTP server: health probes, Prometheus metrics and a JSON API (the dashboard plugs in beside them).

Layout, bottom up: `web` (Request, Response, Route: what a handler sees), `auth` (the token, browser sessions,
CSRF), `probes`, `metrics`, `api`, `login` (the handlers), `routes` (THE route table: every path the server
answers, declared once), `server` (the gevent.pywsgi server and the HttpService the daemon's wiring attaches).
"""
