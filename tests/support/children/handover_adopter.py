"""The "new image" of the exec hand-over test: adopts a child's output pipes from an exported description.

Started by fork+exec with the pipe fds inherited and GCIRCUS_TEST_HANDOVER holding JSON {"pid", "wid", "confs",
"prefix_output", "exported"}: it builds a fresh WatcherOutputs for the same watcher config, adopts, and once every
stdout/stderr sink file ends with the child's `END <n>` line, closes its outputs (flushing) and exits 0.
"""
from __future__ import annotations

import json
import os
import types

import gevent

from gcircus.streams.outputs import WatcherOutputs

DEADLINE = 60.0  # seconds to wait for the child's END lines


def ended(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    return data.endswith(b"\n") and b"END " in data[:-1].rpartition(b"\n")[2]


def main() -> None:
    state = json.loads(os.environ["GCIRCUS_TEST_HANDOVER"])
    outputs = WatcherOutputs("counter", state["confs"], prefix_output=state["prefix_output"])
    process = types.SimpleNamespace(pid=state["pid"], wid=state["wid"], env={}, stdout=None, stderr=None)
    outputs.adopt(process, state["exported"])
    files = [conf["filename"] for conf in state["confs"].values()]
    with gevent.Timeout(DEADLINE):
        while not all(ended(path) for path in files):
            gevent.sleep(0.01)
    outputs.close()


if __name__ == "__main__":
    main()
