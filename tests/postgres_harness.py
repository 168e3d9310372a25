"""A real, throwaway PostgreSQL server for the tests.

Debian's server binaries (initdb, pg_ctl) refuse to run as root, and the tests run as root, so
the cluster is made and run as the ``postgres`` system user in a temporary directory it owns.
It listens on 127.0.0.1 only (a free port), keeps its unix socket inside that directory, trusts
127.0.0.1 (nothing else may connect) and runs with fsync=off: a test database needs no
durability, and commits are then as cheap as SQLite's.

Tests isolate by database: :meth:`PostgresServer.new_database` makes a fresh one per test.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from fastagi_spy.sandbox import free_port

_SYSTEM_USER = "postgres"


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: ``pg_config --bindir`` when that has them
    (pg_config may come from libpq-dev alone), else the newest /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))

    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/", path)
        return int(match.group(1)) if match else 0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version,
                                           reverse=True)]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                       "run scripts/setup.sh (installs Debian's postgresql package)")


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; :meth:`start` it, :meth:`stop` it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bindir = find_bindir()
        self._root: Path | None = None
        self._counter = 0

    @property
    def url(self) -> str:
        """The maintenance database's URL (superuser, no password: trust on 127.0.0.1)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        assert self._root is not None, "server not started"
        return self._root / "data"

    def _as_postgres(self, *argv: str, timeout: float = 60) -> None:
        # As root, run as the postgres user (initdb refuses root); as anyone else, directly.
        prefix = ["runuser", "-u", _SYSTEM_USER, "--"] if os.geteuid() == 0 else []
        out = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout,
                             check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}):\n"
                               f"{out.stdout}\n{out.stderr}")

    def start(self) -> None:
        """Make the cluster and start the server; raises (never skips) when it cannot."""
        self._root = Path(tempfile.mkdtemp(prefix="fastagi-spy-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self._root, user=_SYSTEM_USER, group=_SYSTEM_USER)
        os.chmod(self._root, 0o700)
        try:
            self._as_postgres(str(self.bindir / "initdb"), "-D", str(self.data_dir),
                              "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                              "--locale=C", "--no-sync")
            # Only TCP on 127.0.0.1 and the socket in our directory, both trusted; nothing else.
            (self.data_dir / "pg_hba.conf").write_text(
                "local all all trust\n"
                "host all all 127.0.0.1/32 trust\n")
            with open(self.data_dir / "postgresql.conf", "a") as conf:
                conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                           f"unix_socket_directories = '{self._root}'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                           "max_connections = 200\n")
            if os.geteuid() == 0:
                for name in ("pg_hba.conf", "postgresql.conf"):
                    shutil.chown(self.data_dir / name, user=_SYSTEM_USER, group=_SYSTEM_USER)
            self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir),
                              "-l", str(self._root / "server.log"), "-w", "-t", "60", "start")
        except BaseException:
            log = self._root / "server.log"
            detail = log.read_text() if log.exists() else ""
            self._cleanup()
            if detail:
                raise RuntimeError(f"PostgreSQL did not start:\n{detail}") from None
            raise

    def unique_name(self, stem: str = "test") -> str:
        """A database name not used yet on this server, made from ``stem``."""
        self._counter += 1
        return f"t{self._counter}_" + re.sub(r"[^a-z0-9_]", "_", stem.lower())[:40]

    def new_database(self, name: str | None = None) -> str:
        """CREATE DATABASE a fresh database (``name``, or a unique one) and return its URL."""
        name = name or self.unique_name()
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def drop_database(self, name: str) -> None:
        """DROP a test's database (FORCE: connections a test left open are cut), so a long
        run does not fill the temporary directory with a cluster per test."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast: disconnects clients) and delete its directory."""
        if self._root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir),
                                  "-m", "immediate", "-w", "-t", "30", "stop")
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
