"""Layering rules: the wire and model layers never pull in Twisted."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter so modules imported by other tests (Twisted above
# all) cannot hide a violation.  Every model submodule is imported dynamically:
# the package is still growing and each new file must obey the rule at once.
CHECK = textwrap.dedent(
    """
    import importlib
    import pkgutil
    import sys

    import fastagi_spy.wire.agi, fastagi_spy.wire.ami, fastagi_spy.wire.lines
    import fastagi_spy.wire.errors
    import fastagi_spy.model

    for info in pkgutil.walk_packages(fastagi_spy.model.__path__, "fastagi_spy.model."):
        importlib.import_module(info.name)

    leaked = sorted(m for m in sys.modules if m == "twisted" or m.startswith("twisted."))
    assert not leaked, leaked
    """
)


def run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_wire_and_model_import_without_twisted() -> None:
    """Importing fastagi_spy.wire and every fastagi_spy.model submodule loads no Twisted."""
    result = run_isolated(CHECK)
    assert result.returncode == 0, result.stdout + result.stderr


def test_wire_does_not_import_model() -> None:
    """fastagi_spy.wire stands alone: importing it loads nothing from fastagi_spy.model."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import fastagi_spy.wire
        for info in pkgutil.walk_packages(fastagi_spy.wire.__path__, "fastagi_spy.wire."):
            importlib.import_module(info.name)
        leaked = sorted(m for m in sys.modules if m.startswith("fastagi_spy.model"))
        assert not leaked, leaked
        """
    )
    result = run_isolated(code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_layering_check_detects_twisted() -> None:
    """The isolated check really fails when Twisted is imported (guards against a no-op test)."""
    result = run_isolated("import twisted.internet.defer\n" + CHECK)
    assert result.returncode != 0
    assert "twisted" in result.stderr
