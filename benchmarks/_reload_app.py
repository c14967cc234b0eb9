"""A tiny HTTP/1.0 server on an inherited listening fd, for run_reload.py.

    python _reload_app.py FD [WORK_SECONDS]

Each connection is served in a thread: read the request head, sleep WORK_SECONDS (default 0.01, a stand-in for
real work), answer `200 OK` with the pid, close. On SIGTERM it stops accepting, finishes every request in flight
and exits 0; connections still in the listen queue stay there for the other workers (the queue is the managed
socket's, shared by every worker). Stdlib only, so circusd and gcircusd run the very same program.
"""
import os
import select
import signal
import socket
import sys
import threading
import time

fd = int(sys.argv[1])
work = float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
listener = socket.socket(fileno=fd)
listener.setblocking(False)
stopping = threading.Event()
in_flight: set[threading.Thread] = set()
lock = threading.Lock()
pid = str(os.getpid()).encode()


def on_term(signum, frame):
    stopping.set()


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def serve(conn: socket.socket) -> None:
    try:
        conn.setblocking(True)
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        time.sleep(work)
        body = b"ok " + pid + b"\n"
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    except OSError:
        pass
    finally:
        conn.close()
        with lock:
            in_flight.discard(threading.current_thread())


while not stopping.is_set():
    try:
        readable, _, _ = select.select([listener], [], [], 0.1)
    except InterruptedError:
        continue
    if not readable or stopping.is_set():
        continue
    try:
        conn, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
        continue  # another worker took it
    thread = threading.Thread(target=serve, args=(conn,), daemon=True)
    with lock:
        in_flight.add(thread)
    thread.start()

listener.close()
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    with lock:
        left = list(in_flight)
    if not left:
        break
    left[0].join(0.5)
sys.exit(0)
