"""Plain-text tables for the operator's terminal: the live map and audit listings."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

__all__ = ["print_snapshot", "print_table", "printable"]


def print_snapshot(snapshot: dict[str, Any]) -> None:
    """The live map as a table; every cell made printable (names come from callers)."""
    columns = ("server", "agent", "name", "status", "session", "customer", "direction",
               "talk", "channel")
    rows = []
    for server, state in sorted(snapshot.get("servers", {}).items()):
        label = server + (" (STALE)" if state.get("stale") else "")
        for agent in state.get("agents", []):
            call = agent.get("call") or {}
            number, name = call.get("customer_number") or "", call.get("customer_name") or ""
            customer = f"{name} ({number})" if name and number else name or number
            elapsed = call.get("elapsed_s")
            rows.append([label, agent.get("number", ""), agent.get("name", ""),
                         agent.get("status", ""), agent.get("session_id") or "", customer,
                         call.get("direction", ""),
                         f"{int(elapsed) // 60}:{int(elapsed) % 60:02d}" if elapsed is not None else "",
                         agent.get("channel") or ""])
    print_table(columns, [[printable(cell) for cell in row] for row in rows])


def printable(value: object) -> str:
    """``value`` as text with every control or format character (ESC of an ANSI sequence,
    CR, BEL, bidi overrides...) shown as "?": a caller name set by whoever places a call
    must not move the admin's cursor, rewrite the screen or hide a row."""
    return "".join("?" if unicodedata.category(c)[0] == "C" else c for c in str(value))


def print_table(columns: Sequence[str], rows: list[list[str]]) -> None:
    """Left-aligned columns, two spaces apart; "(none)" for no rows."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not rows:
        print("(none)")
