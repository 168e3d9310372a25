"""``fastagi-spy``: init, check-config, doctor, dialplan, serve, demo, status, set-pin,
set-password, unlock, locks, migrate, audit.

Only this module (and the demo it starts) touches the global reactor.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import getpass
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastagi_spy.config import Config, ConfigError, load
from fastagi_spy.store.errors import StoreError
from fastagi_spy.terminal import print_snapshot, print_table

if TYPE_CHECKING:
    from fastagi_spy.store.audit import AuditLog

DEFAULT_CONFIG = "/etc/fastagi-spy/fastagi-spy.toml"
STATUS_ENV = "FASTAGI_SPY_PASSWORD"  # `status`: the --user's password, when set


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
    except ConfigError as exc:
        print(f"fastagi-spy: config error: {exc}", file=sys.stderr)
        code = 2
    except StoreError as exc:  # unreachable, unmigrated or unreadable store: one line
        print(f"fastagi-spy: store error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastagi-spy", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        return p

    p = command("init", _init, "write a config from the example, a new PIN pepper and the "
                "database (never replaces an existing pepper)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"where (default {DEFAULT_CONFIG})")
    p = command("doctor", _doctor, "log in to each configured AMI and report an account that "
                "can do more than the enabled features need, or less")
    p.add_argument("--config", required=True)
    p.add_argument("--manager-conf", type=Path,
                   help="Asterisk's manager.conf (read permissions are not shown over AMI)")
    p.add_argument("--server", help="only this [[asterisk]] name")
    p = command("dialplan", _dialplan, "print the dialplan bundle (extensions_spy.conf) to save "
                "next to extensions.conf")
    p.add_argument("--ami-account", action="store_true",
                   help="print the least-privilege AMI account for manager.conf instead")
    p = command("serve", _serve, "run the FastAGI server, AMI clients and HTTP API")
    p.add_argument("--config", required=True, help="the TOML config file")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text lines (the default) or one JSON object per line: time, level, "
                   "system, event and the attempt's audit_id where there is one")
    p = command("check-config", _check, "validate a config file and print a summary")
    p.add_argument("config", help="the TOML config file")
    p = command("demo", _demo, "bring up a real Asterisk 22 sandbox with simulated agents")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: Ctrl-C)")
    p = command("status", _status, "print the live map of a running server as a table "
                f"(the password from ${STATUS_ENV}, else the terminal or stdin)")
    p.add_argument("--config", required=True)
    p.add_argument("--user", required=True, help="a person with a password (set-password)")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead")
    _people_commands(command)
    p = command("migrate", _migrate, "bring the configured store to the latest schema "
                "version; with --from-sqlite, copy a SQLite site into the configured "
                "(empty) PostgreSQL store")
    p.add_argument("--config", required=True)
    p.add_argument("--from-sqlite", metavar="PATH", type=Path,
                   help="the SQLite file the old [server] database pointed at: every row "
                   "copied, with the same ids, in one transaction")
    p = command("audit", _audit, "list or export audit records, or check their chain")
    p.add_argument("--config", required=True)
    p.add_argument("--format", choices=("table", "csv", "jsonl"), default="table",
                   help="table (newest 50 first), or csv / jsonl: every match, oldest first")
    p.add_argument("--csv", action="store_true", help="the same as --format csv")
    p.add_argument("--limit", type=int, help="only the newest N matches")
    p.add_argument("--supervisor")
    p.add_argument("--agent")
    p.add_argument("--team", help="the agents in this team in the directory")
    p.add_argument("--since", help="ISO date or date and time; UTC unless it has an offset")
    p.add_argument("--until", help="ISO date (to its end) or date and time, exclusive")
    p.add_argument("--reason", help="end reason: denied, agent_hangup, bad_pin, ...")
    p.add_argument("--unexplained", action="store_true",
                   help="only ChanSpy runs that no authorised attempt of ours explains")
    p.add_argument("--verify", action="store_true",
                   help="check the tamper-evident chain; exit 1 naming the first broken row")
    p.add_argument("--open-bound", type=float, default=86400.0, metavar="SECONDS",
                   help="with --verify: list rows open longer than this (not chained yet)")
    p.add_argument("--id", type=int, dest="record_id",
                   help="one record in full, with its events (PIN tries, mode changes, refusals)")
    return parser


def _people_commands(command: Any) -> None:
    """set-pin, set-password, unlock, locks: the people's secrets and their lockouts."""
    p = command("set-pin", _set_pin, "set a supervisor's PIN (read from the terminal or stdin)")
    p.add_argument("--config", required=True)
    p.add_argument("supervisor", help="the supervisor number")
    p = command("set-password", _set_password, "set a person's password for the HTTP API "
                "(read from the terminal or stdin)")
    p.add_argument("--config", required=True)
    p.add_argument("user", help="the person's number (their VICIdial user)")
    p = command("unlock", _unlock, "lift a PIN lockout, or a password lockout (--user)")
    p.add_argument("--config", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--supervisor")
    group.add_argument("--device", help="e.g. PJSIP/2001")
    group.add_argument("--user", help="a person locked out of the HTTP API")
    p = command("locks", _locks, "list current PIN lockouts and locked users (user:N)")
    p.add_argument("--config", required=True)


def _init(args: argparse.Namespace) -> int:
    from fastagi_spy.bootstrap import PepperExists, initialise

    path = Path(args.config)
    try:
        done = initialise(path)
    except PepperExists as exc:
        print(f"fastagi-spy: {exc}", file=sys.stderr)
        return 1
    except (OSError, StoreError) as exc:
        print(f"fastagi-spy: init failed: {exc}", file=sys.stderr)
        return 1
    print(f"{'wrote' if done.config_written else 'kept'} config  {done.config}")
    print(f"wrote pepper  {done.pepper} (mode 0600)")
    print(f"database      {done.database}")
    print(f"Next: edit {done.config} (AMI secret, agents, supervisors), then\n"
          f"  fastagi-spy check-config {done.config}\n"
          f"  fastagi-spy set-pin --config {done.config} <supervisor number>")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    config = load(args.config)
    from twisted.internet import defer, task

    from fastagi_spy.doctor import render, run

    if args.server and args.server not in {s.name for s in config.asterisk}:
        print(f"fastagi-spy: no [[asterisk]] named {args.server!r} in {args.config}",
              file=sys.stderr)
        return 1

    async def check(reactor: Any) -> None:
        reports = await run(reactor, config, args.manager_conf, args.server)
        print(render(reports))
        if any(r.problems for r in reports):
            raise SystemExit(1)  # react() exits with this code

    task.react(lambda reactor: defer.ensureDeferred(check(reactor)))  # exits the process
    return 0


def _dialplan(args: argparse.Namespace) -> int:
    from fastagi_spy.bundle import ami_account_text, dialplan_text

    sys.stdout.write(ami_account_text() if args.ami_account else dialplan_text())
    return 0


def _check(args: argparse.Namespace) -> int:
    config = load(args.config)
    print(f"{args.config}: OK")
    print(f"  FastAGI on {config.agi_listen}; HTTP on {config.http_listen}")
    for server in config.asterisk:
        print(f"  Asterisk {server.name} ({server.server_ip}) AMI {server.endpoint} "
              f"as {server.ami_username}")
    d = config.directory
    print(f"  {len(d.agents)} agents, {len(d.supervisors)} supervisors, "
          f"{len(d.never_spy)} never-spy, {sum(p.api for p in d.supervisors)} with API access")
    from fastagi_spy.amiperms import needs

    need = needs(config)
    print(f"  the AMI account needs read = {','.join(need.read)}, "
          f"write = {','.join(need.write)} (no more; `fastagi-spy doctor --config "
          f"{args.config} --manager-conf /etc/asterisk/manager.conf` checks it)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    config = load(args.config)
    from twisted.internet import defer, task
    from twisted.internet import reactor as global_reactor
    from twisted.logger import Logger, globalLogBeginner

    from fastagi_spy import sdnotify
    from fastagi_spy.logs import observer
    from fastagi_spy.service import make_service

    # Built before the reactor runs and before logging takes over stderr, so a store it
    # cannot open (PostgreSQL down, or not yet migrated) is one line on stderr from main(),
    # not a traceback from inside react(). Its log lines wait for the observer below.
    service = make_service(config, global_reactor)
    globalLogBeginner.beginLoggingTo([observer(args.log_format, sys.stdout)])
    log = Logger(namespace="fastagi_spy.serve")

    def run(reactor: Any) -> defer.Deferred[None]:
        service.startService()
        # systemd (Type=notify): started once both ports are bound, stopping before we drain.
        # react() calls us before the reactor runs; READY=1 waits for it to be running, when
        # its SIGTERM handler is in place (a stop right after READY=1 then still drains).
        service.listening().addCallbacks(
            lambda _: reactor.callWhenRunning(sdnotify.notify, sdnotify.READY),
            lambda f: log.error("Not ready, systemd not told so: {error}", error=f.value))
        _reload_on_sighup(reactor, config)
        done: defer.Deferred[None] = defer.Deferred()
        reactor.addSystemEventTrigger("before", "shutdown", sdnotify.notify, sdnotify.STOPPING)
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        return done  # never fires: the process runs until SIGTERM / Ctrl-C

    task.react(run)
    return 0


def _reload_on_sighup(reactor: Any, config: Config) -> None:
    """SIGHUP (systemctl reload): the file's people and rights, in force without a restart."""
    import signal

    from fastagi_spy import sdnotify
    from fastagi_spy.reload import Reloader

    reloader = Reloader(config)

    def reload() -> None:
        sdnotify.notify(sdnotify.reloading())
        try:
            reloader.reload()
        finally:  # READY=1 either way: a refused reload leaves the old config serving
            sdnotify.notify(sdnotify.READY)

    # The handler only schedules: the swap runs on the reactor, between two events.
    signal.signal(signal.SIGHUP, lambda _signum, _frame: reactor.callFromThread(reload))


def _stores(args: argparse.Namespace) -> tuple[Config, Any]:
    from fastagi_spy.service import open_stores

    config = load(args.config)
    return config, open_stores(config)


def _set_pin(args: argparse.Namespace) -> int:
    from fastagi_spy.service import pin_hasher

    config, stores = _stores(args)
    if config.directory.supervisor(args.supervisor) is None:
        print(f"fastagi-spy: no supervisor {args.supervisor!r} in {args.config}", file=sys.stderr)
        return 1
    if sys.stdin.isatty():
        pin = getpass.getpass("New PIN: ")
        if getpass.getpass("Again: ") != pin:
            print("fastagi-spy: the PINs differ", file=sys.stderr)
            return 1
    else:
        pin = sys.stdin.readline().strip()
    try:
        stored = pin_hasher(config).hash_pin(args.supervisor, pin)
    except ValueError as exc:
        print(f"fastagi-spy: {exc}", file=sys.stderr)
        return 1
    stores.pins.set_hash(args.supervisor, stored, time.time())
    print(f"PIN set for supervisor {args.supervisor}")
    return 0


def _set_password(args: argparse.Namespace) -> int:
    from fastagi_spy.service import pin_hasher

    config, stores = _stores(args)
    if config.directory.person(args.user) is None:
        print(f"fastagi-spy: no person {args.user!r} in {args.config} ([[supervisors]] "
              f"number)", file=sys.stderr)
        return 1
    password = _secret("New password: ", confirm=True)
    if password is None:
        print("fastagi-spy: the passwords differ", file=sys.stderr)
        return 1
    try:
        stored = pin_hasher(config).hash_password(args.user, password)
    except ValueError as exc:
        print(f"fastagi-spy: {exc}", file=sys.stderr)
        return 1
    stores.passwords.set_hash(args.user, stored, time.time())
    print(f"password set for {args.user}")
    return 0


def _secret(prompt: str, confirm: bool = False) -> str | None:
    """A secret from the terminal (twice when `confirm`; None if they differ) or, when stdin
    is not a terminal, its first line."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    value = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != value:
        return None
    return value


def _unlock(args: argparse.Namespace) -> int:
    from fastagi_spy.store.lockout import device_key, supervisor_key

    _, stores = _stores(args)
    if args.user:
        removed = stores.logins.unlock(args.user)
        print(f"user {args.user}: {'unlocked' if removed else 'was not locked'}")
        return 0
    key = supervisor_key(args.supervisor) if args.supervisor else device_key(args.device)
    removed = stores.lockouts.unlock(key)
    print(f"{key}: {'unlocked' if removed else 'was not locked'}")
    return 0


def _locks(args: argparse.Namespace) -> int:
    _, stores = _stores(args)
    now = time.time()
    rows = stores.lockouts.list_locked(now)
    rows += [(f"user:{user}", until) for user, until in stores.logins.list_locked(now)]
    for key, until in rows:
        print(f"{key}\tlocked for {until - now:.0f}s more")
    if not rows:
        print("no lockouts")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """``migrate``: the store to the latest schema; --from-sqlite: a site copied into it."""

    config = load(args.config)
    try:
        if args.from_sqlite is not None:
            return _migrate_from_sqlite(config, args.config, args.from_sqlite)
        return _migrate_schema(config)
    except StoreError as exc:
        # One line, exit 2: the store's messages name host and database, never a password.
        print(f"fastagi-spy: migrate: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _migrate_schema(config: Config) -> int:
    from fastagi_spy.store import schema, transfer
    from fastagi_spy.store.database import Database
    from fastagi_spy.store.postgres import PostgresDatabase

    if config.store_url:
        db: Database = PostgresDatabase(config.store_url)
        try:
            before, after = schema.migrate(db)
        finally:
            db.close()
    else:
        # A SQLite file migrates itself as it opens: read its version before that.
        before = transfer.file_version(config.database) or 0
        db = Database(config.database)
        try:
            after = schema.current_version(db)
        finally:
            db.close()
    print(f"already at version {after}" if before == after
          else f"schema version {before} -> {after}")
    return 0


def _migrate_from_sqlite(config: Config, config_path: str, source_path: Path) -> int:
    """Copy a SQLite site into the configured, empty PostgreSQL store (store/transfer.py)."""
    from fastagi_spy.store import schema, transfer
    from fastagi_spy.store.postgres import PostgresDatabase

    if not config.store_url:
        print(f"fastagi-spy: migrate: --from-sqlite copies into PostgreSQL: set [store] url "
              f"in {config_path} first", file=sys.stderr)
        return 2
    target = PostgresDatabase(config.store_url)  # unreachable: StoreError, one line
    try:
        before, after = schema.migrate(target)
        print(f"target {target.description}: "
              + (f"already at version {after}" if before == after
                 else f"schema version {before} -> {after}"))
        with target.snapshot() as conn:  # refused before the source is touched
            transfer.refuse_full(conn, schema.TABLES)
        source = transfer.open_source(source_path)
        try:
            if source.added:
                print(f"source {source_path}: was at schema version {source.version_before}; "
                      f"brought up to version {after} in place as it was opened (added "
                      f"{', '.join(source.added)})")
            copied = transfer.copy_site(source.db, target, schema.TABLES)
        finally:
            source.db.close()
    finally:
        target.close()
    print("copied in one transaction, rows counted on both sides before commit:")
    print_table(("table", "rows"), [[t, str(n)] for t, n in copied.counts])
    if copied.missing:
        print(f"(the source never had {', '.join(copied.missing)}: nothing to copy there)")
    if copied.sequences:
        print("next ids: " + ", ".join(f"{k} {v}" for k, v in copied.sequences.items()))
    c = copied.chain
    print(f"audit chain: {c.checked} closed rows, head seq {c.head_seq} {c.head_hash}, the "
          f"same on both sides; {'intact' if c.ok else f'BROKEN (as in the source) at {c.broken}'}")
    print(f"Next: fastagi-spy audit --config {config_path} --verify, then start the server")
    return 0


def _audit(args: argparse.Namespace) -> int:
    _, stores = _stores(args)
    if args.record_id is not None:
        return _audit_record(stores.audit, args.record_id)
    if args.verify:
        return _verify_chain(stores.db, args.open_bound)
    return _audit_list(args, stores.db)


def _audit_list(args: argparse.Namespace, db: Any) -> int:
    """The matching rows as a table (newest first) or exported (CSV, JSON Lines)."""
    from fastagi_spy.store import audit_query

    form = "csv" if args.csv else args.format
    try:
        query = audit_query.build(
            load(args.config).directory, supervisor=args.supervisor, agent=args.agent,
            team=args.team, since=args.since, until=args.until, reason=args.reason,
            unexplained=args.unexplained,
            newest=args.limit if args.limit is not None or form != "table" else 50)
    except audit_query.QueryError as exc:
        print(f"fastagi-spy: {exc}", file=sys.stderr)
        return 2
    found = audit_query.rows(db, query)
    if form == "csv":
        audit_query.write_csv(found, sys.stdout)
    elif form == "jsonl":
        audit_query.write_jsonl(found, sys.stdout)
    else:
        columns = ("id", "started_at", "via", "supervisor", "device", "auth_result",
                   "requested_target", "agent", "server", "modes", "spy_started_at",
                   "spy_stopped_at", "end_reason")
        newest_first = reversed(list(found))
        print_table(columns, [[_cell(row[c]) for c in columns] for row in newest_first])
    return 0


def _verify_chain(db: Any, open_bound: float) -> int:
    """Walk the audit chain; exit status 1 at the first broken row (named)."""
    from fastagi_spy.store import chain

    with db.snapshot() as conn:
        report = chain.verify(conn, time.time(), open_bound)
    print(f"audit chain: {report.checked} closed rows checked; head seq {report.head_seq} "
          f"{report.head_hash}")
    if report.open_too_long:
        print(f"not chained yet (open longer than {open_bound:.0f} s): rows "
              f"{', '.join(map(str, report.open_too_long))}")
    if report.broken is not None:
        print(f"fastagi-spy: audit chain BROKEN at {report.broken}", file=sys.stderr)
        return 1
    print("audit chain OK")
    return 0


def _audit_record(audit: AuditLog, record_id: int) -> int:
    """``audit --id N``: every column of one record, then what happened in it, in order."""
    record = audit.get(record_id)
    if record is None:
        print(f"fastagi-spy: no audit record {record_id}", file=sys.stderr)
        return 1
    print_table(("column", "value"), [[name, _cell(value)]
                                      for name, value in dataclasses.asdict(record).items()])
    events = audit.events(record_id)
    print()
    print_table(("at", "event", "detail"),
                [[_cell(e.at), e.kind, _cell(e.detail)] for e in events])
    if not events:
        print("no events")
    return 0


def _status(args: argparse.Namespace) -> int:
    config = load(args.config)
    password = os.environ.get(STATUS_ENV)
    if password is None:
        password = _secret(f"Password for {args.user}: ") or ""
    host, port = _http_address(config.http_listen)
    request = urllib.request.Request(f"http://{host}:{port}/api/live")
    token = base64.b64encode(f"{args.user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own URL
            snapshot = json.load(response)
    except urllib.error.HTTPError as exc:
        why = {401: "wrong user or password", 403: "too many failed logins: locked for 15 "
               "minutes", 429: "too many failed logins from this address; try later"}
        print(f"fastagi-spy: the server refused {args.user!r}: "
              f"{why.get(exc.code, f'HTTP {exc.code}')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"fastagi-spy: cannot reach the server at {host}:{port}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(snapshot, indent=2, sort_keys=True))
        return 0
    print_snapshot(snapshot)
    return 0


def _http_address(endpoint: str) -> tuple[str, int]:
    parts = endpoint.split(":")
    port = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 8580
    host = "127.0.0.1"
    for part in parts[2:]:
        if part.startswith("interface="):
            host = part.split("=", 1)[1] or host
    return ("127.0.0.1" if host in ("0.0.0.0", "") else host), port  # noqa: S104


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return "" if value is None else str(value)


def _demo(args: argparse.Namespace) -> int:
    from fastagi_spy.demo import run_demo

    return run_demo(args.seconds)
if __name__ == "__main__":
    main()
