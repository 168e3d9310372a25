"""Pure live state of the call centre: channels, bridges, calls, agents, sessions.

``apply(event, now)`` returns changes. No Twisted, no I/O, no clock: a test enforces it.
"""
