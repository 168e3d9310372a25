"""``fastagi-spy demo``: the whole product end to end on a real Asterisk 22 sandbox.

Boots Asterisk with the bundle, starts our server against it, puts simulated agents on calls
with Local channels (two incoming calls, and a dialler's outgoing call into agent 1003's
ConfBridge room), then has supervisor 2001 dial *2221001 and type the PIN by SendDTMF, so
you can watch a real ChanSpy start, the live map, and the audit record it leaves.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastagi_spy.config import load
from fastagi_spy.sandbox import AsteriskSandbox, free_port

AGENTS = {"1001": ("Alice Agent", "sales"), "1002": ("Bob Agent", "sales"),
          "1003": ("Carol Agent", "support")}
SUPERVISOR, SUPERVISOR_PIN = "2001", "1234"
API_USER, API_PASSWORD = "9000", "demo-password"  # a person with a password (no PIN)


def demo_config(sandbox: AsteriskSandbox, workdir: Path, http_port: int) -> Path:
    agents = "".join(
        f'[[agents]]\nnumber = "{n}"\nname = "{name}"\nteam = "{team}"\n'
        f'devices = ["Local/{n}@fsp-agents"]\n\n' for n, (name, team) in AGENTS.items())
    text = f"""
[server]
agi_listen = "tcp:{sandbox.agi_port}:interface=127.0.0.1"
http_listen = "tcp:{http_port}:interface=127.0.0.1"
database = "demo.sqlite3"
pin_pepper = "demo-pepper-not-for-production"

[[asterisk]]
name = "sandbox"
server_ip = "127.0.0.1"
ami_port = {sandbox.ami_port}
ami_username = "fastagi-spy"
ami_secret = "change-me-fastagi-spy"

[map]
trunk_contexts = ["fsp-customers", "fsp-handsets"]
dialer_contexts = ["fsp-dialer"]
dialer_dial_prefixes = ["9"]

[security]
notice = ""

{agents}
[[supervisors]]
number = "{SUPERVISOR}"
name = "Sam Supervisor"
teams = ["sales", "support"]
modes = ["listen", "whisper", "barge"]
devices = ["Local/{SUPERVISOR}@fsp-phones"]

[customers]
"5551234" = "ACME Corp"
"5559876" = "Globex"
"5553000" = "Initech"

[[supervisors]]
number = "{API_USER}"
name = "Demo API client"
api = true
user_level = 8
"""
    path = workdir / "demo.toml"
    path.write_text(text)
    return path


def run_demo(seconds: float) -> int:
    from twisted.internet import defer, task
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    observer = FilteringLogObserver(textFileLogObserver(sys.stdout),
                                    [LogLevelFilterPredicate(LogLevel.info)])
    globalLogBeginner.beginLoggingTo([observer])
    workdir = Path(tempfile.mkdtemp(prefix="fastagi-spy-demo-"))
    # One instance directory per process: two demos (or a demo and a test) never share one.
    sandbox = AsteriskSandbox(name=f"fsp-demo-{os.getpid()}",
                              teams={n: f"team_{t}" for n, (_, t) in AGENTS.items()})
    print("Starting the Asterisk 22 sandbox (first run builds it: about a minute) ...")
    sandbox.start()
    http_port = free_port()
    config_path = demo_config(sandbox, workdir, http_port)
    try:
        task.react(lambda reactor: defer.ensureDeferred(
            _scenario(reactor, sandbox, config_path, http_port, seconds)))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sandbox.stop()
        if sandbox.install is not None:  # Asterisk's logs and recordings of this run
            shutil.rmtree(sandbox.host_path(sandbox.base), ignore_errors=True)
    return 0


async def _scenario(reactor: Any, sandbox: AsteriskSandbox, config_path: Path, http_port: int,
                    seconds: float) -> None:
    from twisted.internet import defer

    from fastagi_spy.service import make_service, pin_hasher

    config = load(config_path)
    from fastagi_spy.sandbox_driver import Driver, is_event
    from fastagi_spy.sandbox_driver import sleep as sleep_on
    from fastagi_spy.terminal import print_snapshot

    def sleep(seconds: float) -> defer.Deferred[None]:
        return sleep_on(reactor, seconds)

    service = make_service(config, reactor)
    service.stores.pins.set_hash(
        SUPERVISOR, pin_hasher(config).hash_pin(SUPERVISOR, SUPERVISOR_PIN), time.time())
    service.stores.passwords.set_hash(
        API_USER, pin_hasher(config).hash_password(API_USER, API_PASSWORD), time.time())
    service.startService()
    driver = Driver(sandbox, reactor)

    async def wind_down() -> None:
        await driver.hangup_all()
        await driver.close()
        await service.stopService()

    # Ctrl-C stops the reactor without finishing this coroutine: end the calls, then stop
    # the service (drain, close the audit database) the way `serve` does.
    stop_trigger = reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.ensureDeferred(wind_down()))
    await driver.connect()
    try:
        for agent, caller in (("1001", "ACME Corp <5551234>"), ("1002", "Globex <5559876>")):
            await driver.originate(f"Local/{agent}@fsp-customers/n", "fsp-handsets",
                                   "customer", caller_id=caller)
        # Agent 1003 works the VICIdial way: in ConfBridge room 9600001 (its session), where
        # the auto-dialler sends the customer it reached by dialling 9 + 5553000.
        await driver.originate("Local/1003@fsp-agents/n", "fsp-handsets", "customer",
                               variables={"FSP_CONF": "9600001"}, caller_id="Carol <1003>")
        await driver.originate("Local/95553000@fsp-dialer/n", "fsp-conf", "9600001",
                               caller_id="V1121135220000012345 <3125550000>")
        await sleep(2)
        _banner(config_path, http_port)
        print("Supervisor 2001 now dials *2221001 (listen to agent 1001) and types PIN 1234 ...")
        mark = driver.mark()
        await driver.originate(f"Local/{SUPERVISOR}@fsp-phones/n", "fsp-handsets", "supervisor",
                               variables={"FSP_DIAL": "*2221001"})
        pin_prompt = await driver.wait_for(
            lambda m: m.event == "AGIExecStart" and "agent-pass" in (m.get("Command") or ""),
            since=mark, what="the PIN prompt")
        handset = (pin_prompt.get("Channel") or "").replace(";2", ";1")
        await driver.type_digits(handset, "supervisor", SUPERVISOR_PIN + "#")
        start = await driver.wait_for(is_event("ChanSpyStart"), since=mark, what="ChanSpyStart")
        print(f"\n  ChanSpyStart: {start.get('SpyerChannel')} is listening to "
              f"{start.get('SpyeeChannel')}\n")
        await sleep(3)
        record = service.stores.audit.list(limit=1)[0]
        print(f"  Audit record #{record.id}: supervisor={record.supervisor} "
              f"agent={record.agent} modes={record.modes} channel={record.resolved_channel}\n")
        print("  The live map (what `fastagi-spy status` prints):")
        print_snapshot(service.live_map.snapshot(time.time()))
        if seconds:
            await sleep(seconds)
        else:
            print("Running; press Ctrl-C to stop.")
            await defer.Deferred()  # until Ctrl-C
    finally:
        reactor.removeSystemEventTrigger(stop_trigger)
        await wind_down()


def _banner(config_path: Path, http_port: int) -> None:
    print(f"""
fastagi-spy demo is up
  config:        {config_path}
  live map JSON: curl -u {API_USER}:{API_PASSWORD} http://127.0.0.1:{http_port}/api/live
  live table:    fastagi-spy status --config {config_path}
  audit log:     fastagi-spy audit --config {config_path}
""")
