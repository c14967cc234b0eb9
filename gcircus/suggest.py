"""The "did you mean" guess for a mistyped name: config sections, command-line options, gcircusctl commands.

difflib's similarity ratio decides whether a candidate looks enough alike to be offered at all. The order among
those is by edit distance, counting a swap of two adjacent letters as one edit (optimal string alignment), because
the commonest typo is a transposition: difflib alone rates `stauts` closer to `stats` (one letter dropped) than to
`status` (two letters swapped). Candidates equally far away keep the caller's order, so a caller lists the names
most often meant first.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

# A candidate this alike (difflib ratio) is worth offering; so is any candidate one edit away.
LOOKS_ALIKE = 0.6


def edit_distance(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of adjacent letters needed to turn `a` into `b`."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def closest(word: str, candidates: Iterable[str], cutoff: float = LOOKS_ALIKE) -> str | None:
    """The candidate `word` most likely meant, or None when none looks alike.

    `candidates` come most-often-meant first: that order breaks ties between candidates equally far from `word`.
    """
    ranked = []
    for rank, candidate in enumerate(dict.fromkeys(candidates)):
        if not _may_look_alike(word, candidate, cutoff):
            continue  # also keeps a huge word (a multi-MiB section name) from costing len(word) x len(candidate)
        distance = edit_distance(word, candidate)
        ratio = difflib.SequenceMatcher(None, word, candidate).ratio()
        if distance <= 1 or ratio >= cutoff:
            ranked.append((distance, rank, candidate))
    return min(ranked)[2] if ranked else None


def _may_look_alike(word: str, candidate: str, cutoff: float) -> bool:
    """False when the lengths alone rule both tests out: the edit distance is at least the length difference, and
    difflib's ratio at most twice the shorter length over the sum of both."""
    shorter, longer = sorted((len(word), len(candidate)))
    return longer - shorter <= 1 or 2 * shorter >= cutoff * (shorter + longer)
