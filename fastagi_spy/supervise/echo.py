"""The ``echo-test`` FastAGI route: a self-test an admin (or a test) can dial.

It answers, reads a channel variable, runs ``EXEC Wait`` and reports what it saw through
``FSP_ECHO_RESULT``, so one call proves the whole FastAGI path both ways.
"""

from __future__ import annotations

from fastagi_spy.supervise.line import AGILine


async def echo_test(session: AGILine) -> None:
    await session.answer()
    seen = await session.get_variable("FSP_ECHO_IN")
    args = session.env.args
    # "slow" keeps the call inside one long command, to prove mid-command hangups are clean.
    await session.exec("Wait", "30" if args[:1] == ("slow",) else "1")
    await session.set_variable("FSP_ECHO_RESULT", f"ok|{seen}|{'|'.join(args)}")
