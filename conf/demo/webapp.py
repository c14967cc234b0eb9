"""Demo web worker for conf/app.ini: a small gevent WSGI app.

Normally run with `--fd N`: gcircusd binds the listening socket itself ([socket:web]) and hands it to every worker,
so workers can be restarted or replaced while the socket (and the connections queued on it) stays open.
`--port N` is the standalone fallback (its own socket, SO_REUSEPORT so several copies can share the port).

On SIGTERM (gcircus's stop signal) or SIGINT a worker stops accepting, lets the requests it already accepted finish
(up to --grace seconds; keep it below the watcher's graceful_timeout), then exits 0. Connections it never accepted
stay queued on the shared socket for the other (or the next) workers.

With --notify (for `ready = notify` and `health = watchdog` watchers, as in conf/kubernetes/gcircusd.ini) it tells
gcircusd over sd_notify when it serves (READY=1), and keeps sending WATCHDOG=1 while its event loop runs, so a worker
whose loop is stuck is found unhealthy and replaced.
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.pool import Pool  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--fd", type=int, help="serve on this inherited listening socket (from gcircusd)")
    where.add_argument("--port", type=int, default=8080, help="bind 127.0.0.1:PORT itself (default 8080)")
    parser.add_argument("--worker", default="?", help="worker id shown in responses (gcircus: $(circus.wid))")
    parser.add_argument("--tag", default="", help="a free label shown in responses (e.g. the release)")
    parser.add_argument("--grace", type=float, default=8.0,
                        help="seconds to let in-flight requests finish after SIGTERM (default 8)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every request takes (to try restarts)")
    parser.add_argument("--notify", action="store_true",
                        help="send READY=1, then WATCHDOG=1 pings, to $NOTIFY_SOCKET (gcircus: ready = notify)")
    return parser.parse_args(argv)


def make_listener(args) -> socket.socket:
    if args.fd is not None:
        # The socket gcircusd bound and listens on; this process only accepts from it.
        return socket.socket(fileno=args.fd)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(1024)
    return listener


def sd_notify(message: str) -> None:
    """Send one sd_notify datagram to $NOTIFY_SOCKET ('@' is an abstract address); nothing without the variable."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), "\0" + address[1:] if address.startswith("@") else address)


def keep_notifying(stopping: Event) -> None:
    """READY=1 now, then WATCHDOG=1 twice per $WATCHDOG_USEC period (if set) until the worker stops."""
    sd_notify("READY=1")
    period = int(os.environ.get("WATCHDOG_USEC") or 0) / 2_000_000
    while period and not stopping.wait(period):
        sd_notify("WATCHDOG=1")


def main(argv=None) -> None:
    args = parse_args(argv)
    stopping = Event()

    def app(environ, start_response):
        if args.delay:
            gevent.sleep(args.delay)
        body = json.dumps({"worker": args.worker, "pid": os.getpid(), "tag": args.tag,
                           "path": environ["PATH_INFO"]}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if stopping.is_set():
            headers.append(("Connection", "close"))  # no keep-alive on a worker that is going away
        start_response("200 OK", headers)
        return [body]

    # Handlers first: a stop signal arriving once the server accepts must never kill a request half-way.
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stopping.set)

    listener = make_listener(args)
    # A pool, not gevent's default spawn: only then does stop() wait for the requests being handled (without one it
    # returns at once and exiting would cut them off).
    server = WSGIServer(listener, app, spawn=Pool(), log=None)
    server.start()
    where = f"fd {args.fd}" if args.fd is not None else f"127.0.0.1:{args.port}"
    print(f"web worker {args.worker} (pid {os.getpid()}) serving on {where}", flush=True)
    notifier = gevent.spawn(keep_notifying, stopping) if args.notify else None
    stopping.wait()
    if notifier is not None:
        notifier.join()
    # Stop accepting (closes only this process's copy of a shared socket), finish in-flight requests, exit.
    server.stop(timeout=args.grace)
    print(f"web worker {args.worker} (pid {os.getpid()}) stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
