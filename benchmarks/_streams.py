"""Data and checks for the output-stream benchmark (run_streams.py).

Every writer (identified by a small integer ``wid``) emits the same deterministic lines for a given
seed::

    <wid> <seq> <filler>\\n

``seq`` counts from 0; the filler (ASCII letters) and its length are a pure function of
(seed, wid, seq), so any single line can be re-created and checked on its own. Lines are 20-300
bytes long. The data are generated once per run into a file that the writers send from (``mmap``),
so generating them costs nothing while a supervisor is being measured.

The checks read the captured file(s) back:

* one writer: the output (rotated files concatenated oldest first) must equal the data byte for
  byte; a non-final rotated file that does not end in a newline is a line split across files;
* two writers into one file: the lines of each writer, taken out in order, must equal that
  writer's data, and there must be no line belonging to neither (a merge of two lines).

Both have a fast path (bulk compares, ~1 GB/s) and, only when it fails, a line-by-line diagnosis
that counts broken (merged, cut or garbled) lines, missing lines and lines out of order.
"""

from __future__ import annotations

import mmap
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
BASE_LEN = 4096
MIN_FILL, FILL_SPAN = 16, 270  # filler 16..285 bytes; with "<wid> <seq> " and "\n" a line is 20..300


class Lines:
    """The line generator of one seed: ``line(wid, seq)`` re-creates any line in O(1)."""

    def __init__(self, seed: int):
        rng = random.Random(seed)
        self.base = bytes(rng.choice(LETTERS) for _ in range(BASE_LEN))
        self.salt = rng.getrandbits(32)

    def _shape(self, wid: int, seq: int) -> tuple[int, int]:
        h = ((seq + 1) * 2654435761 + wid * 40503 + self.salt) & 0xFFFFFFFF
        h ^= h >> 15
        return MIN_FILL + h % FILL_SPAN, (h >> 9) % (BASE_LEN - MIN_FILL - FILL_SPAN)

    def line(self, wid: int, seq: int) -> bytes:
        n, off = self._shape(wid, seq)
        return b"%d %d %s\n" % (wid, seq, self.base[off:off + n])

    def generate(self, wid: int, path: Path, nbytes: int) -> int:
        """Write whole lines of writer ``wid`` to ``path`` until at least ``nbytes``; return the line count."""
        seq, total = 0, 0
        batch = 20000
        with open(path, "wb") as fh:
            while total < nbytes:
                chunk = b"".join([self.line(wid, s) for s in range(seq, seq + batch)])
                fh.write(chunk)
                total += len(chunk)
                seq += batch
        return seq


def cut_at_line(path: Path, nbytes: int) -> tuple[int, int]:
    """(bytes, lines) of the shortest whole-line prefix of ``path`` holding at least ``nbytes``."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        end = mm.find(b"\n", max(nbytes - 1, 0))
        if end < 0:
            raise ValueError(f"{path} holds fewer than {nbytes} bytes")
        end += 1
        # line count of the prefix, by chunks (mm.count is not there in 3.11)
        lines, pos = 0, 0
        while pos < end:
            stop = min(pos + (64 << 20), end)
            lines += mm[pos:stop].count(b"\n")
            pos = stop
        return end, lines


# ---- reading the captured output ----------------------------------------------------------------

def ordered_outputs(out_dir: Path, name: str) -> tuple[list[Path], list[str]]:
    """The captured files oldest first (name.N … name.1, name) and any other files found there."""
    rotated, others, base = [], [], None
    for entry in os.scandir(out_dir):
        if entry.name == name:
            base = Path(entry.path)
        elif entry.name.startswith(name + ".") and entry.name[len(name) + 1:].isdigit():
            rotated.append((int(entry.name[len(name) + 1:]), Path(entry.path)))
        else:
            others.append(entry.name)
    files = [p for _, p in sorted(rotated, reverse=True)]
    if base is not None:
        files.append(base)
    return files, sorted(others)


def total_size(out_dir: Path) -> int:
    """Sum of the sizes of all files in ``out_dir`` (the polling loop's completion test)."""
    total = 0
    for entry in os.scandir(out_dir):
        try:
            total += entry.stat().st_size
        except FileNotFoundError:  # renamed away between the listing and the stat: seen again next poll
            pass
    return total


def read_blocks(files: list[Path], size: int = 16 << 20):
    """The concatenation of ``files`` in blocks that end on a newline (the rest is carried over)."""
    carry = b""
    for path in files:
        with open(path, "rb") as fh:
            while True:
                data = fh.read(size)
                if not data:
                    break
                data = carry + data if carry else data
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data
                    continue
                carry = data[cut:]
                yield data[:cut]
    if carry:
        yield carry


@dataclass
class Verdict:
    """What the check found; ``ok`` means byte-exact with whole lines."""

    out_bytes: int = 0
    files: int = 0
    exact: bool = False
    split_across_files: int = 0  # non-final rotated files not ending in a newline
    broken: int = 0  # output lines that are no generated line (merged, cut, garbled)
    missing: int = 0  # generated lines never seen whole
    disorder: int = 0  # whole lines behind an earlier line of their writer (reordered or duplicated)
    first_diff: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exact and not self.split_across_files and not self.broken and not self.missing

    def cell(self) -> str:
        if self.ok:
            return "exact, whole lines" + (f" ({self.files} files)" if self.files > 1 else "")
        parts = ["bytes exact" if self.exact else "NOT byte-exact"]
        if self.split_across_files:
            parts.append(f"{self.split_across_files} lines split across files")
        if self.missing:
            parts.append(f"{self.missing} sent lines not intact")
        if self.broken:
            parts.append(f"{self.broken} garbled lines in the file")
        if self.disorder:
            parts.append(f"{self.disorder} out of order")
        return ", ".join(parts)


def check(out_dir: Path, name: str, expected: dict[int, tuple[Path, int, int]], lines: Lines) -> Verdict:
    """Compare what landed in ``out_dir`` with the data each writer sent.

    ``expected`` maps wid -> (data file, bytes sent, lines sent).
    """
    v = Verdict()
    files, others = ordered_outputs(out_dir, name)
    v.files = len(files)
    if others:
        v.notes.append("unexpected files: " + ", ".join(others[:5]))
    for path in files[:-1]:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    v.split_across_files += 1
    v.out_bytes = sum(p.stat().st_size for p in files)
    maps = {}
    try:
        for wid, (path, nbytes, _) in expected.items():
            fh = open(path, "rb")
            maps[wid] = (fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), nbytes)
        v.exact = _fast_exact(files, maps)
        if not v.exact:
            v.first_diff = _first_diff(files, maps) if len(maps) == 1 else None
            _diagnose(files, expected, lines, v)
    finally:
        for fh, mm, _ in maps.values():
            mm.close()
            fh.close()
    return v


def _fast_exact(files: list[Path], maps: dict) -> bool:
    """True when every writer's lines come out complete, in order, and nothing else is there."""
    pos = {wid: 0 for wid in maps}
    if len(maps) == 1:
        (wid, (_, mm, nbytes)), = maps.items()
        for block in read_blocks(files):
            end = pos[wid] + len(block)
            if end > nbytes or mm[pos[wid]:end] != block:
                return False
            pos[wid] = end
        return pos[wid] == nbytes
    patterns = {wid: re.compile(rb"^%d [^\n]*\n" % wid, re.M) for wid in maps}
    for block in read_blocks(files):
        taken = 0
        for wid, pat in patterns.items():
            part = b"".join(pat.findall(block))
            taken += len(part)
            _, mm, nbytes = maps[wid]
            end = pos[wid] + len(part)
            if end > nbytes or mm[pos[wid]:end] != part:
                return False
            pos[wid] = end
        if taken != len(block):  # a line of no writer (merged, or cut without its newline)
            return False
    return all(pos[wid] == maps[wid][2] for wid in maps)


def _first_diff(files: list[Path], maps: dict) -> int:
    (_, mm, nbytes), = maps.values()
    off = 0
    for block in read_blocks(files):
        ref = mm[off:min(off + len(block), nbytes)]
        if ref != block:
            n = min(len(ref), len(block))
            i = next((k for k in range(0, n, 4096) if ref[k:k + 4096] != block[k:k + 4096]), n)
            j = next((k for k in range(i, min(i + 4096, n)) if ref[k] != block[k]), min(i + 4096, n))
            return off + j
        off += len(block)
    return off


def _diagnose(files: list[Path], expected: dict, lines: Lines, v: Verdict) -> None:
    """Line by line (slow, only after the fast check failed): broken, missing and disordered lines."""
    nxt = {wid: 0 for wid in expected}
    whole = {wid: 0 for wid in expected}
    for block in read_blocks(files):
        for raw in block.split(b"\n")[:-1] if block.endswith(b"\n") else block.split(b"\n"):
            head = raw.split(b" ", 2)
            try:
                wid, seq = int(head[0]), int(head[1])
            except (ValueError, IndexError):
                v.broken += 1
                continue
            if wid not in expected or seq >= expected[wid][2] or lines.line(wid, seq) != raw + b"\n":
                v.broken += 1
                continue
            whole[wid] += 1
            if seq < nxt[wid]:  # behind an earlier line of its writer (a gap is counted as missing)
                v.disorder += 1
            nxt[wid] = max(nxt[wid], seq + 1)
    v.missing = sum(max(expected[w][2] - whole[w], 0) for w in expected)
