"""The dashboard page, rendered on the server: a complete read-only view without JavaScript, enhanced by it.

The page is one table with a <tbody> per watcher: the watcher's row (name, state and why, processes, CPU, memory,
actions), then a row per process (pid and wid, state, age and restarts, CPU, memory, detail), so the CPU and memory
columns line up for both. Without JavaScript this is the whole page (it reloads itself every NOSCRIPT_REFRESH s);
with it, dashboard.js takes the same markup over: it renders watchers again from the live feed with the same
classes, adds the charts, the buttons with their confirmation, the filter and the log tail. The CSRF token of the
viewer's session is in a <meta> for the script's POSTs to /api/COMMAND, and so are the commands the viewer's role
allows (`may-run`): the script shows no button the API would refuse. Everything served comes from this package
(static/): no CDN, no build step.
"""
from __future__ import annotations

import html
import socket
import time

from gcircus import __version__
from gcircus.control.commands.procs import human_duration
from gcircus.http.dashboard import assets

NOSCRIPT_REFRESH = 10  # seconds between two reloads of the page when JavaScript is off
STATE_ORDER = ("failed", "backoff", "starting", "stopping", "active", "stopped")  # the summary's order: worst first
COLUMNS = ("Watcher", "State", "Processes", "CPU", "Memory", "Actions")


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def render(views: list[dict], usage: dict | None, csrf_token: str, logout: bool, may_run: list[str]) -> str:
    """The whole page for `views` (gcircus.http.dashboard.model) and a usage sample ({watcher: {...}} or None), for
    a viewer that may run the commands `may_run`."""
    host = socket.gethostname()
    counts: dict[str, int] = {}
    for view in views:
        counts[view["state"]] = counts.get(view["state"], 0) + 1
    nprocs = sum(len(view["processes"]) for view in views)
    bodies = "\n".join(watcher_body(view, (usage or {}).get(view["name"])) for view in views)
    empty = "" if views else '<tbody><tr><td colspan="6" class="empty">No watchers.</td></tr></tbody>'
    return PAGE.format(
        host=esc(host), version=esc(__version__), csrf=esc(csrf_token), refresh=NOSCRIPT_REFRESH,
        may_run=esc(" ".join(may_run)),
        css=esc(assets.url("dashboard.css")), js=esc(assets.url("dashboard.js")),
        icon=esc(assets.url("icon.svg")), summary=summary(counts, len(views), nprocs),
        head="".join(f'<th scope="col" class="col-{c.lower()}">{c}</th>' for c in COLUMNS),
        bodies=bodies + empty, generated=esc(time.strftime("%H:%M:%S")),
        logout=LOGOUT.format(csrf=esc(csrf_token)) if logout else "")


def summary(counts: dict[str, int], nwatchers: int, nprocs: int) -> str:
    states = "".join(f'<li><span class="state state-{state}">{state}</span> <span class="count">{counts[state]}'
                     f'</span></li>' for state in STATE_ORDER if counts.get(state))
    return (f'<p class="totals"><strong>{nwatchers}</strong> watchers, <strong>{nprocs}</strong> processes</p>'
            f'<ul class="states" aria-label="Watchers by state">{states}</ul>')


def watcher_body(view: dict, usage: dict | None) -> str:
    name = view["name"]
    procs = (usage or {}).get("procs", {})
    rows = "".join(process_row(p, procs.get(str(p["pid"]))) for p in view["processes"])
    reason = f' <span class="reason">{esc(view["reason"])}</span>' if view.get("reason") else ""
    return (f'<tbody class="watcher" data-name="{esc(name)}" data-state="{esc(view["state"])}">'
            f'<tr class="wrow"><th scope="row" class="name"><span class="wname">{esc(name)}</span></th>'
            f'<td class="st"><span class="state state-{esc(view["state"])}">{esc(view["state"])}</span>{reason}</td>'
            f'<td class="np">{view["ready"]}/{view["numprocesses"]} ready</td>'
            f'<td class="cpu num">{cpu_text((usage or {}).get("cpu"))}</td>'
            f'<td class="mem num">{mem_text((usage or {}).get("rss"))}</td>'
            f'<td class="actions"></td></tr>{rows}</tbody>')


def process_row(process: dict, usage: list | None) -> str:
    cpu, rss = usage if usage else (None, None)
    restarts = process["restarts"]
    age = human_duration(time.time() - process["started"])
    detail = "; ".join(t for t in (process.get("detail"), f"last exit: {process['last_exit']}"
                                   if process.get("last_exit") else "") if t)
    return (f'<tr class="prow" data-pid="{process["pid"]}"><td class="pid">pid {process["pid"]} '
            f'<span class="wid">wid {process["wid"]}</span></td>'
            f'<td class="st"><span class="pstate pstate-{esc(process["state"])}">{esc(process["state"])}</span></td>'
            f'<td class="age">up {age}{f", {restarts} restarts" if restarts else ""}</td>'
            f'<td class="cpu num">{cpu_text(cpu)}</td><td class="mem num">{mem_text(rss)}</td>'
            f'<td class="detail">{esc(detail)}</td></tr>')


def cpu_text(cpu) -> str:
    return "–" if cpu is None else f"{cpu:.1f}%"


def mem_text(rss) -> str:
    if rss is None:
        return "–"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if rss >= size:
            return f"{rss / size:.1f} {unit}"
    return f"{rss} B"


LOGOUT = """<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf_token" value="{csrf}">
<button type="submit" class="quiet">Log out</button></form>"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="csrf-token" content="{csrf}">
<meta name="may-run" content="{may_run}">
<title>gcircus · {host}</title>
<link rel="icon" href="{icon}" type="image/svg+xml">
<link rel="stylesheet" href="{css}">
<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>
<script src="{js}" defer></script>
</head>
<body>
<a class="skip" href="#watchers">Skip to the watchers</a>
<header class="top">
  <div class="brand"><img src="{icon}" alt="" width="28" height="28">
    <h1>gcircus <span class="host">{host}</span></h1></div>
  <div class="summary" id="summary">{summary}</div>
  <div class="status"><span id="live" class="live" role="status">Static view, {generated}</span>{logout}</div>
</header>
<main id="main">
  <section class="toolbar" aria-label="Filter">
    <label for="filter">Filter</label>
    <input id="filter" type="search" placeholder="name, or state:failed" autocomplete="off" spellcheck="false">
    <span id="shown" class="shown" aria-live="polite"></span>
  </section>
  <table id="watchers" class="watchers">
    <caption class="sr-only">Watchers and their processes</caption>
    <thead><tr>{head}</tr></thead>
    {bodies}
  </table>
</main>
<section id="tail" class="tail" aria-labelledby="tail-title" hidden>
  <header><h2 id="tail-title">Output</h2>
  <label class="follow"><input type="checkbox" id="tail-follow" checked> Follow</label>
  <button type="button" id="tail-close" class="quiet">Close</button></header>
  <pre id="tail-lines" role="log" aria-live="polite" tabindex="0"></pre>
</section>
<dialog id="confirm" aria-labelledby="confirm-title">
  <form method="dialog">
    <h2 id="confirm-title">Confirm</h2>
    <p id="confirm-text"></p>
    <div class="buttons"><button value="cancel" class="quiet" autofocus>Cancel</button>
    <button value="ok" id="confirm-ok" class="primary">Confirm</button></div>
  </form>
</dialog>
<div id="toasts" class="toasts" role="status" aria-live="polite"></div>
<footer class="foot">gcircus {version}</footer>
</body>
</html>
"""
