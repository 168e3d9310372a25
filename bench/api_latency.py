"""blind_monitor over HTTP to the Originate and to ChanSpyStart, on the real Asterisk 22.

Usage: python bench/api_latency.py [--runs 20]

Agent 1001 talks to a customer; each run sends VICIdial's documented blind_monitor request
(MONITOR) over loopback HTTP, and the sandbox's phone 350a (a Local channel whose handset
answers at once) is rung and spies. Measured from the moment the request is sent (this
process's clock) to Asterisk's own event timestamps (timestampevents=yes; one host, one
clock):

- originate: the phone's channel appears (Newchannel: Asterisk is acting on our Originate);
- originate_response: OriginateResponse (Asterisk reports the phone answered);
- chanspystart: ChanSpyStart from the answered phone on the agent's leg.

The last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import report  # noqa: E402

USER, PASSWORD = "6666", "bench-blind-monitor-pw"
PERSON = f"""
[[supervisors]]
number = "{USER}"
name = "Bench"
teams = ["sales"]
modes = ["listen", "whisper", "barge"]
api = true
user_level = 8

[[phones]]
login = "350a"
dial = "Local/2001@fsp-api-phones"
server = "sandbox"
"""
PHONE = "Local/2001@fsp-api-phones-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    from twisted.internet import defer, task, threads

    from fastagi_spy.sandbox import AsteriskSandbox
    from fastagi_spy.sandbox_driver import is_event, sleep
    from fastagi_spy.service import make_service, pin_hasher
    from tests.integration.driver import Driver
    from tests.integration.site import AGENTS, agent_call, set_pins, site_config, wait_ready

    box = AsteriskSandbox(name="fsp-bench-api",
                          teams={n: f"team_{t}" for n, t in AGENTS.items()})
    box.start()
    runs: dict[str, list[float]] = {"originate": [], "originate_response": [],
                                    "chanspystart": []}

    async def run(reactor: Any) -> None:
        service = make_service(site_config(box, Path(tempfile.mkdtemp()), extra=PERSON),
                               reactor)
        set_pins(service)
        hasher = pin_hasher(service.config)
        service.stores.passwords.set_hash(USER, hasher.hash_password(USER, PASSWORD),
                                          time.time())
        service.startService()
        await wait_ready(service)
        driver = Driver(box, reactor)  # the global reactor that task.react runs
        await driver.connect()
        port = int(service.config.http_listen.split(":")[1])
        try:
            call = await agent_call(driver, "1001")
            session = None
            while session is None:
                found = service.live_map.resolve("1001", "sandbox")
                session = found.session_id if found.ok else None
                await sleep(reactor, 0.1)
            url = (f"http://127.0.0.1:{port}/vicidial/non_agent_api.php?source=bench"
                   f"&user={USER}&pass={PASSWORD}&function=blind_monitor&phone_login=350a"
                   f"&session_id={session}&server_ip=127.0.0.1&stage=MONITOR")
            for _ in range(args.runs):
                mark = driver.mark()

                def request() -> tuple[float, str]:
                    sent = time.time()
                    with urllib.request.urlopen(url, timeout=10) as response:
                        return sent, response.read().decode()

                sent, text = await threads.deferToThread(request)
                assert text.startswith("SUCCESS"), text
                spy = await driver.wait_for(
                    lambda m: m.event == "ChanSpyStart"
                    and m.get("SpyeeChannel") == call.agent_leg
                    and (m.get("SpyerChannel") or "").startswith(PHONE), since=mark)
                spyer = spy.get("SpyerChannel") or ""
                new = next(m for m in driver.events[mark:] if m.event == "Newchannel"
                           and m.get("Channel") == spyer)
                answered = await driver.wait_for(
                    is_event("OriginateResponse", Channel=spyer), since=mark)
                for name, event in (("originate", new), ("originate_response", answered),
                                    ("chanspystart", spy)):
                    runs[name].append(float(event.get("Timestamp") or 0) - sent)
                await driver.hangup(spyer)
                await sleep(reactor, 0.3)
        finally:
            await driver.hangup_all()
            await driver.close()
            await service.stopService()

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit:
        pass
    finally:
        box.stop()
    figures: dict[str, object] = {"runs": len(runs["originate"])}
    for name, values in runs.items():
        ms = [x * 1000 for x in values]
        figures[f"blind_monitor_to_{name}_ms_p50"] = round(statistics.median(ms), 1)
        figures[f"blind_monitor_to_{name}_ms_max"] = round(max(ms), 1)
    report("HTTP blind_monitor -> Originate, OriginateResponse, ChanSpyStart on Asterisk 22",
           figures, ["goal: blind_monitor_to_originate_ms_p50 <= 20 ms",
                     "the site's pin_cost is 'cheap': a production password hash comes on top",
                     "originate = the phone's Newchannel; request sent at this process's clock,"
                     " events at Asterisk's"])


if __name__ == "__main__":
    main()
