"""The sandbox driver bound to the global reactor that pytest-twisted runs, plus test-only
helpers. The package's fastagi_spy.sandbox_driver takes its reactor as an argument (the demo
imports it from an installed wheel); only the tests import the global reactor here."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, reactor

from fastagi_spy import sandbox_driver
from fastagi_spy.sandbox_driver import Predicate, is_event

__all__ = ["Driver", "Predicate", "is_event", "sleep", "tag"]

_tags = itertools.count(1)


@dataclass
class Driver(sandbox_driver.Driver):
    """``Driver(sandbox)``: the package's driver on the global reactor."""

    reactor: Any = field(default=reactor)


def sleep(seconds: float) -> defer.Deferred[None]:
    return sandbox_driver.sleep(reactor, seconds)


def tag(prefix: str = "t") -> str:
    """A unique marker for one test's channels and recordings."""
    return f"{prefix}{next(_tags)}"
