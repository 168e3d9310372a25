"""The install an admin does, from the built wheel, outside the checkout.

Builds the wheel from a copy of the source tree (so a stale build/ in the checkout cannot
leak into it), installs it into a fresh venv (dependencies from pip's configured index),
then, in a temporary directory with nothing of the checkout on the path, runs what the
README says: init, check-config, set-pin with the PIN on stdin, dialplan, and the demo on
the real Asterisk 22 (its configs and the bundle must come from the wheel).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.asterisk

REPO = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".*cache",
                              ".hypothesis", "tests", "bench")


def run(*args: str | Path, cwd: Path, stdin: str = "", timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=timeout, check=False, env=env)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; returns its bin directory."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(REPO, source, ignore=SKIP, symlinks=False)  # the example's link, resolved
    built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist",
                ".", cwd=source)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("fastagi_spy-*.whl")
    made = run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    assert made.returncode == 0, made.stderr
    installed = run(work / "venv" / "bin" / "pip", "install", "-q", wheel, cwd=work)
    assert installed.returncode == 0, installed.stderr
    return work / "venv" / "bin"


def test_the_readme_install_from_the_wheel_outside_the_checkout(
        venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    site = tmp_path / "site"  # nothing of the checkout here or on the path
    site.mkdir()
    fsp = venv / "fastagi-spy"
    where = run(venv / "python", "-c", "import fastagi_spy; print(fastagi_spy.__file__)",
                cwd=site, env=env)
    assert where.stdout.startswith(str(venv.parent)), where.stdout + where.stderr

    config = site / "etc" / "fastagi-spy.toml"
    done = run(fsp, "init", "--config", config, cwd=site, env=env)
    assert done.returncode == 0, done.stderr
    pepper = config.parent / "pepper"
    assert stat.S_IMODE(pepper.stat().st_mode) == 0o600
    assert (config.parent / "fastagi-spy.sqlite3").stat().st_size > 0
    assert config.read_text() == (REPO / "fastagi-spy.example.toml").read_text()

    done = run(fsp, "check-config", config, cwd=site, env=env)
    assert done.returncode == 0, done.stderr
    assert f"{config}: OK" in done.stdout

    done = run(fsp, "set-pin", "--config", config, "9001", stdin="482913\n", cwd=site, env=env)
    assert done.returncode == 0, done.stderr
    assert "PIN set for supervisor 9001" in done.stdout

    again = run(fsp, "init", "--config", config, cwd=site, env=env)
    assert again.returncode == 1 and "never replaces a pepper" in again.stderr

    bundle = run(fsp, "dialplan", cwd=site, env=env)
    bundled = REPO / "fastagi_spy" / "data" / "dialplan" / "extensions_spy.conf"
    assert bundle.returncode == 0 and bundle.stdout == bundled.read_text()

    demo = run(fsp, "demo", "--seconds", "20", cwd=site, env=env, timeout=400)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "ChanSpyStart: Local/2001@fsp-phones" in demo.stdout, demo.stdout[-3000:]
    assert "is listening to Local/1001@fsp-agents" in demo.stdout
    assert "Audit record #1: supervisor=2001 agent=1001 modes=listen" in demo.stdout
    assert "Traceback" not in demo.stdout + demo.stderr
