"""Reading the audit log (`[circus] audit_log`) a test's gcircusd writes: its JSON lines, once there are enough."""
from __future__ import annotations

import json

from tests.support.waiting import wait_for


def audit_lines(path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_lines(path, count: int) -> list[dict]:
    """The audit file's lines once it holds `count` of them."""
    return wait_for(lambda: (lambda lines: len(lines) >= count and lines)(audit_lines(path)), 30,
                    message=f"{count} audit lines in {path}")
