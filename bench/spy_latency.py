"""Time from the AGI connect to ChanSpyStart on the real Asterisk 22, PIN typing excluded.

Usage: python bench/spy_latency.py [--runs 20]

Supervisor 2001 dials *2221001 through the real bundle; the PIN is typed by SendDTMF. All
times are Asterisk's own event timestamps (timestampevents=yes), so one clock measures:

    latency = (ChanSpyStart - AGI start) - (end - start of the PIN's GET DATA)

The last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    from twisted.internet import defer, task

    from fastagi_spy.sandbox import AsteriskSandbox
    from fastagi_spy.sandbox_driver import Driver, is_event, sleep
    from fastagi_spy.service import make_service
    from tests.integration.site import (
        AGENTS,
        agent_call,
        answer,
        set_pins,
        site_config,
        supervisor_dials,
        wait_ready,
    )

    box = AsteriskSandbox(name="fsp-bench", teams={n: f"team_{t}" for n, t in AGENTS.items()})
    box.start()
    latencies: list[float] = []

    async def run(reactor: object) -> None:
        service = make_service(site_config(box, Path(tempfile.mkdtemp())), reactor)
        set_pins(service)
        service.startService()
        await wait_ready(service)
        driver = Driver(box, reactor)
        await driver.connect()
        try:
            await agent_call(driver, "1001")
            for _ in range(args.runs):
                mark = driver.mark()
                sup = await supervisor_dials(driver, "2001", "*2221001")
                await answer(driver, sup, "agent-pass", "1234", since=mark)
                start = await driver.wait_for(is_event("ChanSpyStart", SpyerChannel=sup.line),
                                              since=mark)
                on_line = [m for m in driver.events[mark:] if m.get("Channel") == sup.line]
                agi = next(m for m in on_line if m.event == "Newexten" and m.get("Application") == "AGI")
                pin_start = next(m for m in on_line if m.event == "AGIExecStart"
                                 and '"agent-pass"' in (m.get("Command") or ""))
                pin_end = next(m for m in on_line if m.event == "AGIExecEnd"
                               and '"agent-pass"' in (m.get("Command") or ""))

                def ts(m: object) -> float:
                    return float(m.get("Timestamp"))  # type: ignore[attr-defined]

                latencies.append((ts(start) - ts(agi)) - (ts(pin_end) - ts(pin_start)))
                await driver.hangup(sup.line)
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
    ms = [x * 1000 for x in latencies]
    figures = {
        "runs": len(ms),
        "agi_connect_to_chanspystart_median_ms": round(statistics.median(ms), 1),
        "agi_connect_to_chanspystart_max_ms": round(max(ms), 1),
        "agi_connect_to_chanspystart_min_ms": round(min(ms), 1),
    }
    report("AGI connect -> ChanSpyStart on Asterisk 22 (PIN typing excluded), Asterisk timestamps",
           figures)


if __name__ == "__main__":
    main()
