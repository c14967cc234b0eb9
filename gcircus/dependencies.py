"""The dependency graph of watchers (`depends_on`): checked, then read as start and stop orders.

Pure functions over `{watcher name: (depends_on names, priority)}`, with no gevent and no Watcher, so the config
loader, reloadconfig's plan, `add` and the arbiter all check and order the same graph the same way. The mapping's
order is the caller's tie order: among watchers equally placed it is kept, as the priority order keeps it today.

Names are case-insensitive, as watcher names are; results use each watcher's own spelling. A watcher starts only
after everything it depends on, and priority (higher first) only decides among watchers whose dependencies are
all placed: dependencies are a hard order, priority a preference. Stopping is the mirror: a watcher stops only once
every watcher depending on it has stopped, and among those free to stop the lowest priority goes first.
"""
from __future__ import annotations

import heapq
from collections.abc import Mapping

from gcircus.suggest import closest

# {watcher name: (the names in its depends_on, its priority)}, in the caller's tie order.
Graph = Mapping[str, tuple[tuple[str, ...], int]]


class DependencyError(ValueError):
    """A depends_on names no watcher, or the dependencies go round in a cycle.

    `watcher` is the watcher whose depends_on is to blame (the one naming the unknown name, or the first of the
    cycle), so a config error can name its section; `reason` says what is wrong without naming that watcher (a
    config error names it as its section), `suggestion` is the watcher probably meant, and `cycle` the cycle's
    names, the first one repeated at the end.
    """

    def __init__(self, reason: str, watcher: str, cycle: tuple[str, ...] = (), suggestion: str | None = None) -> None:
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        super().__init__(f"watcher {watcher!r}: {reason}{hint}" if not cycle else reason)
        self.reason = reason
        self.watcher = watcher
        self.cycle = cycle
        self.suggestion = suggestion


def _edges(graph: Graph) -> dict[str, list[str]]:
    """{name: [its dependencies, each spelt as its watcher is]}; DependencyError for a name that is no watcher."""
    spelling = {name.lower(): name for name in graph}
    edges: dict[str, list[str]] = {}
    for name, (depends_on, _) in graph.items():
        edges[name] = []
        for wanted in depends_on:
            found = spelling.get(wanted.lower())
            if found is None:
                meant = closest(wanted, [n for n in graph if n.lower() != name.lower()])
                raise DependencyError(f"depends on {wanted!r}, which is no watcher", name, suggestion=meant)
            if found not in edges[name]:
                edges[name].append(found)
    return edges


def _find_cycle(edges: dict[str, list[str]]) -> tuple[str, ...] | None:
    """The first cycle a depth-first walk in graph order meets (first name repeated at the end), or None.

    Iterative, so a long chain of dependencies cannot exhaust Python's recursion limit.
    """
    done: set[str] = set()
    for root in edges:
        if root in done:
            continue
        path, on_path = [root], {root}
        pending = [iter(edges[root])]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                finished = path.pop()
                done.add(finished)
                on_path.discard(finished)
                pending.pop()
            elif nxt in on_path:
                return (*path[path.index(nxt):], nxt)
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                pending.append(iter(edges[nxt]))
    return None


def check_graph(graph: Graph) -> dict[str, list[str]]:
    """Refuse an unknown name or a cycle (a watcher depending on itself included) with a DependencyError whose
    message shows the cycle: `dependency cycle: a -> b -> a`. Returns the edges, spelt as the watchers are."""
    edges = _edges(graph)
    cycle = _find_cycle(edges)
    if cycle is not None:
        raise DependencyError("dependency cycle: " + " -> ".join(cycle), cycle[0], cycle)
    return edges


def start_order(graph: Graph) -> list[str]:
    """Every watcher after all it depends on; among those ready to go, higher priority first, then graph order."""
    edges = check_graph(graph)
    rank = {name: index for index, name in enumerate(graph)}
    waiting_on = {name: len(deps) for name, deps in edges.items()}
    dependents: dict[str, list[str]] = {name: [] for name in graph}
    for name, deps in edges.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = [(-graph[name][1], rank[name], name) for name, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        name = heapq.heappop(ready)[2]
        order.append(name)
        for dependent in dependents[name]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                heapq.heappush(ready, (-graph[dependent][1], rank[dependent], dependent))
    return order


def stop_stages(graph: Graph) -> list[list[str]]:
    """Groups to stop one after the other, each group's watchers together (in graph order).

    A group is every watcher free to stop (all its dependents stopped) with the lowest priority among those free:
    without depends_on that is exactly one group per priority level, lowest first, as watchers always stopped.
    """
    edges = check_graph(graph)
    dependents_left = {name: 0 for name in graph}
    for deps in edges.values():
        for dep in deps:
            dependents_left[dep] += 1
    left = dict.fromkeys(graph)  # ordered set
    stages = []
    while left:
        free = [name for name in left if dependents_left[name] == 0]
        lowest = min(graph[name][1] for name in free)
        stage = [name for name in free if graph[name][1] == lowest]
        for name in stage:
            del left[name]
            for dep in edges[name]:
                dependents_left[dep] -= 1
        stages.append(stage)
    return stages


def stop_order(graph: Graph) -> list[str]:
    """The stop stages one after the other: dependents before what they depend on, lower priority first."""
    return [name for stage in stop_stages(graph) for name in stage]


def _closure(edges: dict[str, list[str]], name: str, recursive: bool) -> set[str]:
    found: set[str] = set()
    todo = list(edges.get(name, ()))
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            if recursive:
                todo.extend(edges[current])
    return found


def _spelt(graph: Graph, name: str) -> str:
    """`name` as its watcher spells it; KeyError if no watcher has it."""
    for candidate in graph:
        if candidate.lower() == name.lower():
            return candidate
    raise KeyError(name)


def dependencies_of(graph: Graph, name: str, recursive: bool = True) -> list[str]:
    """What `name` depends on (with `recursive`, what those depend on too), in start order."""
    edges = check_graph(graph)
    wanted = _closure(edges, _spelt(graph, name), recursive)
    return [other for other in start_order(graph) if other in wanted]


def dependents_of(graph: Graph, name: str, recursive: bool = True) -> list[str]:
    """What depends on `name` (with `recursive`, what depends on those too), in start order."""
    edges = check_graph(graph)
    reverse: dict[str, list[str]] = {other: [] for other in graph}
    for other, deps in edges.items():
        for dep in deps:
            reverse[dep].append(other)
    wanted = _closure(reverse, _spelt(graph, name), recursive)
    return [other for other in start_order(graph) if other in wanted]
