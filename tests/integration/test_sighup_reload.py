"""SIGHUP on the real `fastagi-spy serve` while a supervisor listens, on the real Asterisk 22:
the file's new people and rights are in force, the spy in progress goes on.

Supervisor 2001 listens to agent 1001. The file then takes sales away from 2002 and adds a
person 9200 with a password. After SIGHUP (told to systemd as RELOADING=1, then READY=1): no
ChanSpyStop for 2001, 2002's new attempt on 1001 is refused, and 9200 can sign in.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from fastagi_spy.config import load
from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.store.audit import AuditLog, AuditRecord
from tests.integration.driver import Driver, is_event, sleep
from tests.integration.site import answer, site_config, supervisor_dials
from tests.integration.test_spy_lifetime import (
    READY,
    _chanspy_channels,
    _set_pin,
    _spying,
    _stop_process,
    _until_logged,
)

# Every test that takes `site` (or `store`) runs on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores

NEW_PERSON, NEW_PASSWORD = "9200", "new-person-password"


@pytest.fixture()
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"fastagi-spy-reload-{os.getpid()}-{tmp_path.name}"
    sock.bind("\0" + name)
    sock.settimeout(60)  # a bound on a hang only: a missing datagram fails the test
    yield sock, "@" + name
    sock.close()


def _serve(config: Path, log: Path, notify: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NOTIFY_SOCKET": notify}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fastagi_spy.cli", "serve", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


async def _cli(config: Path, *args: str, stdin: str) -> None:
    done = await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "fastagi_spy.cli", args[0], "--config",
                         str(config), *args[1:]],
        input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _sign_in(http_listen: str) -> int:
    """GET /api/live as the new person: the HTTP status."""
    token = base64.b64encode(f"{NEW_PERSON}:{NEW_PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:{http_listen.split(':')[1]}/api/live",
                                     headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _new_rights(text: str) -> str:
    """2002 loses sales (keeps support); 9200 is a new person with API access."""
    listen_only = 'name = "Listen only, sales"\nteams = ["sales"]'
    assert text.count(listen_only) == 1
    return text.replace(listen_only, 'name = "Listen only, sales"\nteams = ["support"]') + (
        f'\n[[supervisors]]\nnumber = "{NEW_PERSON}"\nname = "New"\napi = true\n'
        f'user_level = 8\n')


async def _closed_for(audit: AuditLog, supervisor: str) -> AuditRecord:
    for _ in range(300):
        for record in audit.list(limit=10):
            if record.supervisor == supervisor and record.ended_at is not None:
                return record
        await sleep(0.1)
    raise AssertionError(f"no closed record for {supervisor}: {audit.list(limit=10)}")


@pytest_twisted.ensureDeferred
async def test_sighup_swaps_people_and_rights_without_dropping_the_spy(
        driver: Driver, sandbox: AsteriskSandbox, tmp_path: Path,
        notify_socket: tuple[socket.socket, str], store: str,
        site_audit: Callable[[Path], AuditLog]) -> None:
    sock, name = notify_socket
    config = Path(site_config(sandbox, tmp_path, store=store).source)
    await _set_pin(config)  # 2001: 1234
    await _cli(config, "set-pin", "2002", stdin="5678\n")
    http_listen = load(config).http_listen
    audit = site_audit(config)
    log = tmp_path / "serve.log"
    server = _serve(config, log, name)
    try:
        assert await threads.deferToThread(sock.recv, 4096) == b"READY=1"
        await _until_logged(log, READY)
        sup, _start = await _spying(driver, log)
        config.write_text(_new_rights(config.read_text()))
        await _cli(config, "set-password", NEW_PERSON, stdin=f"{NEW_PASSWORD}\n")
        before = await threads.deferToThread(_sign_in, http_listen)
        mark = driver.mark()
        server.send_signal(signal.SIGHUP)
        reloading = await threads.deferToThread(sock.recv, 4096)
        ready = await threads.deferToThread(sock.recv, 4096)
        await _until_logged(log, "Reloaded people and rights")
        after = await threads.deferToThread(_sign_in, http_listen)
        # 2002 could listen to sales before; now the new rights refuse it.
        other = await supervisor_dials(driver, "2002", "*2221001")
        await answer(driver, other, "agent-pass", "5678", since=mark)
        refused = await _closed_for(audit, "2002")
        still = await _chanspy_channels(driver)
        stopped = driver.seen(is_event("ChanSpyStop", SpyerChannel=sup.line), since=mark)
        server.send_signal(signal.SIGTERM)
        await threads.deferToThread(server.wait, 60)
    finally:
        _stop_process(server)
    assert reloading.startswith(b"RELOADING=1\nMONOTONIC_USEC="), reloading
    assert ready == b"READY=1"
    assert (before, after) == (401, 200)
    assert refused.end_reason == "denied", refused
    assert not driver.seen(is_event("ChanSpyStart", SpyerChannel=other.line), since=mark)
    # The spy that was running when the file changed went on through the reload.
    assert sup.line in still
    assert not stopped, stopped
    text = log.read_text(errors="replace")
    assert "needs a restart" not in text  # only people and rights changed
