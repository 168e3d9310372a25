"""Pure live state of the call centre: channels, bridges, calls, agents, sessions.

``apply(event, now)`` returns changes. No Twisted, no I/O, no clock: a test enforces it.
"""

from fastagi_spy.model.changes import Change
from fastagi_spy.model.config import ModelConfig
from fastagi_spy.model.events import EventLike
from fastagi_spy.model.livemap import LiveMap
from fastagi_spy.model.resolve import Resolution
from fastagi_spy.model.state import ServerState

__all__ = ["Change", "EventLike", "LiveMap", "ModelConfig", "Resolution", "ServerState"]
