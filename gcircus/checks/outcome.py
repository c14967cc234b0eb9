"""The result of one readiness or health check, as every kind of check reports it."""
from __future__ import annotations

from dataclasses import dataclass

DETAIL_LIMIT = 200  # characters of detail kept: it is shown per process and logged, whatever a check printed


@dataclass(frozen=True)
class Outcome:
    """`ok` says whether the check passed; `detail` is short human text ("http 503", "tcp 127.0.0.1:80 refused")."""

    ok: bool
    detail: str

    @classmethod
    def failed(cls, detail: str) -> Outcome:
        """A failed outcome, its detail cut to DETAIL_LIMIT characters."""
        return cls(False, detail if len(detail) <= DETAIL_LIMIT else detail[:DETAIL_LIMIT] + "...")
