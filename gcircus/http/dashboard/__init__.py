"""The live dashboard of gcircusd's HTTP server (`/`): one page, live over server-sent events, no build step.

Layout: `model` (what the page shows of a watcher, read through the command table), `usage` (CPU and memory
samples), `sse` (event streams that never hold the hub), `live` (the state and tail feeds), `page` (the server-
rendered HTML), `assets` (static/ as package data), `service` (Dashboard: what one HTTP server owns) and `routes`
(its handlers and the Routes gcircus.http.routes includes).
"""
