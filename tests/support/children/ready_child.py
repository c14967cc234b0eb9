"""A child for the readiness and health tests: runs the steps on its command line in order, then waits to be stopped.

Run as `python ready_child.py STEP...`, stdlib only, as any service would be. Each step is `NAME=ARGUMENT`:

- `wait=PATH`          wait until PATH exists (the test says "go" by creating it, instead of the child sleeping)
- `notify=TEXT`        send TEXT to $NOTIFY_SOCKET, `|` standing for a newline (`notify=READY=1|STATUS=up`)
- `touch=PATH`         create PATH (tells the test a step is done)
- `env=PATH`           write the environment as JSON to PATH
- `fd=N`               write a newline to descriptor N (ready = fd:N)
- `tcp=PORT[:COUNTER]` listen on 127.0.0.1:PORT, accepting and closing connections in the background (counted in
                       COUNTER)
- `http=PORT:OKFILE`   serve HTTP on 127.0.0.1:PORT in the background: 503 while OKFILE does not exist, then 200
- `pings=PERIOD:COUNTER[:N]`  send WATCHDOG=1 every PERIOD seconds (N times, then stay silent; forever without N),
                       writing how many were sent to COUNTER after each
- `sleep=SECONDS`      sleep (a child slower than a timeout on purpose; the tests themselves never sleep)
- `ignore=SIGNAL`      ignore a signal (`ignore=TERM`: a child slow to stop)
- `exit=CODE`          exit now

`%PID%` in an argument stands for the child's pid (a file of its own, whatever its wid).
SIGTERM ends it at once (the default action), wherever it is, unless a step ignores it.
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sys
import threading
import time


def send(text: str) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.replace("|", "\n").encode(), address)


def wait_for_file(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.01)


def write_file(path: str, text: str) -> None:
    """Write `text` to `path` whole: a reader sees the old or the new content, never a half-written one."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def background(target, *args) -> None:
    threading.Thread(target=target, args=args, daemon=True).start()


def serve_tcp(port: int, counter: str = "") -> None:
    """Accept and close connections (counted in `counter`, if given). The backlog is the smallest the kernel
    allows, so once the process is hung (SIGSTOPped) the next connections find the queue full and time out instead
    of being queued for ever."""
    listener = socket.create_server(("127.0.0.1", port), backlog=0)

    def accept_forever():
        accepted = 0
        while True:
            listener.accept()[0].close()
            accepted += 1
            if counter:
                write_file(counter, str(accepted))
    background(accept_forever)


def serve_http(port: int, ok_file: str) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200 if os.path.exists(ok_file) else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    background(server.serve_forever)


def ping(period: float, counter: str, count: int | None) -> None:
    sent = 0
    while count is None or sent < count:
        send("WATCHDOG=1")
        sent += 1
        write_file(counter, str(sent))
        time.sleep(period)


def run(step: str) -> None:
    name, _, argument = step.partition("=")
    argument = argument.replace("%PID%", str(os.getpid()))
    if name == "wait":
        wait_for_file(argument)
    elif name == "notify":
        send(argument)
    elif name == "touch":
        write_file(argument, "")
    elif name == "env":
        write_file(argument, json.dumps(dict(os.environ)))
    elif name == "fd":
        os.write(int(argument), b"\n")
    elif name == "tcp":
        port, _, counter = argument.partition(":")
        serve_tcp(int(port), counter)
    elif name == "http":
        port, _, ok_file = argument.partition(":")
        serve_http(int(port), ok_file)
    elif name == "pings":
        period, counter, *count = argument.split(":")
        ping(float(period), counter, int(count[0]) if count else None)
    elif name == "sleep":
        time.sleep(float(argument))
    elif name == "ignore":
        signal.signal(getattr(signal, f"SIG{argument}"), signal.SIG_IGN)
    elif name == "exit":
        sys.exit(int(argument))
    else:
        raise SystemExit(f"ready_child: unknown step {step!r}")


def main(steps: list[str]) -> None:
    for step in steps:
        run(step)
    while True:
        time.sleep(1000)


if __name__ == "__main__":
    main(sys.argv[1:])
