"""Layering rules: wire and model never pull in Twisted, and every import points down the layers."""

from __future__ import annotations

import ast
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


# --- the whole import graph -------------------------------------------------------------

# Rank of each part of the package: a module may import its own part and any part of a
# lower rank, nothing else.  Parts of equal rank (wire/store, net/web) stay apart.
RANKS = {
    "domain": 0,
    "bundle": 0,  # package data (dialplan, Asterisk configs, example config): imports nothing
    "wire": 1,
    "store": 1,
    "model": 2,
    "config": 3,
    "supervise": 4,
    "net": 5,
    "web": 5,
    "service": 6,
    "terminal": 6,
    "logs": 6,  # serve's log observers (Twisted), imported only by cli
    "sdnotify": 6,  # systemd's readiness datagrams, for serve
    "reload": 6,  # SIGHUP: the config file's people and rights, swapped in live
    "sandbox": 6,
    "sandbox_driver": 7,
    "bootstrap": 7,
    "amiperms": 5,  # least-privilege rules: config and supervise.rights, no I/O
    "doctor": 7,
    "demo": 8,
    "cli": 9,
}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every fastagi_spy module ``path`` imports, with the line (TYPE_CHECKING ones too)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("fastagi_spy."):
                found.append((node.module, node.lineno))
            elif node.module == "fastagi_spy":
                found.extend((f"fastagi_spy.{a.name}", node.lineno) for a in node.names)
        elif isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names
                         if a.name.startswith("fastagi_spy."))
    return found


def layering_violations(package: Path) -> list[str]:
    problems: list[str] = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        importer = ".".join(relative.parts)
        if importer == "fastagi_spy.__init__":
            continue
        mine = _part(importer.removesuffix(".__init__"))
        for imported, line in _imports(path):
            theirs = _part(imported)
            if theirs == mine:
                continue
            if theirs not in RANKS or mine not in RANKS:
                problems.append(f"{path}:{line}: {theirs or mine!r} has no layer in RANKS")
            elif theirs == "cli" or RANKS[theirs] >= RANKS[mine]:
                problems.append(f"{path}:{line}: {mine} imports {imported}")
    return problems


def test_every_import_points_down_the_layers() -> None:
    """wire <- model <- supervise <- net/web <- service <- cli, domain under all, and
    nothing imports cli."""
    assert layering_violations(ROOT / "fastagi_spy") == []


def test_the_graph_check_catches_an_upward_import(tmp_path: Path) -> None:
    package = tmp_path / "fastagi_spy"
    (package / "model").mkdir(parents=True)
    (package / "model" / "x.py").write_text("from fastagi_spy.service import make_service\n")
    (package / "demo.py").write_text("from fastagi_spy.cli import main\n")
    (package / "wire").mkdir()
    (package / "wire" / "y.py").write_text("import fastagi_spy.store.audit\n")
    problems = layering_violations(package)
    assert len(problems) == 3, problems
