"""``/static/``: the pages' stylesheet and scripts, shipped in the package (no CDN, no
internet: the page must work on an isolated network).

Only plain file names directly in the static directory are served (no sub-paths, no
listing, nothing outside it), with their type and charset stated so nothing is sniffed.
Files are read per request: small, and a reinstall needs no restart.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

STATIC_DIR = Path(__file__).resolve().parent / "static"
NAME = re.compile(rb"[a-z0-9][a-z0-9_-]{0,63}\.(css|js|png|svg)")
TYPES = {b"css": "text/css; charset=utf-8", b"js": "text/javascript; charset=utf-8",
         b"png": "image/png", b"svg": "image/svg+xml"}


class StaticFile(Resource):
    isLeaf = True

    def __init__(self, path: Path, content_type: str) -> None:
        Resource.__init__(self)
        self.path = path
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        try:
            body = self.path.read_bytes()
        except OSError:
            request.setResponseCode(404)
            return b"not found"
        request.setHeader("content-type", self.content_type)
        request.setHeader("x-content-type-options", "nosniff")
        request.setHeader("cache-control", "no-cache")  # revalidated: a new version shows
        return body


class StaticFiles(Resource):
    def __init__(self) -> None:
        Resource.__init__(self)

    def getChild(self, path: bytes, request: Request) -> IResource:
        match = NAME.fullmatch(path)
        if match is None or request.postpath:
            return notFound()
        return StaticFile(STATIC_DIR / path.decode("ascii"), TYPES[match.group(1)])


def static_files() -> StaticFiles:
    return StaticFiles()
