"""Choosing an agent by ear: the agents on offer are said one by one until one is picked.

For supervisors who do not know the number. After each agent's number (Asterisk's own digit
sounds) one key decides: ``#`` picks that agent, ``0`` goes on to the next, ``*`` goes back
to the target prompt. The list is the caller's to build (rights first); this module only
walks it, so picking an agent is the same as typing its number.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastagi_spy.supervise.line import AGILine

START_KEY = "0"  # typed as the target: choose by ear instead
PICK_KEY = "#"
NEXT_KEY = "0"
BACK_KEY = "*"
KEYS = PICK_KEY + NEXT_KEY + BACK_KEY
# After each number: long enough to reach for a key, short enough that silence is silence.
WAIT_MS = 4000
# A number said this many times without a key that means something: back to the prompt.
MAX_SAYINGS = 3

NO_AGENTS = "dir-nomatch"  # "No directory entries match your search."
END_OF_LIST = "dir-nomore"  # "There are no more correct matches."


async def pick_agent(line: AGILine, offered: Sequence[str]) -> str | None:
    """The agent number picked from ``offered`` (in that order), or None to go back.

    An empty list, or ``0`` after the last agent, is said as such; silence or another key
    says the same number again, up to :data:`MAX_SAYINGS` times. Nothing is ever picked
    without a ``#``.
    """
    if not offered:
        await line.stream_file(NO_AGENTS)
        return None
    for number in offered:
        key = await _key_after(line, number)
        if key == PICK_KEY:
            return number
        if key != NEXT_KEY:
            return None  # "*", or nothing meaningful typed
    await line.stream_file(END_OF_LIST)
    return None


async def _key_after(line: AGILine, number: str) -> str | None:
    """Say ``number`` until one of :data:`KEYS` is pressed (during or after it), or give up."""
    for _saying in range(MAX_SAYINGS):
        key = await line.say_digits(number, KEYS)
        if key is None:
            key = await line.wait_for_digit(WAIT_MS)
        if key is not None and key in KEYS:
            return key
    return None
