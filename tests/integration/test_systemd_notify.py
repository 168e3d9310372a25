"""`fastagi-spy serve` under systemd's Type=notify: a real unix datagram socket as
NOTIFY_SOCKET around the real serve process on the sandbox's ports.

READY=1 comes only once both the FastAGI and the HTTP port accept connections; SIGTERM
sends STOPPING=1 before the process exits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from fastagi_spy.config import load
from fastagi_spy.sandbox import AsteriskSandbox
from tests.integration.site import site_config
from tests.integration.test_spy_lifetime import _stop_process


@pytest.fixture()
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"fastagi-spy-notify-{os.getpid()}-{tmp_path.name}"
    sock.bind("\0" + name)  # abstract: no path-length limit from a deep tmp_path
    sock.settimeout(60)  # a bound on a hang only: a missing datagram fails the test
    yield sock, "@" + name
    sock.close()


def _serve(config: Path, log: Path, notify: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": notify}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fastagi_spy.cli", "serve", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _port(endpoint: str) -> int:
    return int(endpoint.split(":")[1])


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest_twisted.ensureDeferred
async def test_ready_once_both_ports_listen_and_stopping_on_sigterm(
        sandbox: AsteriskSandbox, tmp_path: Path,
        notify_socket: tuple[socket.socket, str]) -> None:
    sock, name = notify_socket
    config = load(site_config(sandbox, tmp_path).source)
    log = tmp_path / "serve.log"
    assert not _accepts(_port(config.http_listen))  # nothing there before the server
    server = _serve(Path(config.source), log, name)
    try:
        try:
            first = await threads.deferToThread(sock.recv, 4096)
        except TimeoutError:
            raise AssertionError(f"no READY=1:\n{log.read_text(errors='replace')[-3000:]}"
                                 ) from None
        # Checked the moment READY=1 arrives: both ports already take connections.
        agi_up = _accepts(_port(config.agi_listen))
        http_up = _accepts(_port(config.http_listen))
        server.send_signal(signal.SIGTERM)
        try:
            second = await threads.deferToThread(sock.recv, 4096)
        except TimeoutError:
            raise AssertionError(f"no STOPPING=1 (exit {server.poll()}):\n"
                                 f"{log.read_text(errors='replace')[-3000:]}") from None
        code = await threads.deferToThread(server.wait, 60)
    finally:
        _stop_process(server)
    assert first == b"READY=1", log.read_text(errors="replace")[-2000:]
    assert agi_up and http_up
    assert second == b"STOPPING=1"
    assert code == 0, log.read_text(errors="replace")[-2000:]
