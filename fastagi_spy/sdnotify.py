"""systemd's readiness protocol (sd_notify): a datagram to ``$NOTIFY_SOCKET``.

A unit with ``Type=notify`` is "started" only when we say ``READY=1``, so ``systemctl start``
and units ordered after ours wait until the FastAGI and HTTP ports are really bound. Without
``$NOTIFY_SOCKET`` (not under systemd) every call is a no-op. A few lines of socket code
instead of a dependency: the protocol is one datagram of ``KEY=value`` lines.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from twisted.logger import Logger

log = Logger()

READY = "READY=1"
STOPPING = "STOPPING=1"


def reloading() -> str:
    """``RELOADING=1`` with the monotonic time systemd asks to go with it (systemd 253+)."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return f"RELOADING=1\nMONOTONIC_USEC={usec}"


def address(value: str) -> str | None:
    """The socket address in ``$NOTIFY_SOCKET``: a path, or '@name' for Linux's abstract
    namespace (a leading NUL on the wire); None for anything else (vsock is not supported)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` to systemd; True when it was sent. A failure is logged, never raised:
    the service keeps running (systemd then times the start out, which an operator sees)."""
    value = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not value:
        return False
    where = address(value)
    if where is None:
        log.warn("NOTIFY_SOCKET {value!r} is not a unix socket path or @name: systemd not "
                 "notified", value=value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(where)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warn("systemd not notified of {state!r}: {error}", state=state, error=exc)
        return False
    return True
