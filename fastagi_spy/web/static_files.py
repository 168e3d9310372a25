"""``/static/``: the pages' stylesheet and scripts, shipped in the package (no CDN, no
internet: the page must work on an isolated network). Files only, never a directory listing."""

from __future__ import annotations

from pathlib import Path

from twisted.web import resource
from twisted.web.pages import notFound
from twisted.web.static import File

STATIC_DIR = Path(__file__).resolve().parent / "static"
# Charsets stated: a script or stylesheet is never sniffed as something else.
TYPES = {**File.contentTypes, ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}


class StaticFiles(File):
    """twisted.web's File with directory listings turned into 404s (its children are made
    with the same class, so the rule holds below /static/ too)."""

    contentTypes = TYPES

    def directoryListing(self) -> resource.IResource:
        return notFound()


def static_files() -> StaticFiles:
    return StaticFiles(str(STATIC_DIR), defaultType="application/octet-stream")
