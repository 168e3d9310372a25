"""How every bench script ends: a title, notes, the figures in a column, then one JSON line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping


def report(title: str, figures: Mapping[str, object], notes: Iterable[str] = ()) -> None:
    """Print ``title``, each note indented, each figure aligned, and last the figures as one
    JSON object (the line anyone compares across runs)."""
    print(title)
    for note in notes:
        print(f"  {note}")
    width = max((len(key) for key in figures), default=0)
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    print(json.dumps(figures))
