"""What gcircus-top shows, as a pure function of the stats received: no terminal needed to build or test it.

`TopView` keeps the latest payload per watcher and pid (topics as circusd-stats and gcircus publish them) and drops
pids not refreshed for `process_timeout` seconds; `render()` turns it into the lines of the screen, with
circus-top's layout: one section per watcher with PID, CPU (%), MEMORY (%) and AGE (s), the ten busiest processes,
then the watcher's total line.
"""
from __future__ import annotations

import time

NA = "N/A"
TITLE = "gcircus top"
WAITING = "*** Waiting for data ***"
HIDDEN = ("circusd-stats", "circushttpd")  # Circus runs them as watchers; circus-top does not show them
TOP = 10
# Column offsets of the values; headers start one column to the left. circus-top's are 2, 29, 49, 69, which cuts
# the total line's "(older)" on an 80-column terminal.
PID_COL, CPU_COL, MEM_COL, AGE_COL = 2, 29, 47, 63


def parse_topic(topic: str) -> tuple[str, str | None] | None:
    """`stat.web.123` -> ("web", "123"); `stat.web` -> ("web", None). A dotted watcher name is kept whole (Circus's
    client drops those stats)."""
    if not topic.startswith("stat.") or len(topic) == 5:
        return None
    rest = topic[5:]
    head, _, last = rest.rpartition(".")
    if head and last.isdigit():
        return head, last
    return rest, None


class TopView:
    """The latest stats per watcher: `{watcher: {pid or None (the total): payload}}`."""

    def __init__(self, process_timeout: float = 3.0):
        self.process_timeout = float(process_timeout)
        self.watchers: dict[str, dict[str | None, dict]] = {}
        self._refreshed: dict[tuple[str, str], float] = {}

    def update(self, topic: str, stat: dict, now: float | None = None) -> None:
        parsed = parse_topic(topic)
        if parsed is None or not isinstance(stat, dict):
            return
        watcher, pid = parsed
        self.watchers.setdefault(watcher, {})[pid] = stat
        if pid is not None:
            self._refreshed[(watcher, pid)] = time.monotonic() if now is None else now

    def prune(self, now: float | None = None) -> None:
        """Forget processes whose stats stopped coming `process_timeout` seconds ago."""
        now = time.monotonic() if now is None else now
        for (watcher, pid), seen in list(self._refreshed.items()):
            if now - seen > self.process_timeout:
                del self._refreshed[(watcher, pid)]
                self.watchers.get(watcher, {}).pop(pid, None)


def _number(value) -> str:
    return NA if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.2f}"


def _row(width: int, cells: list[tuple[int, str]]) -> str:
    line = ""
    for col, text in cells:
        line = line.ljust(col) + text
    return line[:width]


def _watcher_lines(name: str, stats: dict[str | None, dict], width: int) -> list[str]:
    header = [(PID_COL + 1, "PID"), (CPU_COL - 1, "CPU (%)"), (MEM_COL - 1, "MEMORY (%)"), (AGE_COL - 1, "AGE (s)")]
    lines = [_row(width, [(0, name)]), _row(width, header)]
    processes = [stat for pid, stat in stats.items() if pid is not None]
    processes.sort(key=lambda s: s.get("cpu") if isinstance(s.get("cpu"), (int, float)) else -1.0, reverse=True)
    for stat in processes[:TOP]:
        label = str(stat.get("pid", ""))
        if stat.get("name"):
            label += f" ({stat['name']})"
        lines.append(_row(width, [(PID_COL, label), (CPU_COL, _number(stat.get("cpu"))),
                                  (MEM_COL, _number(stat.get("mem"))), (AGE_COL, _number(stat.get("age")))]))
    total = stats.get(None)
    if total is not None:
        lines.append(_row(width, [(CPU_COL, _number(total.get("cpu")) + " (avg)"),
                                  (MEM_COL, _number(total.get("mem")) + " (sum)"),
                                  (AGE_COL, _number(total.get("age")) + " (older)")]))
    return lines


def _socket_lines(stats: dict[str | None, dict], width: int) -> list[str]:
    lines = [_row(width, [(0, "sockets")]), _row(width, [(PID_COL + 1, "ADDRESS"), (CPU_COL - 1, "HITS")])]
    fds = [stat for key, stat in stats.items() if key is not None]
    fds.sort(key=lambda s: s.get("reads", 0), reverse=True)
    for stat in fds:
        lines.append(_row(width, [(PID_COL, str(stat.get("address", ""))), (CPU_COL, f"{stat.get('reads', 0):3d}")]))
    total = stats.get(None) or {}
    reads = total.get("reads", 0)
    lines.append(_row(width, [(CPU_COL, f"{reads if isinstance(reads, int) else 0:3d} (sum)")]))
    return lines


def render(view: TopView, width: int = 80) -> list[str]:
    """The screen's lines, each at most `width` characters (the caller cuts them to the screen's height)."""
    if not view.watchers:
        return ["", WAITING]
    lines = [TITLE[:width], "-" * width]
    for name in sorted(view.watchers):
        if name in HIDDEN:
            continue
        stats = view.watchers[name]
        lines += _socket_lines(stats, width) if name == "sockets" else _watcher_lines(name, stats, width)
        lines.append("")
    lines.append("-" * width)
    return lines
