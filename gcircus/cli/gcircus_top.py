"""gcircus-top - a live view of the stats channel of gcircusd, gcircusd-stats or Circus's circusd-stats.

Usage:
  gcircus-top [options]
  gcircus-top --version
  gcircus-top (-h | --help)

Options:
  --endpoint E          The stats endpoint to read [default: {DEFAULT_STATS_ENDPOINT}].
  --process-timeout N   Seconds after which a process whose stats stopped coming is dropped [default: 3].
  --curve-key PATH      This client's secret CURVE certificate, for a stats endpoint that requires CURVE
                        (default: $GCIRCUS_CURVE_KEY).
  --server-key PATH     The daemon's public CURVE certificate (default: $GCIRCUS_SERVER_KEY).
  --version             Print the version and exit.
  -h --help             Show this help.

One section per watcher: the ten busiest processes (PID, CPU %, MEMORY %, AGE in seconds) and the watcher's total
line (mean CPU, summed memory, oldest age). Press q to quit. Exit codes: 0 quit, 1 the endpoint refused the CURVE
handshake (said why), 2 bad command line or CURVE key file.
"""
from __future__ import annotations

import contextlib
import curses
import json
import sys
import time

from gcircus import __version__, options
from gcircus.cli.peer_check import HandshakeWatch
from gcircus.cli.usage import EXIT_USAGE, CommandLineError, parse_command_line
from gcircus.client import HandshakeRefused
from gcircus.consumer import Consumer
from gcircus.stats.top import TopView, render
from gcircus.wire.curve import ClientKeys, CurveKeyError, key_paths

# The usage text names the default endpoints; docopt reads the [default: ...] ones from it.
__doc__ = __doc__.format_map(vars(options))

REPAINT_EVERY = 1.0
POLL = 0.1


def show(screen, endpoint: str, process_timeout: float, keys: tuple[str | None, str | None]) -> None:
    """Paint the stats of `endpoint` until q; HandshakeRefused if the endpoint refuses the CURVE handshake."""
    view = TopView(process_timeout)
    screen.nodelay(True)
    with contextlib.suppress(curses.error):  # a terminal that cannot hide the cursor
        curses.curs_set(0)
    painted = 0.0
    with Consumer([b"stat."], endpoint, green=False, curve_key=keys[0], server_key=keys[1]) as consumer, \
            HandshakeWatch(endpoint, consumer.context, consumer.curve) as watch:
        while True:
            if not watch.accepted and watch.refused() and watch.failure(certain=False):
                raise HandshakeRefused(watch.failure(certain=False) or "", endpoint)
            event = consumer.recv(POLL)
            while event is not None:
                with contextlib.suppress(ValueError):  # not JSON: skipped
                    view.update(event[0].decode("utf-8", "replace"), json.loads(event[1]))
                event = consumer.recv(0)
            key = screen.getch()
            if key in (ord("q"), ord("Q")):
                return
            now = time.monotonic()
            if now - painted >= REPAINT_EVERY or key == curses.KEY_RESIZE:
                view.prune(now)
                paint(screen, render(view, screen.getmaxyx()[1]))
                painted = now


def paint(screen, lines: list[str]) -> None:
    height, width = screen.getmaxyx()
    screen.erase()
    for row, line in enumerate(lines[:height]):
        with contextlib.suppress(curses.error):  # the bottom-right cell, or a terminal shrinking meanwhile
            screen.addstr(row, 0, line[:max(width - 1, 0)])
    screen.refresh()


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_command_line(__doc__, argv, "gcircus-top", version=f"gcircus-top {__version__}")
    except CommandLineError as exc:
        return exc.report()
    try:
        timeout = float(args["--process-timeout"])
    except ValueError:
        print("gcircus-top: --process-timeout must be a number", file=sys.stderr)
        return EXIT_USAGE
    try:
        keys = key_paths(args["--curve-key"], args["--server-key"])
        ClientKeys.load(*keys)  # a bad key file is said before the screen is taken over
        with contextlib.suppress(KeyboardInterrupt):
            curses.wrapper(show, args["--endpoint"], timeout, keys)
    except CurveKeyError as exc:
        print(f"gcircus-top: cannot use the CURVE keys: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HandshakeRefused as exc:
        print(f"gcircus-top: {exc}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
