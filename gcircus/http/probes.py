"""/healthz and /readyz, for load balancers and Kubernetes probes: served without a token, answered from memory.

/healthz says gcircusd is alive and its hub responsive: a short timer must fire within `max_hub_latency` of its
due time (a hub that a blocking call or a busy loop holds up answers late, or not at all: either fails the probe).
/readyz says every watcher that should run does: each autostart or essential watcher is `active`; else 503 and,
for each one that is not, its state and why.
"""
from __future__ import annotations

import time

import gevent

from gcircus.http.web import Request, Response
from gcircus.states import ACTIVE, STOPPED

PROBE_TIMER = 0.001  # seconds: the timer whose lateness is the hub's latency


def hub_latency() -> float:
    """How late, in seconds, a timer set now fires: the time other work keeps the hub from getting back to us."""
    start = time.monotonic()
    gevent.sleep(PROBE_TIMER)
    return max(0.0, time.monotonic() - start - PROBE_TIMER)


def healthz(app, request: Request) -> Response:
    latency = hub_latency()
    healthy = latency <= app.settings["max_hub_latency"]
    return Response.json({"status": "ok" if healthy else "hub unresponsive", "hub_latency_seconds": latency,
                          "max_hub_latency_seconds": app.settings["max_hub_latency"],
                          "stopping": app.stopping()}, 200 if healthy else 503)


def waits_for_nothing(watcher) -> bool:
    """An on_demand watcher not started yet is as ready as it can be: it starts at its first connection."""
    return watcher.on_demand and watcher.status() == STOPPED


def not_ready(arbiter) -> list[dict]:
    """Each autostart or essential watcher that is not active (nor an idle on_demand one): name, state, reason."""
    return [{"watcher": w.name, "state": w.status(), "reason": w.reason}
            for w in arbiter.iter_watchers(reverse=False)
            if (w.autostart or w.essential) and w.status() != ACTIVE and not waits_for_nothing(w)]


def readyz(app, request: Request) -> Response:
    missing = not_ready(app.arbiter)
    stopping = app.stopping()
    ready = not missing and not stopping and app.arbiter.running
    body = {"ready": ready, "not_ready": missing}
    if stopping:
        body["reason"] = "gcircusd is shutting down"
    return Response.json(body, 200 if ready else 503)
