"""The Live Monitor page (``/``, ``/live``) and its event stream (``/api/stream``).

The page is a shell: the rows come from the stream, which starts with a snapshot of what
the signed-in person may see, so a first load and a reconnect show the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Protocol

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from fastagi_spy.domain import Directory, SupervisorEntry
from fastagi_spy.web.livestream import LiveHub, StreamClient

__all__ = ["LivePage", "Sessions", "StreamResource", "mount_live"]

STATUSES = ("Talking", "Ringing", "Idle", "Paused")
RETRY_MS = 2000  # how soon EventSource reconnects after the stream drops


class Sessions(Protocol):
    """What the page needs of web.session.WebSessions."""

    def require(self, request: Request, scope: str | None) -> SupervisorEntry | None: ...

    def csrf_token(self, request: Request) -> str: ...


Visibility = Callable[[SupervisorEntry], "frozenset[str] | set[str] | None"]
PageShell = Callable[[str, SupervisorEntry, str, list[str], str], bytes]


class _Flow:
    """TCP flow control for one stream: the hub stops queueing for a client that cannot
    keep up and sends it one fresh snapshot when it can."""

    def __init__(self, hub: LiveHub, client: StreamClient) -> None:
        self.hub, self.client = hub, client

    def pauseProducing(self) -> None:  # Twisted's IPushProducer
        self.hub.paused(self.client)

    def resumeProducing(self) -> None:
        self.hub.resumed(self.client)

    def stopProducing(self) -> None:
        self.hub.detach(self.client)


class StreamResource(Resource):
    """``GET /api/stream``: Server-Sent Events for the signed-in person."""

    isLeaf = True

    def __init__(self, hub: LiveHub, sessions: Sessions, visible: Visibility) -> None:
        Resource.__init__(self)
        self.hub = hub
        self.sessions = sessions
        self.visible = visible

    def render_GET(self, request: Request) -> bytes | int:
        person = self.sessions.require(request, None)
        if person is None:
            return b""  # require() has answered (302 to the login page, or 403)
        shown = self.visible(person)
        request.setHeader("content-type", "text/event-stream; charset=utf-8")
        request.setHeader("cache-control", "no-store")
        request.setHeader("x-accel-buffering", "no")  # a proxy in front must not buffer it
        request.write(b"retry: %d\n\n" % RETRY_MS)
        client = StreamClient(request.write, None if shown is None else frozenset(shown),
                              lambda: _abort(request))
        request.registerProducer(_Flow(self.hub, client), True)
        request.notifyFinish().addBoth(lambda _: self.hub.detach(client))
        self.hub.attach(client)
        return NOT_DONE_YET


def _abort(request: Request) -> None:
    # Abort, not a clean end: the stream is cut as a network failure would cut it.
    transport = request.channel.transport if request.channel is not None else None
    if transport is not None:
        getattr(transport, "abortConnection", transport.loseConnection)()


class LivePage(Resource):
    """``GET /`` and ``GET /live``: the table's shell; live.js fills it from the stream."""

    isLeaf = True

    def __init__(self, sessions: Sessions, visible: Visibility, directory: Directory,
                 page: PageShell, customer_url: str = "") -> None:
        Resource.__init__(self)
        self.sessions = sessions
        self.visible = visible
        self.directory = directory
        self.page = page
        self.customer_url = customer_url

    def render_GET(self, request: Request) -> bytes:
        person = self.sessions.require(request, None)
        if person is None:
            return b""
        shown = self.visible(person)
        teams = sorted({a.team for a in self.directory.agents
                        if shown is None or a.number in shown})
        request.setHeader("cache-control", "no-store")
        return self.page("Live", person, live_body(teams, self.customer_url),
                         ["/static/live.js", "/static/actions.js", "/static/queues.js"],
                         self.sessions.csrf_token(request))


def live_body(teams: list[str], customer_url: str) -> str:
    """The page's markup: counts, filters, the queue strip and the empty table."""
    team_options = "".join(f'<option value="{escape(t)}">{escape(t)}</option>' for t in teams)
    status_options = "".join(f'<option value="{s}">{s}</option>' for s in STATUSES)
    counts = "".join(
        f'<li class="count count-{s.lower()}"><span class="count-label">{s}</span> '
        f'<strong data-count="{s}">0</strong></li>' for s in STATUSES)
    head = "".join(f'<th scope="col">{h}</th>' for h in
                   ("Agent", "Status", "Customer", "Direction", "Time", "Controls"))
    return f"""
<section class="live">
  <div id="banners" aria-live="assertive"></div>
  <div id="queue-strip"></div>
  <ul id="counts" class="counts" aria-label="Agents by status">{counts}</ul>
  <form id="filters" class="filters" role="search">
    <label>Team <select id="filter-team"><option value="">All teams</option>{team_options}</select></label>
    <label>Status <select id="filter-status"><option value="">Any status</option>{status_options}</select></label>
    <label>Search <input id="filter-search" type="search" autocomplete="off"
      placeholder="Agent, extension or customer"></label>
  </form>
  <p id="stream-state" class="stream-state" role="status">Connecting&#8230;</p>
  <div class="table-wrap">
  <table id="live" data-customer-url="{escape(customer_url)}" data-stream="connecting"
    data-snapshots="0">
    <thead><tr>{head}</tr></thead>
    <tbody></tbody>
  </table>
  </div>
  <p id="live-empty" hidden>No agents match.</p>
</section>
"""


def mount_live(root: Resource, hub: LiveHub, sessions: Sessions, visible: Visibility,
               directory: Directory, page: PageShell, customer_url: str = "") -> None:
    """``/``, ``/live`` and ``/api/stream`` on ``root`` (which must already have ``api``)."""
    live = LivePage(sessions, visible, directory, page, customer_url)
    root.putChild(b"", live)
    root.putChild(b"live", live)
    api = root.children[b"api"]
    api.putChild(b"stream", StreamResource(hub, sessions, visible))
