"""No secret ever reaches a log line: the real `fastagi-spy serve` on the real Asterisk 22,
in text and in JSON, through a session that uses every secret it knows.

The run: a supervisor types a wrong PIN then the right one and listens; over HTTP a person
signs in with a wrong and the right password (form, Basic auth, and VICIdial's pass=). Then
the whole log is searched for each secret. In JSON every line is one object with the flat
fields, and the attempt's line carries its audit id.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import threads

from fastagi_spy.config import load
from fastagi_spy.sandbox import AsteriskSandbox
from fastagi_spy.store.audit import AuditLog
from tests.integration.driver import Driver, is_event
from tests.integration.site import API_USER, agent_call, answer, site_config, supervisor_dials
from tests.integration.test_spy_lifetime import (
    READY,
    _closed,
    _spy_on_record,
    _stop_process,
    _until_logged,
)

# Long and unlike anything else in a log, so a hit can only be the secret itself.
PIN, WRONG_PIN = "80417392", "61532907"
PASSWORD, WRONG_PASSWORD = "Zq7pw-only-in-tests", "Wr0ng-pw-only-in-tests"
AMI_SECRET = "change-me-fastagi-spy"  # the sandbox's account
PEPPER = "integration-test-pepper-0123456789"
# In the [store] url on the PostgreSQL run (the test server trusts 127.0.0.1, so it is
# accepted and ignored there): the URL must never be logged with it.
DB_PASSWORD = "Pg7-db-pw-only-in-tests"
SECRETS = (PIN, WRONG_PIN, PASSWORD, WRONG_PASSWORD, AMI_SECRET, PEPPER, DB_PASSWORD)

# Both log forms run on SQLite and on the real PostgreSQL.
pytestmark = pytest.mark.both_stores


async def _cli(config: Path, *args: str, stdin: str) -> None:
    done = await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "fastagi_spy.cli", args[0], "--config",
                         str(config), *args[1:]],
        input=stdin, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def _serve(config: Path, log: Path, form: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fastagi_spy.cli", "serve", "--config", str(config),
             "--log-format", form],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _http(url: str, *, data: bytes | None = None, basic: str | None = None) -> str:
    """The status code and the start of the body, as one string."""
    request = urllib.request.Request(url, data=data)
    if basic is not None:
        request.add_header("Authorization", f"Basic {base64.b64encode(basic.encode()).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return f"{response.status} {response.read(60).decode(errors='replace')}"
    except urllib.error.HTTPError as exc:
        return str(exc.code)


def _use_passwords(http_listen: str) -> list[str]:
    """Every way a password travels over HTTP, wrong then right; the status codes."""
    base = f"http://127.0.0.1:{int(http_listen.split(':')[1])}"
    codes = []
    for password in (WRONG_PASSWORD, PASSWORD):
        form = urllib.parse.urlencode({"user": API_USER, "password": password}).encode()
        codes.append(_http(f"{base}/login", data=form))
        codes.append(_http(f"{base}/api/live", basic=f"{API_USER}:{password}"))
        query = urllib.parse.urlencode({"source": "test", "user": API_USER, "pass": password,
                                        "function": "agent_status", "agent_user": "1001"})
        codes.append(_http(f"{base}/vicidial/non_agent_api.php?{query}"))
    return codes


@pytest.mark.parametrize("form", ["text", "json"])
@pytest_twisted.ensureDeferred
async def test_a_full_run_logs_no_secret(form: str, driver: Driver, sandbox: AsteriskSandbox,
                                         tmp_path: Path, store: str,
                                         site_audit: Callable[[Path], AuditLog]) -> None:
    if store:
        store = store.replace("postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@")
        assert DB_PASSWORD in store, store
    config = Path(site_config(sandbox, tmp_path, store=store).source)
    await _cli(config, "set-pin", "2001", stdin=f"{PIN}\n")
    await _cli(config, "set-password", API_USER, stdin=f"{PASSWORD}\n")
    audit = site_audit(config)
    log = tmp_path / "serve.log"
    server = _serve(config, log, form)
    try:
        await _until_logged(log, READY)
        await agent_call(driver, "1001")
        mark = driver.mark()
        sup = await supervisor_dials(driver, "2001", "*2221001")
        await answer(driver, sup, "agent-pass", WRONG_PIN, since=mark)
        again = driver.mark()
        await answer(driver, sup, "agent-pass", PIN, since=again)
        await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line), since=mark,
                              what="ChanSpyStart")
        record = await _spy_on_record(audit)
        codes = await threads.deferToThread(_use_passwords, load(config).http_listen)
        await driver.hangup(sup.line)
        await _closed(audit, record.id)
        await _until_logged(log, "Attempt ended")
        server.send_signal(signal.SIGTERM)
        assert await threads.deferToThread(server.wait, 60) == 0
    finally:
        _stop_process(server)
    # The session really used the secrets: the wrong ones refused, the right ones let in.
    wrong, right = codes[:3], codes[3:]
    assert wrong[:2] == ["401", "401"] and "Login incorrect" in wrong[2], codes
    assert [c[:3] for c in right] == ["200"] * 3 and "Login incorrect" not in right[2], codes
    text = log.read_text(errors="replace")
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in the {form} log"
    if form == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert all({"time", "level", "system", "event"} <= line.keys() for line in lines)
        ended = [line for line in lines if line["event"].startswith("Attempt ended")]
        assert {line.get("audit_id") for line in ended} >= {record.id}, ended
