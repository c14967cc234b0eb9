"""The baseline of run_streams.py: a plain Python pipe-to-file copier, standing in for a supervisor.

argv: spec.json case out_file max_bytes nwriters writer_script marker. It spawns the same writer(s)
as the supervisors run (stdout=PIPE, wid 1..n) and copies 64 KiB reads to the file with os.write:

* a: a straight copy, nothing else;
* b: as a, plus size rotation: once the file would pass max_bytes it is cut at the last newline
  of the chunk in hand and renamed to .1 (older ones shifted up), so no line is split;
* c: two pipes on one selector; each read is written up to its last newline, the rest waits for
  the next read of that pipe, so lines of the two writers never mix.

That is the least work a line-aware supervisor has to do, in Python: the practical limit. SIGTERM
kills the writers and exits.
"""

import os
import selectors
import signal
import subprocess
import sys

READ = 1 << 16


def main() -> None:
    spec, case, out_name, max_bytes, n, writer, marker = sys.argv[1:8]
    max_bytes, n = int(max_bytes), int(n)
    procs = [subprocess.Popen([sys.executable, writer, spec, str(w), marker], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, bufsize=0) for w in range(1, n + 1)]

    def stop(*_):
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    out = os.open(out_name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if case == "a":
        fd = procs[0].stdout.fileno()
        while True:
            data = os.read(fd, READ)
            if not data:
                break
            os.write(out, data)
    elif case == "b":
        fd = procs[0].stdout.fileno()
        size = 0
        while True:
            data = os.read(fd, READ)
            if not data:
                break
            if size + len(data) > max_bytes:
                cut = data.rfind(b"\n", 0, max(max_bytes - size, 0)) + 1
                if cut:
                    os.write(out, data[:cut])
                    os.close(out)
                    rotate(out_name)
                    out = os.open(out_name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    data, size = data[cut:], 0
            os.write(out, data)
            size += len(data)
    else:
        sel = selectors.DefaultSelector()
        rest = {}
        for p in procs:
            sel.register(p.stdout.fileno(), selectors.EVENT_READ)
            rest[p.stdout.fileno()] = b""
        while rest:
            for key, _ in sel.select():
                fd = key.fd
                data = os.read(fd, READ)
                if not data:
                    sel.unregister(fd)
                    if rest[fd]:
                        os.write(out, rest[fd])
                    del rest[fd]
                    continue
                cut = data.rfind(b"\n") + 1
                if cut:
                    os.write(out, rest[fd] + data[:cut] if rest[fd] else data[:cut])
                    rest[fd] = data[cut:]
                else:
                    rest[fd] += data
    signal.pause()


def rotate(name: str) -> None:
    """name -> name.1, name.1 -> name.2, ... (only the backups that exist)."""
    d, base = os.path.split(name)
    nums = sorted((int(f[len(base) + 1:]) for f in os.listdir(d or ".")
                   if f.startswith(base + ".") and f[len(base) + 1:].isdigit()), reverse=True)
    for k in nums:
        os.rename(f"{name}.{k}", f"{name}.{k + 1}")
    os.rename(name, f"{name}.1")


if __name__ == "__main__":
    main()
