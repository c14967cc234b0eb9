"""Hooks for tests/test_issue9_startup.py, which gcircusd imports from the repository's top level."""
from __future__ import annotations


class Undecided:
    """A hook's answer that cannot say whether it is true: gcircusd reading it raises, outside the hook's call."""

    def __bool__(self):
        raise RuntimeError("this answer is neither true nor false")


def undecided(**kwargs) -> Undecided:
    return Undecided()
