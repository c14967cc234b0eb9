"""The child of run_readiness.py: a tiny stdlib process that reports readiness or health to gcircusd.

Run as ``python -S -I _readiness_child.py MODE WORKDIR ARG WID MARKER`` (-S -I: no site, no user paths, so an
interpreter costs ~4 MB of private memory; imports only os, socket, sys and time). MARKER is the last argument so the
runner can find (and kill) its own children by command line.

* ``ready``: the latency child. It marks itself waiting (WORKDIR/waiting/PID), blocks opening the FIFO
  WORKDIR/go until the runner opens it for writing (a barrier: every child is up before any READY=1 is sent), waits
  a random 0..ARG seconds, then takes ``time.time()`` and sends ``READY=1`` to $NOTIFY_SOCKET at once. Only after
  the send does it write that time to WORKDIR/sent/PID (the file does not delay the datagram), then it execs
  ``sleep MARKER``: the pid stays the one gcircusd credits, and the interpreter's memory is gone.
* ``tcp``: listens on 127.0.0.WID:ARG (one loopback address per worker, so each health probe reaches its own
  process) and accepts and closes connections forever, keeping the number accepted in WORKDIR/count/PID.
* ``watchdog``: sends ``READY=1``, then, only if gcircusd set WATCHDOG_USEC (as sd_watchdog_enabled() does), sends
  ``WATCHDOG=1`` every half period, as systemd advises; the number sent is kept in WORKDIR/count/PID.
"""
import os
import socket
import sys
import time


def notify_address() -> str:
    address = os.environ["NOTIFY_SOCKET"]
    return "\0" + address[1:] if address.startswith("@") else address


def counter(workdir: str):
    """A function that stores how many times it was called in WORKDIR/count/PID (8 bytes, rewritten in place)."""
    fd = os.open(f"{workdir}/count/{os.getpid()}", os.O_WRONLY | os.O_CREAT, 0o644)
    calls = [0]

    def count() -> None:
        calls[0] += 1
        os.pwrite(fd, calls[0].to_bytes(8, "little"), 0)
    return count


def ready(workdir: str, spread: float, marker: str) -> None:
    pid = os.getpid()
    address = notify_address()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    delay = int.from_bytes(os.urandom(4), "little") / 2**32 * spread
    open(f"{workdir}/waiting/{pid}", "w").close()
    os.close(os.open(f"{workdir}/go", os.O_RDONLY))  # the barrier: returns once the runner opens it for writing
    if delay:
        time.sleep(delay)
    sent = time.time()
    sock.sendto(b"READY=1", address)
    with open(f"{workdir}/sent/{pid}.tmp", "w") as f:
        f.write(repr(sent))
    os.rename(f"{workdir}/sent/{pid}.tmp", f"{workdir}/sent/{pid}")
    os.execv("/bin/sleep", ["sleep", marker])


def serve_tcp(workdir: str, port: int, wid: int) -> None:
    count = counter(workdir)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((f"127.0.0.{wid}", port))
    server.listen(64)
    while True:
        conn, _ = server.accept()
        conn.close()
        count()


def watchdog(workdir: str) -> None:
    count = counter(workdir)
    address = notify_address()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.sendto(b"READY=1", address)
    period = int(os.environ.get("WATCHDOG_USEC", "0")) / 1e6
    while True:
        if period <= 0:
            time.sleep(3600)
            continue
        time.sleep(period / 2)
        sock.sendto(b"WATCHDOG=1", address)
        count()


def main(argv: list[str]) -> None:
    mode, workdir, arg, wid, marker = argv[1:6]
    if mode == "ready":
        ready(workdir, float(arg), marker)
    elif mode == "tcp":
        serve_tcp(workdir, int(arg), int(wid))
    elif mode == "watchdog":
        watchdog(workdir)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv)
