"""/healthz and /readyz for load balancers and systemd.

/healthz answers "ok" while the process serves HTTP at all. /readyz answers 200 only when
every configured AMI link is up and synced and the store answers; otherwise 503 with one
short line per failing part. Neither says anything a caller could use against us: server
names come from the config, reasons are fixed words, no address, login or error text.

The store probe may be a PostgreSQL round trip run on the store thread: /readyz then answers
when it comes back (the reactor never waits on it), and a probe that fails or takes too long
is "store: unreachable".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

UNREACHABLE = "store: unreachable"
PROBE_TIMEOUT = 3.0  # seconds: a store slower than this cannot serve a supervisor either


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


def store_problem_later(probe: Callable[[], defer.Deferred[Any]], clock: Any,
                        timeout: float = PROBE_TIMEOUT) -> defer.Deferred[list[str]]:
    """``probe`` runs one trivial statement (on the store thread with PostgreSQL); a failure
    or no answer within ``timeout`` is "store: unreachable" (its message may hold a path or
    a host, so it is not shown)."""
    d = probe()
    if not d.called:
        d.addTimeout(timeout, clock)
    return d.addCallbacks(lambda _: [], lambda _: [UNREACHABLE])


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
    """``problems()`` lists what is not ready (now, or as a Deferred); empty means ready."""

    isLeaf = True

    def __init__(self, problems: Callable[[], list[str] | defer.Deferred[list[str]]]) -> None:
        Resource.__init__(self)
        self.problems = problems

    def render_GET(self, request: Request) -> int:
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)

        def answer(found: Any) -> None:  # list[str], or the Failure of a broken check
            if gone:
                return  # the prober hung up before the store answered
            if isinstance(found, Failure):
                # Fail closed: a check that breaks is a reason not to send traffic here.
                found = ["readiness check failed"]
            if found:
                body = _plain(request, 503, "".join(f"{line}\n" for line in found))
            else:
                body = _plain(request, 200, "ready\n")
            request.setHeader(b"content-length", str(len(body)).encode())
            request.write(body)
            request.finish()

        defer.maybeDeferred(self.problems).addBoth(answer)
        return NOT_DONE_YET


def mount_health(root: Resource,
                 problems: Callable[[], list[str] | defer.Deferred[list[str]]]) -> None:
    root.putChild(b"healthz", Healthz())
    root.putChild(b"readyz", Readyz(problems))
