"""AMIClient.reconfigure (the settings page): the link drops and logs in again with the new
address and login at once; a wrong login shows as the link down; a stopped client stays
stopped."""

from __future__ import annotations

from twisted.internet.task import Clock

from fastagi_spy.net.ami import AMIClient, AMICredentials
from tests.unit.test_net_ami import FakeAMIEndpoint, run_for


def client(clock: Clock, endpoint: FakeAMIEndpoint, down: list[int]) -> AMIClient:
    return AMIClient("pbx", endpoint, AMICredentials("fsp", "s"), clock,  # type: ignore[arg-type]
                     max_backoff=30.0, on_down=lambda c: down.append(1))


def test_a_wrong_login_takes_the_link_down_and_the_right_one_brings_it_back_at_once() -> None:
    clock, down = Clock(), []
    good = FakeAMIEndpoint(clock, accept_login=True)
    bad = FakeAMIEndpoint(clock, accept_login=False)
    ami = client(clock, good, down)
    ami.start()
    run_for(clock, 2)
    assert ami.ready
    ami.reconfigure(bad, AMICredentials("fsp", "wrong"))  # type: ignore[arg-type]
    run_for(clock, 40)  # refused, retried with backoff (up to 30 s apart)
    assert not ami.ready and down == [1] and len(bad.servers) >= 2
    assert ami.credentials == AMICredentials("fsp", "wrong")
    ami.reconfigure(good, AMICredentials("fsp", "right"))  # type: ignore[arg-type]
    run_for(clock, 1)  # not after the backoff: now
    assert ami.ready and len(good.servers) == 2
    stopped = ami.stop()
    run_for(clock, 2)
    assert stopped.called and clock.getDelayedCalls() == []


def test_before_start_and_after_stop_it_only_keeps_the_values() -> None:
    clock, down = Clock(), []
    first = FakeAMIEndpoint(clock, accept_login=True)
    second = FakeAMIEndpoint(clock, accept_login=True)
    ami = client(clock, first, down)
    ami.reconfigure(second, AMICredentials("fsp", "t"))  # type: ignore[arg-type]
    ami.start()
    run_for(clock, 2)
    assert ami.ready and first.servers == [] and len(second.servers) == 1
    ami.stop()
    run_for(clock, 2)
    ami.reconfigure(first, AMICredentials("fsp", "u"))  # type: ignore[arg-type]
    run_for(clock, 10)
    assert not ami.ready and first.servers == []
