"""notice_mode = "required": the notice is played to the end before ChanSpy, or there is no
spy (a prompt, the row closed notice_failed). Driven on task.Clock with scripted AMI events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from twisted.internet import task
from twisted.internet.defer import ensureDeferred

from fastagi_spy.config import ConfigError, load
from fastagi_spy.supervise.flow import Prompts
from fastagi_spy.supervise.notice import Event, NoticeFailed, RequiredNotice
from tests.unit.model_events import Ev
from tests.unit.test_config import MINIMAL, write
from tests.unit.test_supervise_flow import (
    PIN_ASK,
    SPYER,
    TARGET_ASK,
    FakeResolver,
    Site,
    SpyLine,
    finished,
    heard,
    start,
    talking,
)

AGENT_LEG = "PJSIP/1001-0000000a"


def ami(name: str, **headers: str) -> Ev:
    return Ev([("Event", name), *headers.items()])


class FakeAMI:
    """Records actions; the test plays Asterisk's events to whoever listens."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.actions: list[tuple[str, str, dict[str, str]]] = []
        self.listeners: list[Callable[[Sequence[Event]], None]] = []
        self.refuse = refuse

    async def action(self, server: str, name: str, headers: list[tuple[str, str]]) -> object:
        if self.refuse is not None:
            raise self.refuse
        self.actions.append((server, name, dict(headers)))
        return None

    def listen(self, server: str, listener: Callable[[Sequence[Event]], None]
               ) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def says(self, *events: Ev) -> None:
        for listener in list(self.listeners):
            listener(events)

    def ids(self) -> tuple[str, str]:
        (_, _, headers), *_ = self.actions
        return headers["ChannelId"], headers["OtherChannelId"]

    def plays(self, status: str = "SUCCESS", spyee: str = AGENT_LEG) -> None:
        """What Asterisk reports for a notice that ran: attach, playback, stop."""
        spyer, player = self.ids()
        self.says(ami("ChanSpyStart", SpyerUniqueid=spyer, SpyeeChannel=spyee),
                  ami("VarSet", Uniqueid=player, Variable="PLAYBACKSTATUS", Value=status),
                  ami("ChanSpyStop", SpyerUniqueid=spyer))


def notice_for(fake: FakeAMI, clock: task.Clock) -> RequiredNotice:
    return RequiredNotice("custom/monitored", fake.action, fake.listen, clock)


def test_the_notice_is_barged_into_the_agents_exact_channel_and_waits_for_its_end() -> None:
    fake, clock = FakeAMI(), task.Clock()
    done = ensureDeferred(notice_for(fake, clock).play("pbx", AGENT_LEG))
    (server, name, headers), = fake.actions
    assert (server, name, headers["Channel"], headers["Data"], headers["Variable"]) == (
        "pbx", "Originate", "Local/notice@fastagi-spy-notice/n", f"{AGENT_LEG},quBES",
        "FASTAGI_SPY_NOTICE=custom/monitored")
    spyer, player = fake.ids()
    fake.says(ami("ChanSpyStart", SpyerUniqueid=spyer, SpyeeChannel=AGENT_LEG),
              ami("VarSet", Uniqueid=player, Variable="PLAYBACKSTATUS", Value="SUCCESS"))
    assert not done.called  # played, but its ChanSpy is still in the call
    fake.says(ami("ChanSpyStop", SpyerUniqueid=spyer))
    finished(done)
    assert fake.listeners == []


@pytest.mark.parametrize(("status", "spyee", "why"), [
    ("FAILED", AGENT_LEG, "playback FAILED"),  # the sound is missing
    ("SUCCESS", "PJSIP/1002-0000000b", "never reached the call"),  # another channel
])
def test_a_notice_asterisk_did_not_play_to_the_call_fails(status: str, spyee: str,
                                                          why: str) -> None:
    fake, clock = FakeAMI(), task.Clock()
    done = ensureDeferred(notice_for(fake, clock).play("pbx", AGENT_LEG))
    fake.plays(status, spyee)
    failures: list[object] = []
    done.addErrback(lambda f: failures.append(f.value))
    (failure,) = failures
    assert isinstance(failure, NoticeFailed) and why in str(failure)


def test_a_hangup_before_any_chanspy_fails_and_silence_times_out() -> None:
    fake, clock = FakeAMI(), task.Clock()
    done = ensureDeferred(notice_for(fake, clock).play("pbx", AGENT_LEG))
    fake.says(ami("Hangup", Uniqueid=fake.ids()[0]))
    with pytest.raises(NoticeFailed, match="never reached"):
        done.result.raiseException()
    done.addErrback(lambda _: None)
    quiet = ensureDeferred(notice_for(fake, clock).play("pbx", AGENT_LEG))
    clock.advance(30)
    with pytest.raises(NoticeFailed, match="not played within 30 s"):
        quiet.result.raiseException()
    quiet.addErrback(lambda _: None)
    assert fake.listeners == []


def test_ami_refusing_the_originate_fails() -> None:
    fake = FakeAMI(refuse=RuntimeError("AMI to pbx is down"))
    done = ensureDeferred(notice_for(fake, task.Clock()).play("pbx", AGENT_LEG))
    with pytest.raises(NoticeFailed, match="originate: AMI to pbx is down"):
        done.result.raiseException()
    done.addErrback(lambda _: None)


# --- in the flow ------------------------------------------------------------------------------


def required_site(tmp_path: Path, fake: FakeAMI) -> Site:
    site = Site(tmp_path, FakeResolver({"1001": talking("1001")}))
    site.flow.deps.required_notice = notice_for(fake, site.clock).play
    return site


def test_chanspy_starts_only_after_the_notice_has_played(tmp_path: Path) -> None:
    fake = FakeAMI()
    site = required_site(tmp_path, fake)
    line = SpyLine([(PIN_ASK, PIN), (TARGET_ASK, "1001")])
    done = start(site, line)
    assert not any(c.startswith("EXEC ChanSpy") for c in line.sent)  # the notice first
    fake.plays()
    assert any(c.startswith("EXEC ChanSpy PJSIP/1001-0000000a") for c in line.sent)
    site.spies.feed(ami("ChanSpyStart", SpyerUniqueid=SPYER))
    site.spies.feed(ami("ChanSpyStop", SpyerUniqueid=SPYER))
    line.chanspy_returns()
    finished(done)
    events = site.audit.events(site.records()[0].id)
    assert [(e.kind, e.detail) for e in events] == [("pin", "2001 ok"), ("notice", "played")]


def test_a_notice_that_cannot_be_played_means_no_spy_a_prompt_and_notice_failed(
        tmp_path: Path) -> None:
    fake = FakeAMI()
    site = required_site(tmp_path, fake)
    line = SpyLine([(PIN_ASK, PIN), (TARGET_ASK, "1001")])
    done = start(site, line)
    fake.plays("FAILED")
    finished(done)
    assert not any(c.startswith("EXEC") for c in line.sent)
    assert heard(line) == [Prompts.UNAVAILABLE, Prompts.GOODBYE]
    (record,) = site.records()
    assert (record.end_reason, record.detail, record.agent, record.spy_started_at) == (
        "notice_failed", "playback FAILED", "1001", None)


# --- the config key ---------------------------------------------------------------------------

PIN = "1234"


@pytest.mark.parametrize(("security", "message"), [
    ('notice = "beep"\nnotice_mode = "sometimes"', "security.notice_mode: 'required' or"),
    ('notice_mode = "required"', "security.notice_mode: 'required' needs a sound"),
])
def test_notice_mode_errors_name_the_key(tmp_path: Path, security: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, f"{MINIMAL}\n[security]\n{security}\n"))


def test_notice_mode_defaults_to_best_effort_and_takes_required(tmp_path: Path) -> None:
    assert load(write(tmp_path, MINIMAL)).security.notice_mode == "best_effort"
    text = f'{MINIMAL}\n[security]\nnotice = "beep"\nnotice_mode = "required"\n'
    assert load(write(tmp_path, text)).security.notice_mode == "required"




def test_a_supervisor_gone_during_the_notice_gets_no_spy(tmp_path: Path) -> None:
    fake = FakeAMI()
    site = required_site(tmp_path, fake)
    line = SpyLine([(PIN_ASK, PIN), (TARGET_ASK, "1001")])
    done = start(site, line)
    line.hung_up = True
    fake.plays()
    finished(done)
    assert not any(c.startswith("EXEC") for c in line.sent)
    (record,) = site.records()
    assert (record.end_reason, record.detail) == ("abandoned", "hung up at notice")
