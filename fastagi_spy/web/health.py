"""/healthz and /readyz for load balancers and systemd.

/healthz answers "ok" while the process serves HTTP at all. /readyz answers 200 only when
every configured AMI link is up and synced and the store answers; otherwise 503 with one
short line per failing part. Neither says anything a caller could use against us: server
names come from the config, reasons are fixed words, no address, login or error text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.web.resource import Resource
from twisted.web.server import Request


@dataclass(frozen=True)
class LinkState:
    """One Asterisk server as /readyz sees it."""

    server: str
    ami_up: bool  # logged in, actions possible
    synced: bool  # the live map holds a resync newer than the last drop


def link_problems(links: Iterable[LinkState]) -> list[str]:
    """One line per server that cannot serve a supervisor now."""
    problems = []
    for link in links:
        if not link.ami_up:
            problems.append(f"ami {link.server}: down")
        elif not link.synced:
            problems.append(f"ami {link.server}: not synced")
    return problems


def store_problem(probe: Callable[[], object]) -> list[str]:
    """``probe`` runs one trivial statement; any failure is "store: unreachable" (its
    message may hold a path, so it is not shown)."""
    try:
        probe()
    except Exception:
        return ["store: unreachable"]
    return []


def _plain(request: Request, status: int, text: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return text.encode()


class Healthz(Resource):
    isLeaf = True

    def __init__(self) -> None:
        Resource.__init__(self)

    def render_GET(self, request: Request) -> bytes:
        return _plain(request, 200, "ok\n")


class Readyz(Resource):
    """``problems()`` lists what is not ready; empty means ready."""

    isLeaf = True

    def __init__(self, problems: Callable[[], list[str]]) -> None:
        Resource.__init__(self)
        self.problems = problems

    def render_GET(self, request: Request) -> bytes:
        try:
            found = self.problems()
        except Exception:
            # Fail closed: a check that breaks is a reason not to send traffic here.
            found = ["readiness check failed"]
        if found:
            return _plain(request, 503, "".join(f"{line}\n" for line in found))
        return _plain(request, 200, "ready\n")


def mount_health(root: Resource, problems: Callable[[], list[str]]) -> None:
    root.putChild(b"healthz", Healthz())
    root.putChild(b"readyz", Readyz(problems))
