"""The workload of run_streams.py: send one writer's pre-generated lines to stdout as fast as possible.

argv: spec.json wid marker. The spec maps the wid to its data file and byte count and names the
ready/go files. The writer maps its data, announces itself (ready file), waits for the go file
(polled every millisecond, so the runner can take the daemon's CPU reading just before), sends the
data with large os.write calls, records its start/end times (CLOCK_MONOTONIC, comparable with the
runner's) and then sleeps until it is stopped, so the measurement never depends on how a supervisor
handles an exiting child. The marker is only there to find leftovers by pid after a crash.
"""

import json
import mmap
import os
import sys
import time

CHUNK = 1 << 20


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    wid = sys.argv[2]
    path, nbytes = spec["writers"][wid]
    with open(path, "rb") as fh:
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mm = mmap.mmap(fh.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    view = memoryview(mm)[:nbytes]
    open(spec["ready"] % wid, "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(spec["go"]):
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.001)
    t0 = time.monotonic()
    off = 0
    while off < nbytes:
        off += os.write(1, view[off:off + CHUNK])
    t1 = time.monotonic()
    with open(spec["times"] % wid, "w") as f:
        f.write(f"{t0} {t1}\n")
    time.sleep(spec.get("linger", 600))


if __name__ == "__main__":
    main()
