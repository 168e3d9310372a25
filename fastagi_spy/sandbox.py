"""A real Asterisk 22 on loopback, for the demo and the integration tests.

It boots the very config files the container uses (package data: ``fastagi_spy/data/asterisk``
and ``fastagi_spy/data/dialplan``), so the tested path and the Docker path cannot drift apart,
and an installed wheel carries them (the demo runs outside the checkout). Asterisk comes from ``asterisk``
on PATH if there is one, otherwise from a Debian unstable root built once with debootstrap
and cached outside the repository (see shared/reference/asterisk-sandbox.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import shutil
import socket
import struct
import subprocess
import time
import wave
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Package data (fastagi_spy/bundle.py), so an installed wheel carries what the sandbox boots.
from fastagi_spy.bundle import ASTERISK_DIR as CONFIG_DIR
from fastagi_spy.bundle import DIALPLAN_DIR, conf_files

DEFAULT_ROOT = Path(os.environ.get("FASTAGI_SPY_ASTERISK_ROOT", "/var/cache/fastagi-spy/root"))
READY_MARK = ".fastagi-spy-ready"
PACKAGES = "asterisk,asterisk-modules,asterisk-config,asterisk-core-sounds-en"
TONES_HZ = (440, 600, 1000, 1400)
TESTER_USER = "fsp-tester"
TESTER_SECRET = "fsp-tester-secret"  # noqa: S105 - sandbox-only account on loopback


class SandboxError(RuntimeError):
    """The sandbox Asterisk could not be provided or started; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now (IAX2 trunks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class AsteriskInstall:
    """Where an Asterisk binary lives: on the host, or inside a chroot."""

    root: Path | None  # None: the host's own asterisk on PATH

    def command(self, *args: str) -> list[str]:
        if self.root is None:
            return ["asterisk", *args]
        return ["chroot", str(self.root), "asterisk", *args]

    def host_path(self, inside: str) -> Path:
        """The host path of a path as Asterisk sees it."""
        if self.root is None:
            return Path(inside)
        return self.root / inside.lstrip("/")

    def prepare(self) -> None:
        """Mount /proc in the chroot: Asterisk reads it at start-up."""
        if self.root is None:
            return
        proc = self.root / "proc"
        if not (proc / "self").exists():
            subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)  # noqa: S603, S607


def locate_asterisk(root: Path = DEFAULT_ROOT) -> AsteriskInstall:
    """Use ``asterisk`` on PATH, else the cached Debian unstable root, building it if needed."""
    if shutil.which("asterisk"):
        return AsteriskInstall(None)
    if not (root / READY_MARK).exists():
        build_root(root)
    return AsteriskInstall(root)


def build_root(root: Path) -> None:
    """debootstrap a Debian unstable root with Asterisk 22 (about a minute, ~500 MB), once."""
    if os.geteuid() != 0:
        raise SandboxError("no asterisk on PATH, and building the Asterisk root needs root")
    if not shutil.which("debootstrap"):
        raise SandboxError("no asterisk on PATH and no debootstrap: apt-get install debootstrap")
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root.parent / ".build.lock"):
        if (root / READY_MARK).exists():
            return  # another process built it while we waited
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        log = root.with_name(root.name + ".build.log")
        with log.open("wb") as out:
            # No mirror argument: debootstrap's own default mirror is the configured source.
            done = subprocess.run(  # noqa: S603
                ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "sid", str(tmp)],  # noqa: S607
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            raise SandboxError(f"debootstrap failed ({done.returncode}); see {log}")
        (tmp / READY_MARK).touch()
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_tone(path: Path, hz: int, seconds: float = 10.0, rate: int = 8000) -> None:
    """An 8 kHz 16-bit mono sine: Playback of a file gives steady frames on Local channels."""
    frames = bytearray()
    for n in range(int(seconds * rate)):
        frames += struct.pack("<h", int(12000 * math.sin(2 * math.pi * hz * n / rate)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))


@dataclass
class AsteriskSandbox:
    """One Asterisk instance with its own config, run, spool and log directories."""

    name: str = "fsp1"
    ami_port: int = field(default_factory=free_port)
    agi_port: int = field(default_factory=free_port)
    teams: Mapping[str, str] = field(default_factory=dict)  # agent number -> SPYGROUP token
    iax_port: int = field(default_factory=free_udp_port)
    # Text appended to a config file after it is written: {"iax.conf": "[peer]\n..."}.
    extra_config: Mapping[str, str] = field(default_factory=dict)
    install: AsteriskInstall | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def base(self) -> str:
        """The instance directory as Asterisk sees it."""
        return f"/srv/fastagi-spy/{self.name}"

    @property
    def config_file(self) -> str:
        return f"{self.base}/etc/asterisk.conf"

    @property
    def recordings(self) -> str:
        """Where handsets record what they hear (as Asterisk sees it)."""
        return f"{self.base}/rec"

    def host_path(self, inside: str) -> Path:
        assert self.install is not None
        return self.install.host_path(inside)

    def start(self, timeout: float = 60.0) -> None:
        """Write the config, boot Asterisk and wait until it is fully booted."""
        if self.install is None:
            self.install = locate_asterisk()
        self.install.prepare()
        self._write_config()
        log = self.host_path(f"{self.base}/log/console.log")
        with log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603
                self.install.command("-f", "-C", self.config_file),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_booted(timeout, log)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop Asterisk at once (calls are dropped), and make sure the process is gone."""
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(SandboxError, subprocess.TimeoutExpired):
                self.cli("core stop now", timeout=5)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.process = None

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)

    def cli(self, command: str, timeout: float = 15.0) -> str:
        """Run one Asterisk CLI command through the running instance's control socket."""
        assert self.install is not None
        done = subprocess.run(  # noqa: S603
            self.install.command("-C", self.config_file, "-rx", command),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise SandboxError(f"asterisk -rx {command!r} failed: {done.stderr.decode()!r}")
        return done.stdout.decode("utf-8", "replace")

    # -- internals ---------------------------------------------------------------------

    def _write_config(self) -> None:
        etc = self.host_path(f"{self.base}/etc")
        for sub in ("etc", "run", "log", "spool", "db", "rec"):
            self.host_path(f"{self.base}/{sub}").mkdir(parents=True, exist_ok=True)
        for source in [*conf_files(CONFIG_DIR), *conf_files(DIALPLAN_DIR)]:
            (etc / source.name).write_bytes(source.read_bytes())
        manager = (etc / "manager.conf").read_text()
        (etc / "manager.conf").write_text(
            manager.replace("port = 5038", f"port = {self.ami_port}", 1)
        )
        iax = (etc / "iax.conf").read_text()
        (etc / "iax.conf").write_text(iax.replace("bindport = 4569", f"bindport = {self.iax_port}", 1))
        globals_lines = [
            "FASTAGI_SPY_HOST = 127.0.0.1",
            f"FASTAGI_SPY_PORT = {self.agi_port}",
            *(f"FSP_TEAM_{agent} = {group}" for agent, group in sorted(self.teams.items())),
        ]
        (etc / "fsp_globals.conf").write_text("\n".join(globals_lines) + "\n")
        (etc / "asterisk.conf").write_text(
            (CONFIG_DIR / "asterisk.conf").read_text()
            + "\n[directories]\n"
            + f"astetcdir => {self.base}/etc\n"
            + f"astrundir => {self.base}/run\n"
            + f"astlogdir => {self.base}/log\n"
            + f"astspooldir => {self.base}/spool\n"
            + f"astdbdir => {self.base}/db\n"
            + "astdatadir => /usr/share/asterisk\n"
        )
        for name, text in self.extra_config.items():
            with (etc / name).open("a") as conf:
                conf.write("\n" + text)
        for hz in TONES_HZ:
            tone = self.host_path(f"/usr/local/share/asterisk/sounds/fsp-tone-{hz}.wav")
            if not tone.exists():
                write_tone(tone, hz)

    def _wait_booted(self, timeout: float, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise SandboxError(f"asterisk exited with {self.process.returncode}:\n{tail}")
            if _ami_banner(self.ami_port):
                with contextlib.suppress(SandboxError, subprocess.TimeoutExpired):
                    self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                    return
            time.sleep(0.1)
        self.stop()
        raise SandboxError(f"asterisk did not boot within {timeout:.0f}s; see {log}")


def _ami_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            return conn.recv(64).startswith(b"Asterisk Call Manager/")
    except OSError:
        return False
