"""What an installed wheel imports has no side effect: no global reactor is installed by
importing the demo, its sandbox driver, the sandbox or the CLI (the demo picks its reactor
when it runs; tests bind theirs in tests/integration/driver.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("fastagi_spy.sandbox_driver", "fastagi_spy.demo", "fastagi_spy.sandbox",
           "fastagi_spy.cli", "fastagi_spy.doctor", "fastagi_spy.bootstrap")


def imported(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


def test_importing_the_package_tools_installs_no_reactor() -> None:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES)
            + "assert 'twisted.internet.reactor' not in sys.modules, 'reactor installed'\n")
    done = imported(code)
    assert done.returncode == 0, done.stderr


def test_the_check_sees_a_reactor_import() -> None:
    """Guards the test above: the same check fails once the global reactor is imported."""
    done = imported("import sys\nfrom twisted.internet import reactor\n"
                    "assert 'twisted.internet.reactor' not in sys.modules, 'reactor installed'\n")
    assert done.returncode != 0 and "reactor installed" in done.stderr
