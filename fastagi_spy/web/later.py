"""Answering a request once a coroutine has its body (a store read through the runner).

The resource returns NOT_DONE_YET at once, so the reactor serves calls and AMI events while
the body is made; the body is written when it is ready, unless the client has gone. A body
that could not be made is logged and answered with ``error(request)`` (a 500 of the
resource's own kind: plain text for a page, JSON for an API).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

log = Logger()


def plain_error(request: Request) -> bytes:
    """A page's 500: no detail (it is in the log)."""
    request.setResponseCode(500)
    request.setHeader("content-type", "text/plain; charset=utf-8")
    return b"internal error"


def answer_later(request: Request, answer: Coroutine[Any, Any, bytes], what: str,
                 error: Callable[[Request], bytes] = plain_error) -> int:
    """Write ``answer``'s body once it is ready (``error``'s if it broke), unless the client
    left; ``what`` names the request in the log."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _failure: gone.append(True))

    def failed(failure: Failure) -> bytes:
        log.failure(what + " failed", failure)
        return error(request)

    def write(body: bytes) -> None:
        if not gone:
            request.write(body)
            request.finish()

    defer.ensureDeferred(answer).addErrback(failed).addCallback(write).addErrback(
        lambda failure: log.failure(what + ": the answer could not be sent", failure))
    return NOT_DONE_YET
