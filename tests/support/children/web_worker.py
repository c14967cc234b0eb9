"""A slow-starting web worker for the rolling-reload tests, stdlib only: `python web_worker.py FD [DELAY]`.

It serves HTTP on the listening socket gcircusd hands it as descriptor FD ($(circus.sockets.web)), shared with its
siblings. It takes DELAY seconds (default 1) to start, as a real application loading its code would, then tells
gcircusd READY=1 through $NOTIFY_SOCKET and only then accepts. Every answer is `200 {"pid": PID, "tag": ""}`
(what tests.support.load reads).

It stops as a worker behind a shared socket must: SIGTERM ends it at once while it waits for a connection, and is
held back while it answers one it took, so no accepted request is cut off; connections it never accepted stay
queued on the shared socket for the other workers.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time


def notify(text: bytes) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text, address)


def answer(conn: socket.socket) -> None:
    conn.settimeout(10)
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            return
        request += chunk
    body = json.dumps({"pid": os.getpid(), "tag": ""}).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def serve(listener: socket.socket) -> None:
    while True:
        select.select([listener], [], [])
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            conn, _ = listener.accept()
        except BlockingIOError:  # a sibling took it
            conn = None
        if conn is not None:
            with conn:
                try:
                    answer(conn)
                except OSError:
                    pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def main(fd: int, delay: float = 1.0) -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    listener = socket.socket(fileno=fd)
    listener.setblocking(False)  # siblings share the socket: accept() must not block once one of them took it
    time.sleep(delay)
    notify(b"READY=1\nSTATUS=serving")
    serve(listener)


if __name__ == "__main__":
    main(int(sys.argv[1]), *(float(a) for a in sys.argv[2:3]))
