"""PIN verification in a separate, niced worker process, spoken to over its stdin/stdout.

argon2id is slow and memory-hard on purpose, and argon2-cffi keeps the GIL while it works
(measured: a hashing thread stalls every other thread ~30 ms at a time). In a thread it would
freeze AMI ingestion and every other call; behind a ProcessPoolExecutor its helper threads
still fight the reactor for the GIL. Here the reactor itself reads and writes the worker's
pipes: no threads at all. One JSON line per request and per reply.

The worker gets the pepper and the hash cost on its first stdin line, never in argv or the
environment (both are visible in /proc). It runs as ``python -I`` (no environment variables,
no user site, no current directory on sys.path) in a fixed directory, importing this very
package from where the server imported it.

`HashPool` runs one worker per core and queues verifications per calling device, served
round-robin: one phone flooding PIN attempts waits behind itself, not in front of others. A
verification that has not answered in time fails (the caller hears "service unavailable")
and its worker is killed and restarted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sys
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from fastagi_spy.supervise.pincheck import PinCheckUnavailable

NICE = 19
# A worker that dies before it is ready (a broken install, no memory) is restarted after
# 0.5 s, then twice as long each time up to 30 s: never a tight spawn loop.
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
# The directory holding the fastagi_spy package the server runs: the worker imports the same
# code, whether installed or run from a checkout, and nothing else (-I ignores PYTHONPATH).
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from fastagi_spy.net.hashworker import _serve; _serve()")
WORKER_ARGV = (sys.executable, "-I", "-c", _BOOT, PACKAGE_ROOT)
WORKER_DIRECTORY = "/"  # fixed: nothing the worker does depends on where the server started


class HashWorkerGone(PinCheckUnavailable):
    """The worker process exited; pending PIN checks fail (the caller hears a refusal)."""


class HashWorkerTimeout(HashWorkerGone):
    """A PIN check did not answer within the configured time."""


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
                if self.owner.on_ready is not None:
                    self.owner.on_ready()
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
        self.on_ready: Callable[[], None] | None = None  # each time a (re)started one is ready

    @property
    def ready(self) -> bool:
        return self.protocol is not None and self.protocol.became_ready

    def start(self) -> defer.Deferred[None]:
        self.stopping = False
        self._restart = None
        self.protocol = _WorkerProtocol(self)
        self.reactor.spawnProcess(self.protocol, self.argv[0], list(self.argv),
                                  env={"PATH": os.environ.get("PATH", "")},
                                  path=WORKER_DIRECTORY)
        assert self.protocol.transport is not None
        self.protocol.transport.write(json.dumps(self.settings).encode() + b"\n")
        return self.protocol.ready

    def stop(self) -> None:
        self.stopping = True
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.closeStdin()

    def kill(self) -> None:
        """End a stuck worker now; `ended` fails what it held and starts a new one."""
        if self.protocol is not None and self.protocol.transport is not None:
            with contextlib.suppress(ProcessExitedAlready):
                self.protocol.transport.signalProcess("KILL")

    def verify(self, supervisor: str, pin: str, stored_hash: str | None,
               kind: str = "pin") -> defer.Deferred[bool]:
        """`kind` "pin" checks a supervisor's PIN, "password" a person's password."""
        if self.protocol is None or self.protocol.transport is None:
            return defer.fail(HashWorkerGone("the PIN hash worker is not running"))
        request_id = next(self.ids)
        d: defer.Deferred[bool] = defer.Deferred()
        self.pending[request_id] = d
        line = json.dumps({"id": request_id, "s": supervisor, "p": pin, "h": stored_hash,
                           "k": kind})
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


def pool_size() -> int:
    """One worker per core this process may run on: argon2 keeps one core busy per verify."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(eq=False)
class _Request:
    lane: str
    supervisor: str
    pin: str
    stored_hash: str | None
    kind: str = "pin"
    result: defer.Deferred[bool] = field(default_factory=defer.Deferred)
    deadline: IDelayedCall | None = None


class HashPool:
    """Worker processes, one verification each at a time, fed round-robin per device."""

    log = Logger()

    def __init__(self, reactor: Any, pepper: bytes, cost: str, timeout: float,
                 size: int | None = None, argv: tuple[str, ...] = WORKER_ARGV) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.workers = [HashWorker(reactor, pepper, cost, argv) for _ in range(size or pool_size())]
        for worker in self.workers:
            worker.on_ready = self._dispatch
        self.lanes: OrderedDict[str, deque[_Request]] = OrderedDict()
        self.busy: dict[HashWorker, _Request] = {}

    def start(self) -> defer.Deferred[None]:
        """Fires once every worker is ready; a failed start is logged and retried by the worker."""
        def started(_results: object) -> None:
            return None

        return defer.DeferredList(
            [w.start().addErrback(self._not_started) for w in self.workers]).addCallback(started)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        queued = [request for lane in self.lanes.values() for request in lane]
        self.lanes.clear()
        for request in queued:
            self._fail(request, HashWorkerGone("the PIN hash workers are stopping"))

    def verify(self, lane: str, supervisor: str, pin: str,
               stored_hash: str | None, kind: str = "pin") -> defer.Deferred[bool]:
        """Queue a verification in `lane` (the calling device, or an HTTP client's address);
        fails with HashWorkerTimeout when it has not answered within the timeout, queueing
        included. `kind` "password" checks a person's password instead of a PIN."""
        request = _Request(lane, supervisor, pin, stored_hash, kind)
        request.deadline = self.reactor.callLater(self.timeout, self._expired, request)
        self.lanes.setdefault(lane, deque()).append(request)
        self._dispatch()
        return request.result

    def queued(self, lane: str) -> int:
        return len(self.lanes.get(lane, ()))

    def _dispatch(self) -> None:
        for worker in self.workers:
            if not self.lanes:
                return
            if worker in self.busy or not worker.ready:
                continue
            lane, waiting = next(iter(self.lanes.items()))
            request = waiting.popleft()
            if waiting:
                self.lanes.move_to_end(lane)  # its next one waits for every other device's
            else:
                del self.lanes[lane]
            self.busy[worker] = request
            worker.verify(request.supervisor, request.pin, request.stored_hash,
                          request.kind).addCallbacks(
                lambda ok, w=worker, r=request: self._answered(w, r, ok),
                lambda failure, w=worker, r=request: self._worker_failed(w, r, failure))

    def _answered(self, worker: HashWorker, request: _Request, ok: bool) -> None:
        self.busy.pop(worker, None)
        if not request.result.called:
            self._cancel_deadline(request)
            request.result.callback(ok)
        self._dispatch()

    def _worker_failed(self, worker: HashWorker, request: _Request, failure: Failure) -> None:
        self.busy.pop(worker, None)
        error = failure.value
        self._fail(request, error if isinstance(error, HashWorkerGone)
                   else HashWorkerGone(f"the PIN hash worker failed: {error}"))
        self._dispatch()

    def _expired(self, request: _Request) -> None:
        request.deadline = None
        waiting = self.lanes.get(request.lane)
        if waiting is not None and request in waiting:
            waiting.remove(request)
            if not waiting:
                del self.lanes[request.lane]
        else:
            for worker, held in self.busy.items():
                if held is request:
                    self.log.error("PIN hash worker did not answer within {timeout:g} s; "
                                   "restarting it", timeout=self.timeout)
                    worker.kill()  # busy until it has ended, then restarted
                    break
        self._fail(request, HashWorkerTimeout(
            f"the PIN check did not answer within {self.timeout:g} s"))

    def _fail(self, request: _Request, error: Exception) -> None:
        if not request.result.called:
            self._cancel_deadline(request)
            request.result.errback(error)

    @staticmethod
    def _cancel_deadline(request: _Request) -> None:
        if request.deadline is not None and request.deadline.active():
            request.deadline.cancel()
        request.deadline = None

    def _not_started(self, failure: Failure) -> None:
        # Stopped before it was ready (the server stopping as it starts): not a failure.
        if not failure.check(HashWorkerStopped):
            self.log.failure("PIN hash worker did not start; retrying with backoff", failure)


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
        check = hasher.verify_password if request.get("k") == "password" else hasher.verify
        ok = check(request["s"], request["p"], request["h"])
        out.write(json.dumps({"id": request["id"], "ok": ok}) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()
