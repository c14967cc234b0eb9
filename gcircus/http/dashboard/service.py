"""What one HTTP server's dashboard owns: the open event streams, the state feed and the tail feed."""
from __future__ import annotations

from gcircus.http.dashboard.live import LiveFeed, TailFeed
from gcircus.http.dashboard.sse import MAX_STREAMS, Pages
from gcircus.http.dashboard.usage import SAMPLE_INTERVAL


class Dashboard:
    """Created with the HTTP application, closed when its server stops (every stream dropped, every loop ended).

    Event streams are capped at half the server's `max_connections` (at most MAX_STREAMS), so open pages can never
    take every connection slot from the API and the probes.
    """

    def __init__(self, arbiter, max_connections: int | None = None, interval: float = SAMPLE_INTERVAL):
        limit = MAX_STREAMS if max_connections is None else max(1, min(MAX_STREAMS, max_connections // 2))
        self.pages = Pages(limit)
        self.feed = LiveFeed(arbiter, self.pages, interval)
        self.tails = TailFeed(arbiter, self.pages)

    def close(self) -> None:
        self.feed.close()
        self.tails.close()
        self.pages.close()
