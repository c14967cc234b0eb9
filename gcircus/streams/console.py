"""A thread of its own for each of gcircusd's own output descriptors (stdout, stderr), for the sinks writing there.

Writes to gcircusd's stdout block while that pipe is full (a container runtime or a `| tee` that stops reading). In
gevent's shared thread pool a few such writes would hold every worker, and file sinks and hooks would wait behind
them. Here they hold one thread per descriptor: only the children whose output goes through gcircusd's stdout
wait, on their own pipes, as children that inherit that stdout would.
"""
from __future__ import annotations

import weakref

import gevent
from gevent.threadpool import ThreadPool

_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # hub -> {fd: pool}; a pool serves one hub


def console_pool(fd: int) -> ThreadPool:
    """The one-thread pool writing to gcircusd's descriptor `fd` (1 or 2), in the current hub."""
    pools = _pools.setdefault(gevent.get_hub(), {})
    pool = pools.get(fd)
    if pool is None:
        pool = pools[fd] = ThreadPool(1)
    return pool
