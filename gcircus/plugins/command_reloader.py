"""CommandReloader: restart a watcher when the executable its command runs is replaced or modified."""
from __future__ import annotations

import logging
import os
import shlex
import shutil

from gcircus.plugins.base import NativePlugin

log = logging.getLogger(__name__)


def command_executable(watcher) -> str | None:
    """The real path of the program a watcher runs: `executable`, else cmd's first word looked up in PATH."""
    program = watcher.executable
    if not program:
        try:
            words = shlex.split(watcher.cmd)
        except ValueError:
            words = watcher.cmd.split()
        if not words:
            return None
        program = words[0]
    if os.sep not in program:
        path = (watcher.env or {}).get("PATH") or os.environ.get("PATH", os.defpath)
        program = shutil.which(program, path=path)
        if program is None:
            return None
    elif not os.path.isabs(program):
        program = os.path.join(watcher.working_dir, program)
    return os.path.realpath(program)


class CommandReloader(NativePlugin):
    """Every loop_rate seconds (1 by default), restart each active watcher whose executable file changed (another
    file at its path, or a new modification time)."""

    name = "command_reloader"

    def __init__(self, arbiter, plugin_name: str = "", **config):
        super().__init__(arbiter, plugin_name, **config)
        self.loop_rate = self.option("loop_rate", 1.0, float)
        if self.loop_rate <= 0:
            raise ValueError(f"{self.plugin_name}: loop_rate must be positive")
        self.seen: dict[str, tuple[str, float]] = {}

    def handle_init(self) -> None:
        self.look_after()  # record the current state, so a change made before the first round is seen too

    def look_after(self) -> None:
        watchers = self.supervised_watchers()
        for watcher in watchers:
            path = command_executable(watcher)
            try:
                current = (path, os.stat(path).st_mtime) if path else None
            except OSError:
                current = None
            if current is None:
                continue
            previous = self.seen.get(watcher.name)
            self.seen[watcher.name] = current
            if previous is not None and previous != current and watcher.is_active():
                log.info("%s: %s changed: restarting %s", self.plugin_name, path, watcher.name)
                watcher.restart()
        names = {w.name for w in watchers}
        self.seen = {name: state for name, state in self.seen.items() if name in names}
