"""The socket server program the [socket:NAME] tests run (written to tmp_path), and a client asking it."""
from __future__ import annotations

import socket

# Serves `<pid>:<data>` to every connection on the fd given as argv[1] ("stdin" means fd 0). Options: argv[2] is a
# delay before the first accept, argv[3] an idle timeout after which the process exits (0: never). Like a real
# worker it stops gracefully: SIGTERM exits at once while it waits, but is held back (blocked) from accept() until
# the reply is sent, so a connection it took is answered (dying mid-request would reset it, as a restart under load
# showed). It opens no fd of its own: the tests count the fds a child holds.
SERVER = r"""
import os, select, signal, socket, sys, time
fd = 0 if sys.argv[1] == "stdin" else int(sys.argv[1])
delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
idle = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
s = socket.socket(fileno=fd)
s.setblocking(False)  # siblings share the listening socket: accept() must not block once one of them took it
time.sleep(delay)
while True:
    if not select.select([s], [], [], idle or None)[0]:
        sys.exit(0)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        conn, _ = s.accept()
    except BlockingIOError:
        conn = None
    if conn is not None:
        conn.settimeout(5)
        data = conn.recv(1024)
        conn.sendall(str(os.getpid()).encode() + b":" + data)
        conn.close()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
"""


def ask(address, data=b"hello", family=socket.AF_INET, timeout=10.0) -> tuple[int, bytes]:
    with socket.socket(family) as conn:
        conn.settimeout(timeout)
        conn.connect(address)
        conn.sendall(data)
        reply = b""
        while chunk := conn.recv(1024):
            reply += chunk
    pid, _, echoed = reply.partition(b":")
    return int(pid), echoed
