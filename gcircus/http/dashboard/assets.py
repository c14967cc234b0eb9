"""The dashboard's static files (static/: CSS, JavaScript, icon), installed as package data and served by gcircusd.

They are read once, when first asked for, and served from memory with a strong ETag; the page links them with their
hash in the query (`?v=`), so a browser may cache them for a long time and still gets a new version right after an
upgrade. Only the files of ASSETS exist: a path never reaches the file system.
"""
from __future__ import annotations

import functools
import hashlib
from importlib import resources
from typing import NamedTuple

PREFIX = "/dashboard/static/"
ASSETS = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


class Asset(NamedTuple):
    data: bytes
    content_type: str
    etag: str


@functools.cache
def load(name: str) -> Asset | None:
    """The asset called `name`, or None for any other name."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    data = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
    return Asset(data, content_type, '"' + hashlib.sha256(data).hexdigest()[:16] + '"')


def url(name: str) -> str:
    """The URL the page links asset `name` with: its path and its version."""
    asset = load(name)
    if asset is None:
        raise LookupError(f"no dashboard asset {name!r}")
    return f"{PREFIX}{name}?v={asset.etag.strip(chr(34))}"
