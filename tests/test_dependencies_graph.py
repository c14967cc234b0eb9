"""The depends_on graph alone (gcircus.dependencies): refusing unknown names and cycles, the start and stop orders
with priority as the tie-breaker, and the closures the control commands follow."""
from __future__ import annotations

import pytest

import gcircus.dependencies as deps


def graph(*rows: tuple[str, str, int]) -> dict:
    """{name: (depends_on, priority)} from (name, "dep dep", priority) rows, in their order."""
    return {name: (tuple(needs.split()), priority) for name, needs, priority in rows}


CHAIN = graph(("web", "app", 0), ("app", "db", 0), ("db", "", 0))


def test_a_cycle_is_printed_from_the_first_watcher_in_it():
    with pytest.raises(deps.DependencyError) as caught:
        deps.check_graph(graph(("a", "b", 0), ("b", "c", 0), ("c", "a", 0), ("d", "", 0)))
    assert str(caught.value) == "dependency cycle: a -> b -> c -> a"
    assert caught.value.watcher == "a" and caught.value.cycle == ("a", "b", "c", "a")


def test_a_watcher_depending_on_itself_is_a_cycle():
    with pytest.raises(deps.DependencyError, match=r"^dependency cycle: solo -> solo$"):
        deps.check_graph(graph(("ok", "", 0), ("solo", "solo", 0)))


def test_a_cycle_behind_a_healthy_chain_is_found():
    with pytest.raises(deps.DependencyError, match=r"dependency cycle: b -> c -> b"):
        deps.check_graph(graph(("a", "b", 0), ("b", "c", 0), ("c", "b", 0)))


def test_an_unknown_name_names_the_watcher_and_suggests_the_closest():
    with pytest.raises(deps.DependencyError) as caught:
        deps.check_graph(graph(("app", "dbb", 0), ("db", "", 0)))
    assert str(caught.value) == "watcher 'app': depends on 'dbb', which is no watcher (did you mean 'db'?)"
    assert caught.value.watcher == "app" and caught.value.suggestion == "db"


def test_an_unknown_name_far_from_every_watcher_gets_no_suggestion():
    with pytest.raises(deps.DependencyError) as caught:
        deps.check_graph(graph(("app", "zzzzzz", 0), ("db", "", 0)))
    assert "did you mean" not in str(caught.value) and caught.value.suggestion is None


def test_names_are_case_insensitive_and_results_keep_each_watchers_spelling():
    g = graph(("Web", "APP", 0), ("App", "db", 0), ("DB", "", 0))
    assert deps.start_order(g) == ["DB", "App", "Web"]
    assert deps.dependencies_of(g, "web") == ["DB", "App"]


def test_start_order_puts_dependencies_first_even_before_a_higher_priority():
    g = graph(("web", "db", 100), ("db", "", 0), ("cache", "", 50))
    assert deps.start_order(g) == ["cache", "db", "web"]


def test_priority_breaks_ties_among_watchers_free_to_start_and_then_the_given_order():
    g = graph(("low", "", 1), ("b", "", 5), ("a", "", 5), ("after_low", "low", 9))
    assert deps.start_order(g) == ["b", "a", "low", "after_low"]


def test_without_dependencies_the_orders_are_the_priority_orders():
    g = graph(("a", "", 1), ("b", "", 3), ("c", "", 1), ("d", "", 3))
    assert deps.start_order(g) == ["b", "d", "a", "c"]
    assert deps.stop_stages(g) == [["a", "c"], ["b", "d"]]  # each priority level stops together, lowest first


def test_stop_order_is_dependents_first_and_lower_priority_first_among_the_free():
    assert deps.stop_order(CHAIN) == ["web", "app", "db"]
    g = graph(("db", "", 10), ("web", "db", 0), ("other", "", 0), ("batch", "", 5))
    assert deps.stop_stages(g) == [["web", "other"], ["batch"], ["db"]]


def test_a_dependency_with_a_lower_priority_still_stops_after_its_dependents():
    g = graph(("db", "", 0), ("web", "db", 10))
    assert deps.stop_stages(g) == [["web"], ["db"]]
    assert deps.start_order(g) == ["db", "web"]


def test_closures_are_in_start_order_direct_or_recursive():
    assert deps.dependencies_of(CHAIN, "web") == ["db", "app"]
    assert deps.dependencies_of(CHAIN, "web", recursive=False) == ["app"]
    assert deps.dependents_of(CHAIN, "db") == ["app", "web"]
    assert deps.dependents_of(CHAIN, "db", recursive=False) == ["app"]
    assert deps.dependencies_of(CHAIN, "db") == [] and deps.dependents_of(CHAIN, "web") == []


def test_a_diamond_is_one_dependency_each_way():
    g = graph(("top", "left right", 0), ("left", "base", 0), ("right", "base", 0), ("base", "", 0))
    assert deps.start_order(g) == ["base", "left", "right", "top"]
    assert deps.dependents_of(g, "base") == ["left", "right", "top"]
    assert deps.stop_stages(g) == [["top"], ["left", "right"], ["base"]]


def test_a_long_chain_is_no_recursion_problem():
    g = {f"w{i}": ((f"w{i + 1}",) if i < 4999 else (), 0) for i in range(5000)}
    assert deps.start_order(g)[:2] == ["w4999", "w4998"]
    assert len(deps.dependencies_of(g, "w0")) == 4999


def test_the_closures_of_an_unknown_watcher_are_a_key_error():
    with pytest.raises(KeyError):
        deps.dependencies_of(CHAIN, "nope")
