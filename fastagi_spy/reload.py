"""SIGHUP: re-read the config file and put the new people and rights in force, live.

The directory (people, agents, teams, rights, never-spy, customers) is one object shared by
every part that asks who someone is: the supervision flow, the launcher, the password
checker, web sessions, the Live page, the live map. Swapping its contents in place reaches
them all at once, on the reactor thread between two events, so no call ever sees half of
the old directory and half of the new. A call or spy in progress keeps running: rights are
checked when an attempt starts, never taken back from one that has started.

Everything else in the file (ports, AMI servers, the database, the pepper, security rules)
is wired into objects at start-up: a change there is logged as needing a restart, by key
name only (values may be secrets), and the running values stay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from twisted.logger import Logger

from fastagi_spy.config import Config, ConfigError, load
from fastagi_spy.domain import Directory

log = Logger()

LIVE = "directory"  # the one part of Config that changes without a restart
NOT_COMPARED = {LIVE, "source"}


def swap_directory(live: Directory, new: Directory) -> None:
    """Give ``live`` (the object everyone holds) the contents of ``new``.

    Directory is frozen so that no caller changes it by accident; this is the one place that
    does, on purpose, with a directory that was fully validated and indexed on construction.
    """
    for part in dataclasses.fields(Directory):
        object.__setattr__(live, part.name, getattr(new, part.name))


def needs_restart(running: Config, new: Config) -> list[str]:
    """The config keys whose new value is not in force until a restart."""
    return [part.name for part in dataclasses.fields(Config)
            if part.name not in NOT_COMPARED
            and getattr(running, part.name) != getattr(new, part.name)]


class Reloader:
    """Re-reads ``config.source`` on demand; keeps the running config on any error."""

    def __init__(self, config: Config, read: Callable[[str], Config] = load) -> None:
        self.config = config  # the last file version put in force
        self._read = read

    def reload(self) -> bool:
        """True when the new directory is in force."""
        try:
            new = self._read(self.config.source)
        except ConfigError as exc:  # names the file and the key
            log.error("Reload refused, the running people and rights stay: {error}",
                      error=exc)
            return False
        for key in needs_restart(self.config, new):
            log.warn("Reload: {key} changed in {source}: needs a restart (the running value "
                     "stays)", key=key, source=self.config.source)
        swap_directory(self.config.directory, new.directory)
        d = self.config.directory
        log.info("Reloaded people and rights from {source}: {agents} agents, {people} people, "
                 "{never} never-spy", source=self.config.source, agents=len(d.agents),
                 people=len(d.supervisors), never=len(d.never_spy))
        return True
