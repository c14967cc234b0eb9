"""A watcher's processes by pid, with the wids they hold counted as they come and go, so the next free wid is found
without looking at every process.

A watcher used to build the set of its wids at each spawn: at 10,000 processes that alone was 40 % of a cold start
(a start of N processes cost N²/2 set insertions). `ProcessTable` is a dict (pid -> Process) that keeps, on every
insertion and removal, how many of its processes hold each wid; `WidAllocator` hands out the lowest wid none of its
tables holds (a heap of the wids freed, and a high-water mark). Whoever fills the dicts (the watcher, a hand-over's
adoption) keeps using them as plain dicts: the counts follow whatever goes in or out.
"""
from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from typing import Any


class ProcessTable(dict):
    """pid -> Process, counting the wids of its processes (`holds(wid)`), and telling `on_free(wid)` when no process
    of the table holds a wid any more. Every dict method that adds or removes keeps the counts."""

    def __init__(self, on_free: Callable[[int], None] | None = None):
        super().__init__()
        self.wids: Counter[int] = Counter()
        self._on_free = on_free

    def holds(self, wid: int) -> bool:
        return wid in self.wids

    def _added(self, process: Any) -> None:
        self.wids[process.wid] += 1

    def _removed(self, process: Any) -> None:
        wid = process.wid
        left = self.wids[wid] - 1
        if left > 0:
            self.wids[wid] = left
            return
        del self.wids[wid]
        if self._on_free is not None:
            self._on_free(wid)

    def __setitem__(self, pid: int, process: Any) -> None:
        old = self.get(pid)
        if old is not None:
            self._removed(old)
        super().__setitem__(pid, process)
        self._added(process)

    def __delitem__(self, pid: int) -> None:
        process = self[pid]
        super().__delitem__(pid)
        self._removed(process)

    _MISSING = object()

    def pop(self, pid: int, default: Any = _MISSING) -> Any:
        if pid not in self:
            if default is ProcessTable._MISSING:
                raise KeyError(pid)
            return default
        process = super().pop(pid)
        self._removed(process)
        return process

    def popitem(self) -> tuple[int, Any]:
        pid, process = super().popitem()
        self._removed(process)
        return pid, process

    def setdefault(self, pid: int, default: Any = None) -> Any:
        if pid not in self:
            self[pid] = default
        return self[pid]

    def update(self, *args, **kwargs) -> None:  # type: ignore[override]
        for pid, process in dict(*args, **kwargs).items():
            self[pid] = process

    def clear(self) -> None:
        processes = list(self.values())
        super().clear()
        for process in processes:
            self._removed(process)

    def __ior__(self, other):  # type: ignore[override]
        self.update(other)
        return self


class WidAllocator:
    """The lowest wid (from 1) that none of `tables` holds, in amortized O(log n): a heap of the wids freed below the
    high-water mark, and the mark itself (every wid from it on that no table holds is free)."""

    def __init__(self):
        self.tables: list[ProcessTable] = []
        self._freed: list[int] = []  # a heap: every free wid below _mark is in it (taken ones are dropped lazily)
        self._mark = 1

    def table(self) -> ProcessTable:
        """A new table whose wids count as taken."""
        table = ProcessTable(on_free=self.freed)
        self.tables.append(table)
        return table

    def freed(self, wid: int) -> None:
        """A table no longer holds `wid`: it is free unless another table holds it."""
        if wid < self._mark and not self.taken(wid):
            heapq.heappush(self._freed, wid)

    def taken(self, wid: int) -> bool:
        return any(table.holds(wid) for table in self.tables)

    def next_free(self) -> int:
        """The lowest free wid. It stays free until a process holding it enters a table (a failed spawn leaves it
        for the next one)."""
        while self._freed:
            if not self.taken(self._freed[0]):
                return self._freed[0]
            heapq.heappop(self._freed)
        while self.taken(self._mark):
            self._mark += 1
        return self._mark
