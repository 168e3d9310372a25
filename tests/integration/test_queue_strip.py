"""The queue strip's data on the real Asterisk 22: a caller waits in fsp-sales, which has no
member to answer, then hangs up; /api/live's queues follow (and survive an AMI cut)."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from fastagi_spy.service import SpyService
from tests.integration.driver import Driver, is_event
from tests.integration.test_live_map import get_live, until

QUEUE = "fsp-sales"


def sales_of(snap: Any) -> dict[str, Any] | None:
    found = [q for q in snap["servers"]["sandbox"]["queues"] if q["queue"] == QUEUE]
    return found[0] if found else None


@pytest_twisted.ensureDeferred
async def test_a_caller_waits_unanswered_then_abandons(driver: Driver, site: SpyService) -> None:
    """1 waiting with a growing wait; after the hangup 0 waiting and one more abandoned."""
    code, snap = await get_live(site)
    assert code == 200
    before = sales_of(snap)
    # QueueStatus's QueueParams made the queue known at login, with nobody in it to answer.
    assert before is not None, snap["servers"]["sandbox"]["queues"]
    assert (before["waiting"], before["available"], before["on_calls"]) == (0, 0, 0)

    mark = driver.mark()
    await driver.originate("Local/q@fsp-customers/n", "fsp-handsets", "customer",
                           caller_id="Initech <5557000>")
    await driver.wait_for(is_event("QueueCallerJoin", Queue=QUEUE), since=mark,
                          what="the caller joining fsp-sales")
    handset = await driver.new_channel("Local/q@fsp-customers-", ";1", since=mark)

    async def current() -> dict[str, Any]:
        _, now = await get_live(site)
        found = sales_of(now)
        assert found is not None
        return found

    async def one_waiting() -> bool:
        return (await current())["waiting"] == 1

    await until(one_waiting)
    first = await current()
    since = first["longest_since"]
    assert since is not None and first["longest_wait_s"] >= 0

    async def grown() -> bool:
        later = await current()
        return bool(later["longest_since"] == since
                    and later["longest_wait_s"] > first["longest_wait_s"] + 1)

    await until(grown, timeout=10)

    # An AMI cut: the resync rebuilds the caller from QueueStatus's QueueEntry (Wait in
    # whole seconds), so the wait keeps its start, within the second it was rounded to.
    client = site.clients["sandbox"]
    resyncs = site.syncs["sandbox"].resyncs
    assert client.protocol is not None
    client.protocol.transport.abortConnection()  # type: ignore[union-attr]

    async def resynced() -> bool:
        return bool(site.syncs["sandbox"].resyncs > resyncs)

    await until(resynced, timeout=15)
    rebuilt = await current()
    assert rebuilt["waiting"] == 1
    assert abs(rebuilt["longest_since"] - since) <= 1.5, (rebuilt, since)

    mark = driver.mark()
    await driver.hangup(handset)
    await driver.wait_for(is_event("QueueCallerAbandon", Queue=QUEUE), since=mark,
                          what="the caller abandoning fsp-sales")

    async def abandoned() -> bool:
        now = await current()
        return bool(now["waiting"] == 0 and now["abandoned"] == before["abandoned"] + 1)

    await until(abandoned)
    final = await current()
    assert (final["answered"], final["longest_since"]) == (before["answered"], None)
