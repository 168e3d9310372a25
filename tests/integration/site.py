"""A simulated call-centre site on the sandbox: our service, agents on calls, supervisors dialling."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fastagi_spy.config import Config, load
from fastagi_spy.sandbox import AsteriskSandbox, free_port
from fastagi_spy.service import SpyService, pin_hasher
from fastagi_spy.store.audit import AuditRecord
from fastagi_spy.wire.ami import AMIMessage
from tests.integration.driver import Driver, Predicate, is_event, sleep

AGENTS = {  # number: team ("support" agents are outside supervisor 2001's teams)
    "10": "sales", "100": "sales", "1001": "sales", "1002": "sales",
    "1003": "support", "1004": "sales",
}
PINS = {"2001": "1234", "2002": "5678", "2009": "4321"}
API_USER, API_PASSWORD = "9100", "tester-password"  # a person with a password, no PIN
TONE = {"customer": 440, "agent": 600, "supervisor": 1000}


def site_config(sandbox: AsteriskSandbox, workdir: Path, *, notice: str = "",
                notice_mode: str = "best_effort",
                lockout_failures: int = 4, ami_secret: str = "change-me-fastagi-spy",
                agi_peers: str = '["127.0.0.1"]', server: str = "", extra: str = "",
                map_rules: str = "", devices: dict[str, str] | None = None,
                agi_port: int | None = None, database: str = "site.sqlite3",
                store: str = "") -> Config:
    """``server``: settings added to [server]; ``extra``: tables added after [[asterisk]];
    ``map_rules``: settings added to [map]; ``devices``: an agent's own device instead of
    Local/<n>@fsp-agents (e.g. {"1001": "PJSIP/1001"}). For several instances of the
    service on one sandbox: ``agi_port`` (default the sandbox's FASTAGI_SPY_PORT),
    ``database`` (a path shared by all of them) and ``store`` (settings for a [store]
    table, e.g. 'url = "postgresql://..."')."""
    own = devices or {}
    agents = "".join(
        f'[[agents]]\nnumber = "{n}"\nname = "Agent {n}"\nteam = "{t}"\n'
        f'devices = ["{own.get(n, f"Local/{n}@fsp-agents")}"]\n\n' for n, t in AGENTS.items())
    store_table = f"\n[store]\n{store}\n" if store else ""
    path = workdir / "site.toml"
    path.write_text(f"""
never_spy = ["1004"]

[server]
agi_listen = "tcp:{agi_port or sandbox.agi_port}:interface=127.0.0.1"
http_listen = "tcp:{free_port()}:interface=127.0.0.1"
database = "{database}"
pin_pepper = "integration-test-pepper-0123456789"
drain_timeout = 2
{server}

[[asterisk]]
name = "sandbox"
ami_port = {sandbox.ami_port}
ami_username = "fastagi-spy"
ami_secret = "{ami_secret}"
ping_interval = 5
agi_peers = {agi_peers}
{extra}

[map]
trunk_contexts = ["fsp-customers", "fsp-handsets"]
dialer_contexts = ["fsp-dialer"]
dialer_dial_prefixes = ["9"]
{map_rules}

[security]
pin_cost = "cheap"
notice = "{notice}"
notice_mode = "{notice_mode}"
lockout_failures = {lockout_failures}
lockout_window = 600
lockout_duration = 600
{store_table}
{agents}
[[supervisors]]
number = "2001"
name = "All modes, sales"
teams = ["sales"]
modes = ["listen", "whisper", "barge"]
devices = ["Local/2001@fsp-phones"]

[[supervisors]]
number = "2002"
name = "Listen only, sales"
teams = ["sales"]
modes = ["listen"]
devices = ["Local/2002@fsp-phones"]

[[supervisors]]
number = "2009"
name = "Support, no desk phone"
teams = ["support"]
modes = ["listen", "whisper", "barge"]

[[supervisors]]
number = "{API_USER}"
name = "API client"
api = true
user_level = 8
""")
    return load(path)


def set_pins(service: SpyService) -> None:
    """The supervisors' PINs, and the API person's password (as set-pin and set-password)."""
    hasher = pin_hasher(service.config)
    for supervisor, pin in PINS.items():
        service.stores.pins.set_hash(supervisor, hasher.hash_pin(supervisor, pin), time.time())
    service.stores.passwords.set_hash(
        API_USER, hasher.hash_password(API_USER, API_PASSWORD), time.time())


async def wait_ready(service: SpyService) -> None:
    """Until the live map has been rebuilt from AMI at least once."""
    for _ in range(100):
        if all(sync.resyncs for sync in service.syncs.values()):
            return
        await sleep(0.1)
    raise AssertionError("the service's AMI never came up")


@dataclass
class AgentCall:
    agent: str
    customer_handset: str  # Local/<agent>@fsp-customers-XXXX;1
    agent_leg: str  # Local/<agent>@fsp-agents-XXXX;1: the spy target


async def agent_call(driver: Driver, agent: str, rec: str = "", caller: str = "5551234") -> AgentCall:
    variables = {"__FSP_TONE_customer": str(TONE["customer"]), "__FSP_TONE_agent": str(TONE["agent"])}
    if rec:
        variables["__REC"] = rec
    mark = driver.mark()
    await driver.originate(f"Local/{agent}@fsp-customers/n", "fsp-handsets", "customer",
                           variables=variables, caller_id=f"Customer <{caller}>")
    agent_leg = await driver.new_channel(f"Local/{agent}@fsp-agents-", ";1", since=mark)
    handset = await driver.new_channel(f"Local/{agent}@fsp-customers-", ";1", since=mark)
    await driver.wait_for(lambda m: m.event == "BridgeEnter" and m.get("Channel") == agent_leg,
                          since=mark, what="the agent's leg in the call")
    return AgentCall(agent, handset, agent_leg)


@dataclass
class Supervisor:
    phone: str
    handset: str  # ;1: plays the supervisor's tone, types digits
    line: str  # ;2: the channel that runs the feature code and our AGI


async def supervisor_dials(driver: Driver, phone: str, dial: str, rec: str = "",
                           raw_args: str | None = None) -> Supervisor:
    variables = {"FSP_DIAL": dial, "FSP_TONE_supervisor": str(TONE["supervisor"])}
    if rec:
        variables["REC"] = rec
    if raw_args is not None:
        variables["FSP_RAW_ARGS"] = raw_args
    mark = driver.mark()
    await driver.originate(f"Local/{phone}@fsp-phones/n", "fsp-handsets", "supervisor",
                           variables=variables)
    line = await driver.new_channel(f"Local/{phone}@fsp-phones-", ";2", since=mark)
    return Supervisor(phone, line[:-2] + ";1", line)


def is_prompt(sup: Supervisor, command: str, sound: str) -> Predicate:
    """An AGIExecStart on the supervisor's line for ``command`` with ``sound``."""
    def match(m: AMIMessage) -> bool:
        text = m.get("Command") or ""
        return (m.event == "AGIExecStart" and m.get("Channel") == sup.line
                and text.startswith(command) and f'"{sound}"' in text)
    return match


async def answer(driver: Driver, sup: Supervisor, sound: str, digits: str, since: int = 0) -> None:
    """Wait for the GET DATA prompt ``sound`` on the supervisor's line, then type digits + #."""
    await driver.wait_for(is_prompt(sup, "GET DATA", sound), since=since,
                          what=f"GET DATA {sound}")
    await driver.type_digits(sup.handset, "supervisor", digits + "#")


async def heard_prompt(driver: Driver, sup: Supervisor, sound: str, since: int = 0,
                       timeout: float = 15) -> AMIMessage:
    return await driver.wait_for(is_prompt(sup, "STREAM FILE", sound),
                                 since=since, timeout=timeout, what=f"prompt {sound}")


async def closed_records(site: SpyService, count: int, timeout: float = 10) -> list[AuditRecord]:
    """The newest ``count`` audit records, once every one of them is closed."""
    for _ in range(int(timeout * 10)):
        records = site.stores.audit.list(limit=count)
        if len(records) >= count and all(r.ended_at is not None for r in records):
            return records
        await sleep(0.1)
    raise AssertionError(f"audit records not closed: {site.stores.audit.list(limit=count)}")


async def hears_service_unavailable(driver: Driver) -> None:
    """Supervisor 2001 dials *2221001 and types the right PIN: 'all circuits busy', the call
    ends, and no spy starts."""
    mark = driver.mark()
    sup = await supervisor_dials(driver, "2001", "*2221001")
    await answer(driver, sup, "agent-pass", "1234", since=mark)
    await heard_prompt(driver, sup, "all-circuits-busy-now", since=mark)
    await driver.wait_for(is_event("Hangup", Channel=sup.line), since=mark)
    assert not driver.seen(is_event("ChanSpyStart"), since=mark)
