"""PIN verification in a separate, niced worker process, spoken to over its stdin/stdout.

argon2id is slow and memory-hard on purpose, and argon2-cffi keeps the GIL while it works
(measured: a hashing thread stalls every other thread ~30 ms at a time). In a thread it would
freeze AMI ingestion and every other call; behind a ProcessPoolExecutor its helper threads
still fight the reactor for the GIL. Here the reactor itself reads and writes the worker's
pipes: no threads at all. One JSON line per request and per reply.

The worker gets the pepper and the hash cost on its first stdin line, never in argv or the
environment (both are visible in /proc).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sys
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

NICE = 19
# A worker that dies before it is ready (a broken install, no memory) is restarted after
# 0.5 s, then twice as long each time up to 30 s: never a tight spawn loop.
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
WORKER_ARGV = (sys.executable, "-m", "fastagi_spy.net.hashworker")


class HashWorkerGone(Exception):
    """The worker process exited; pending PIN checks fail (the caller hears a refusal)."""


class HashWorkerStopped(HashWorkerGone):
    """The worker ended before it was ready because we stopped it: nothing went wrong."""


class _WorkerProtocol(ProcessProtocol):
    log = Logger()

    def __init__(self, owner: HashWorker) -> None:
        self.owner = owner
        self.buffer = b""
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.became_ready = False

    def outReceived(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            reply = json.loads(line)
            if reply.get("ready"):
                self.became_ready = True
                self.ready.callback(None)
            else:
                self.owner.answered(int(reply["id"]), bool(reply["ok"]))

    def errReceived(self, data: bytes) -> None:
        self.log.warn("PIN hash worker: {text}", text=data.decode(errors="replace").rstrip())

    def processEnded(self, reason: Failure) -> None:
        if not self.ready.called:
            if self.owner.stopping:
                self.ready.errback(HashWorkerStopped("the PIN hash worker was stopped"))
            else:
                self.ready.errback(
                    HashWorkerGone(f"the PIN hash worker did not start: {reason.value}"))
        self.owner.ended(self)


class HashWorker:
    """Verifies PINs in one worker process; restarted if it dies."""

    log = Logger()

    def __init__(self, reactor: Any, pepper: bytes, cost: str,
                 argv: tuple[str, ...] = WORKER_ARGV) -> None:
        self.reactor = reactor
        self.settings = {"pepper": pepper.hex(), "cost": cost}
        self.argv = argv
        self.protocol: _WorkerProtocol | None = None
        self.pending: dict[int, defer.Deferred[bool]] = {}
        self.ids = itertools.count(1)
        self.stopping = False
        self.failed_starts = 0  # in a row: workers that died before they were ready
        self._restart: IDelayedCall | None = None

    def start(self) -> defer.Deferred[None]:
        self.stopping = False
        self._restart = None
        self.protocol = _WorkerProtocol(self)
        self.reactor.spawnProcess(
            self.protocol, self.argv[0], list(self.argv),
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path)})
        assert self.protocol.transport is not None
        self.protocol.transport.write(json.dumps(self.settings).encode() + b"\n")
        return self.protocol.ready

    def stop(self) -> None:
        self.stopping = True
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.closeStdin()

    def verify(self, supervisor: str, pin: str, stored_hash: str | None) -> defer.Deferred[bool]:
        if self.protocol is None or self.protocol.transport is None:
            return defer.fail(HashWorkerGone("the PIN hash worker is not running"))
        request_id = next(self.ids)
        d: defer.Deferred[bool] = defer.Deferred()
        self.pending[request_id] = d
        line = json.dumps({"id": request_id, "s": supervisor, "p": pin, "h": stored_hash})
        self.protocol.transport.write(line.encode() + b"\n")
        return d

    def answered(self, request_id: int, ok: bool) -> None:
        d = self.pending.pop(request_id, None)
        if d is not None:
            d.callback(ok)

    def ended(self, protocol: _WorkerProtocol) -> None:
        if protocol is not self.protocol:
            return
        self.protocol = None
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(HashWorkerGone("the PIN hash worker exited"))
        if self.stopping:
            return
        if protocol.became_ready:
            self.failed_starts = 0
            delay = 0.0
        else:
            delay = min(MAX_RESTART_DELAY, RESTART_DELAY * 2**self.failed_starts)
            self.failed_starts += 1
        self.log.error("PIN hash worker exited; restarting it in {delay:.1f} s", delay=delay)
        self._restart = self.reactor.callLater(delay, self._start_again)

    def _start_again(self) -> None:
        # A worker that fails to start exits, and ended() logs that and schedules the next
        # try; nobody waits on this Deferred.
        self.start().addErrback(lambda _f: None)


def _serve() -> None:
    """The worker: read settings, then one request per line, one reply per line."""
    from fastagi_spy.store.pins import PinHasher

    with contextlib.suppress(OSError):  # not allowed to lower priority: run as we are
        os.nice(NICE)
    # Ctrl-C in a terminal reaches the whole process group; the server decides when this
    # worker ends (it closes our stdin), so a Ctrl-C must not kill us mid-shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = json.loads(sys.stdin.readline())
    pepper = bytes.fromhex(settings["pepper"])
    hasher = PinHasher.cheap(pepper) if settings["cost"] == "cheap" else PinHasher(pepper)
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        ok = hasher.verify(request["s"], request["p"], request["h"])
        out.write(json.dumps({"id": request["id"], "ok": ok}) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()
