"""The frame every web page shares: head, header with the navigation, and the main area.

`page()` escapes every text it is given (title, the person's name, the CSRF token, script
URLs); only ``body_html``, which the calling page builds with html.escape, goes in as is.
A nav entry is shown only to someone holding its scope; the server refuses the page itself
to anyone else (session.py), so hiding is for tidiness, never the protection.
"""

from __future__ import annotations

from html import escape

from fastagi_spy.domain import SupervisorEntry
from fastagi_spy.web.scopes import may

PRODUCT = "fastagi-spy"
# (label, href, scope needed or None)
NAV: tuple[tuple[str, str, str | None], ...] = (
    ("Live", "/live", None),
    ("Settings", "/settings", "configure"),
    ("Audit", "/audit", None),
)


def nav_html(title: str, person: SupervisorEntry, csrf: str) -> str:
    current = ' aria-current="page"'
    links = "".join(
        f'<li><a href="{href}"{current if label == title else ""}>{escape(label)}</a></li>'
        for label, href, scope in NAV if scope is None or may(person, scope))
    return (
        f'<nav class="nav" aria-label="Main"><ul>{links}</ul></nav>'
        f'<div class="who"><span class="who-name">{escape(person.name)}</span>'
        f'<form method="post" action="/logout" class="signout">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<button type="submit" class="button quiet">Sign out</button></form></div>')


def page(title: str, person: SupervisorEntry | None, body_html: str, scripts: list[str],
         csrf: str) -> bytes:
    """A whole HTML document; ``person`` None is the signed-out frame (no navigation)."""
    tags = "".join(f'<script src="{escape(src)}" defer></script>' for src in scripts)
    header_nav = "" if person is None else nav_html(title, person, csrf)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f'<meta name="csrf-token" content="{escape(csrf)}">'
        f"<title>{escape(title)} · {PRODUCT}</title>"
        '<link rel="stylesheet" href="/static/app.css">'
        f"{tags}</head><body>"
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header class="top"><a class="brand" href="/live">{PRODUCT}</a>{header_nav}</header>'
        f'<main id="main" tabindex="-1"><h1>{escape(title)}</h1>{body_html}</main>'
        "</body></html>\n"
    ).encode()
