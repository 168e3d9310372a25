"""One TOML config file, validated once; every error names the key and the problem.

The result is a frozen :class:`Config` that the rest of the code receives; nothing else reads
the file or the environment.
"""

from __future__ import annotations

import ipaddress
import re
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.endpoints import serverFromString

from fastagi_spy.domain import AgentEntry, Directory, Mode, PhoneEntry, SupervisorEntry
from fastagi_spy.model.config import LOGGED_IN_BY, ModelConfig
from fastagi_spy.wire.names import DEVICE_NAME

T = TypeVar("T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DIGITS = re.compile(r"^[0-9]{1,10}$")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEVICE = DEVICE_NAME  # the characters ChanSpy accepts too (wire/names.py)
TEAM = re.compile(r"^[A-Za-z0-9_ .-]{1,64}$")


class ConfigError(ValueError):
    """The config file is wrong; the message names the key."""


@dataclass(frozen=True)
class AsteriskServer:
    name: str
    server_ip: str
    ami_host: str
    ami_port: int
    ami_username: str
    ami_secret: str = field(repr=False)
    ami_tls: bool = False
    ping_interval: float = 10.0
    ping_timeout: float = 5.0
    # Addresses this server's FastAGI connections come from (its own, as our port sees it).
    agi_peers: tuple[IPNetwork, ...] = ()

    @property
    def endpoint(self) -> str:
        kind = "tls" if self.ami_tls else "tcp"
        return f"{kind}:host={self.ami_host}:port={self.ami_port}"


@dataclass(frozen=True)
class CrossServerRoute:
    """A trunk from one Asterisk server's bundle to another's ([[cross_server]])."""

    origin: str  # `from`: the supervisors' server
    destination: str  # `to`: the server the agents are on
    dial: str  # Dial() target with one "{token}", e.g. "IAX2/trunk-b/{token}"
    dial_timeout: float = 20.0  # seconds the trunk may take to answer
    token_ttl: float = 30.0  # seconds a token stays good, unused


@dataclass(frozen=True)
class SecurityRules:
    pin_tries_per_call: int = 3
    lockout_failures: int = 5
    lockout_window: float = 900.0
    lockout_duration: float = 900.0
    enforce_spy_group: bool = True
    notice: str = ""  # sound played to the monitored parties on join; "" = none
    # "best_effort": played as the spy starts, the spy goes on either way; "required": played
    # to the end before the spy starts, and no spy when it cannot be played
    notice_mode: str = "best_effort"
    pin_cost: str = "production"  # "production" or "cheap" (tests and benchmarks only)
    # Failures against a supervisor number from phones other than their own: an alert when
    # reached, never a lock on the supervisor's own phone.
    supervisor_lockout_failures: int = 50
    max_pin_attempts_in_flight: int = 2  # per device, and per supervisor from other phones
    pin_verify_timeout: float = 5.0  # seconds before "service unavailable"


@dataclass(frozen=True)
class HttpLimits:
    """The HTTP API's guards ([server] http_* keys)."""

    max_connections: int = 50
    idle_timeout: float = 30.0  # seconds a connection may stay silent
    auth_failures: int = 10  # wrong logins from one address...
    auth_window: float = 60.0  # ...within this many seconds: 429 until the window ends


@dataclass(frozen=True)
class Config:
    agi_listen: str
    http_listen: str
    database: str
    pin_pepper: bytes = field(repr=False)
    asterisk: tuple[AsteriskServer, ...]
    directory: Directory
    map_rules: ModelConfig  # the live map's rules, in the config's own words
    security: SecurityRules
    command_timeout: float = 30.0
    drain_timeout: float = 10.0
    max_agi_sessions: int = 100
    http: HttpLimits = HttpLimits()
    cross_server: tuple[CrossServerRoute, ...] = ()
    source: str = ""
    phones: tuple[PhoneEntry, ...] = ()  # [[phones]]: what blind_monitor's phone_login names
    customer_url: str = ""  # [web] customer_url: the Live page's link to a customer's record
    # [store] url: a shared PostgreSQL store; None: the SQLite file `database`. May hold a
    # password: never log it (store/postgres.py describe() drops it).
    store_url: str | None = field(default=None, repr=False)


def load(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError naming the bad key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(raw, base=path.parent, source=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def parse(raw: Mapping[str, Any], base: Path = Path("."), source: str = "") -> Config:
    _check("api_users" not in raw, "api_users", API_USERS_GONE)
    _only(raw, "", {"server", "asterisk", "map", "security", "agents", "supervisors",
                    "customers", "never_spy", "cross_server", "phones", "web", "store"})
    server = _table(raw, "server")
    _only(server, "server.", {"agi_listen", "http_listen", "database", "pin_pepper",
                              "pin_pepper_file", "command_timeout", "drain_timeout",
                              "max_agi_sessions", "http_max_connections", "http_idle_timeout",
                              "http_auth_failures", "http_auth_window"})
    servers = tuple(_asterisk(i, t) for i, t in enumerate(_tables(raw, "asterisk", required=True)))
    _unique([s.name for s in servers], "asterisk[].name")
    agents = tuple(_agent(i, t) for i, t in enumerate(_tables(raw, "agents")))
    _unique([a.number for a in agents], "agents[].number")
    supervisors = tuple(_supervisor(i, t) for i, t in enumerate(_tables(raw, "supervisors")))
    _unique([s.number for s in supervisors], "supervisors[].number")
    customers = _table(raw, "customers")
    for number, name in customers.items():
        _check(DIGITS.match(number), f"customers.{number}", "keys must be phone numbers (digits)")
        _check(isinstance(name, str), f"customers.{number}", "expected a name (string)")
    never = _list(raw, "never_spy", str, default=[])
    for i, number in enumerate(never):
        _check(DIGITS.match(number), f"never_spy[{i}]", f"expected agent digits, got {number!r}")
    directory = Directory(agents, supervisors, frozenset(never), dict(customers))
    return Config(
        agi_listen=_endpoint(server, "server.agi_listen", "tcp:4573:interface=127.0.0.1"),
        http_listen=_endpoint(server, "server.http_listen", "tcp:8580:interface=127.0.0.1"),
        database=str(base / _get(server, "server.database", str, "fastagi-spy.sqlite3")),
        pin_pepper=_pepper(server, base, source),
        asterisk=servers,
        directory=directory,
        map_rules=_map_rules(_table(raw, "map")),
        security=_security(_table(raw, "security")),
        command_timeout=_number(server, "server.command_timeout", 30.0, 1, 600),
        drain_timeout=_number(server, "server.drain_timeout", 10.0, 0, 3600),
        max_agi_sessions=int(_number(server, "server.max_agi_sessions", 100, 1, 10000, integer=True)),
        http=_http_limits(server),
        cross_server=_cross_server_routes(raw, servers),
        source=source,
        phones=_phones(raw, servers),
        customer_url=_customer_url(_table(raw, "web")),
        store_url=_store_url(_table(raw, "store")),
    )


# -- sections ------------------------------------------------------------------------------

# A link template: http(s), printable ASCII without quotes, angle brackets, backslashes,
# spaces or other braces, and exactly one {number} (URL-encoded by the page when filled in).
CUSTOMER_URL = re.compile(r"^https?://[!#-&(-;=?-\[\]-z|~]+$")


def _store_url(t: Mapping[str, Any]) -> str | None:
    _only(t, "store.", {"url"})
    url = _get(t, "store.url", str, "")
    if not url:
        return None
    # The value is never echoed back: it may hold the password.
    _check(url.startswith(("postgresql://", "postgres://")) and len(url) > len("postgres://"),
           "store.url", "expected a PostgreSQL URL: postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
           " (or leave it out for the SQLite file server.database)")
    return url


def _customer_url(t: Mapping[str, Any]) -> str:
    _only(t, "web.", {"customer_url"})
    url = _get(t, "web.customer_url", str, "")
    if url:
        _check(len(url) <= 500 and url.count("{number}") == 1
               and CUSTOMER_URL.match(url.replace("{number}", "0")),
               "web.customer_url", "expected an http(s) URL with one {number} where the "
               "customer's number goes, e.g. \"https://crm.example/c?n={number}\"")
    return url


def _asterisk(i: int, t: Mapping[str, Any]) -> AsteriskServer:
    key = f"asterisk[{i}]."
    _only(t, key, {"name", "server_ip", "ami_host", "ami_port", "ami_username", "ami_secret",
                   "ami_tls", "ping_interval", "ping_timeout", "agi_peers"})
    name = _get(t, key + "name", str)
    _check(NAME.match(name), key + "name", "letters, digits, '.', '_' or '-' only")
    ami_host = _get(t, key + "ami_host", str, "127.0.0.1")
    # VICIdial's server_ip, which blind_monitor's server_ip is matched against: by default
    # the address we reach the AMI on.
    ip = _get(t, key + "server_ip", str, ami_host)
    _check(re.match(r"^[-.:_0-9a-zA-Z]{1,64}$", ip), key + "server_ip",
           f"not an address such as '10.10.10.16', got {ip!r} (it defaults to ami_host)")
    return AsteriskServer(
        name=name,
        server_ip=ip,
        ami_host=ami_host,
        ami_port=int(_number(t, key + "ami_port", 5038, 1, 65535, integer=True)),
        ami_username=_nonempty(t, key + "ami_username"),
        ami_secret=_nonempty(t, key + "ami_secret"),
        ami_tls=_get(t, key + "ami_tls", bool, False),
        ping_interval=_number(t, key + "ping_interval", 10.0, 1, 300),
        ping_timeout=_number(t, key + "ping_timeout", 5.0, 0.5, 60),
        agi_peers=_agi_peers(t, key + "agi_peers", ami_host),
    )


def _agi_peers(t: Mapping[str, Any], key: str, ami_host: str) -> tuple[IPNetwork, ...]:
    """Where this server's FastAGI connections come from. Unset: ``ami_host`` when it is an
    address (Asterisk usually reaches us from the address we reach its AMI on); a host name
    is never looked up here, since DNS could change who may connect, so it must be listed."""
    if "agi_peers" not in t:
        default = _network(ami_host)
        _check(default is not None, key,
               f"required when ami_host is a host name ({ami_host!r}): list the addresses "
               "Asterisk's AGI connections come from, such as [\"10.0.0.5\"]")
        assert default is not None
        return (default,)
    items = _list(t, key, str, default=[])
    _check(items, key, "list at least one address, such as [\"127.0.0.1\"]")
    peers: list[IPNetwork] = []
    for i, item in enumerate(items):
        network = _network(item)
        _check(network is not None, f"{key}[{i}]",
               f"expected an IP address or network such as '10.0.0.5' or '10.0.0.0/24', got {item!r}")
        assert network is not None
        _check(network.prefixlen > 0, f"{key}[{i}]", f"{item!r} would let any host in")
        peers.append(network)
    return tuple(peers)


def _network(text: str) -> IPNetwork | None:
    """An address ("10.0.0.5", a one-address network) or a network ("10.0.0.0/24") with no
    host bits set; None for anything else, host names included."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None


# A Dial() target with one "{token}" and nothing a dialplan would read as syntax (no comma,
# "$", "(", "&", space): "IAX2/trunk-b/{token}@fastagi-spy-cross", "PJSIP/{token}@trunk-b".
CROSS_DIAL = re.compile(r"[A-Za-z][A-Za-z0-9]*/[A-Za-z0-9_.@:+/-]*\{token\}[A-Za-z0-9_.@:+/-]*")


def _cross_server_routes(raw: Mapping[str, Any], servers: tuple[AsteriskServer, ...],
                         ) -> tuple[CrossServerRoute, ...]:
    names = {s.name for s in servers}
    routes = []
    for i, t in enumerate(_tables(raw, "cross_server")):
        key = f"cross_server[{i}]."
        _only(t, key, {"from", "to", "dial", "dial_timeout", "token_ttl"})
        origin, destination = _get(t, key + "from", str), _get(t, key + "to", str)
        for end, name in (("from", origin), ("to", destination)):
            _check(name in names, key + end,
                   f"{name!r} is not the name of an [[asterisk]] server ({', '.join(sorted(names))})")
        _check(origin != destination, key + "to", "must differ from `from`")
        dial = _get(t, key + "dial", str)
        _check(CROSS_DIAL.fullmatch(dial), key + "dial",
               "expected a Dial() target with one {token}, such as "
               "'IAX2/trunk-b/{token}@fastagi-spy-cross' (letters, digits and _ . @ : + / - only)")
        routes.append(CrossServerRoute(
            origin, destination, dial,
            dial_timeout=_number(t, key + "dial_timeout", 20.0, 1, 120),
            token_ttl=_number(t, key + "token_ttl", 30.0, 5, 300)))
    _unique([f"{r.origin} -> {r.destination}" for r in routes], "cross_server[]")
    return tuple(routes)


def _phones(raw: Mapping[str, Any], servers: tuple[AsteriskServer, ...],
            ) -> tuple[PhoneEntry, ...]:
    """[[phones]]: blind_monitor's phone_login -> the device it rings and its server."""
    names = {s.name for s in servers}
    phones = []
    for i, t in enumerate(_tables(raw, "phones")):
        key = f"phones[{i}]."
        _only(t, key, {"login", "dial", "server"})
        login = _get(t, key + "login", str)
        _check(PHONE_LOGIN.fullmatch(login), key + "login",
               f"expected a phone_login (letters, digits, '_' or '-', up to 20), got {login!r}")
        dial = _get(t, key + "dial", str)
        _check(DEVICE.match(dial), key + "dial",
               f"expected a device such as 'PJSIP/350a', got {dial!r}")
        server = _get(t, key + "server", str, servers[0].name if len(servers) == 1 else "")
        _check(server in names, key + "server",
               f"{server!r} is not the name of an [[asterisk]] server ({', '.join(sorted(names))})")
        phones.append(PhoneEntry(login, dial, server))
    _unique([p.login for p in phones], "phones[].login")
    if phones:
        # blind_monitor's server_ip must name one server, never "one of these".
        _unique([s.server_ip for s in servers], "asterisk[].server_ip")
    return tuple(phones)


def _agent(i: int, t: Mapping[str, Any]) -> AgentEntry:
    key = f"agents[{i}]."
    _only(t, key, {"number", "name", "team", "devices"})
    number = _digits(t, key + "number")
    team = _get(t, key + "team", str, "default")
    _check(TEAM.match(team), key + "team", "letters, digits, space, '.', '_' or '-' only")
    return AgentEntry(number, _get(t, key + "name", str, number), team, _devices(t, key))


def _supervisor(i: int, t: Mapping[str, Any]) -> SupervisorEntry:
    key = f"supervisors[{i}]."
    _only(t, key, {"number", "name", "teams", "modes", "devices", "user_level", "api",
                   "functions", "active", "view_reports", "phone", "see_everyone", "spy",
                   "configure"})
    number = _digits(t, key + "number")
    teams = _list(t, key + "teams", str, default=[])
    modes = _list(t, key + "modes", str, default=["listen"])
    valid = {m.value for m in Mode}
    for j, mode in enumerate(modes):
        _check(mode in valid, f"{key}modes[{j}]", f"expected one of {sorted(valid)}, got {mode!r}")
    phone = _get(t, key + "phone", str, "") or None
    _check(phone is None or PHONE_LOGIN.fullmatch(phone), key + "phone",
           f"expected a phone_login (letters, digits, '_' or '-', up to 20), got {phone!r}")
    return SupervisorEntry(
        number,
        _get(t, key + "name", str, number),
        frozenset(teams),
        frozenset(Mode(m) for m in modes),
        _devices(t, key),
        # VICIdial's own default level is 1; a person with teams supervises, hence 7.
        user_level=int(_number(t, key + "user_level", 7 if teams else 1, 0, 9, integer=True)),
        api=_get(t, key + "api", bool, False),
        functions=_functions(t, key + "functions"),
        active=_get(t, key + "active", bool, True),
        view_reports=_get(t, key + "view_reports", bool, True),
        phone=phone,
        # The web page's scopes: granted one by one, never implied by a level or a mode.
        see_everyone=_get(t, key + "see_everyone", bool, False),
        spy=_get(t, key + "spy", bool, False),
        configure=_get(t, key + "configure", bool, False),
    )


# VICIdial's function names: lower case letters, digits and "_" (blind_monitor, version).
FUNCTION = re.compile(r"[a-z][a-z0-9_]{0,63}")
PHONE_LOGIN = re.compile(r"[-_0-9A-Za-z]{1,20}")  # VICIdial strips anything else


def _functions(t: Mapping[str, Any], key: str) -> frozenset[str] | None:
    """api_allowed_functions: absent (or ["ALL_FUNCTIONS"]) means all of them."""
    if key.rsplit(".", 1)[-1] not in t:
        return None
    names = _list(t, key, str, default=[])
    if names == ["ALL_FUNCTIONS"]:
        return None
    for j, name in enumerate(names):
        _check(FUNCTION.fullmatch(name), f"{key}[{j}]",
               f"expected a function name such as 'blind_monitor', got {name!r}")
    return frozenset(names)


# [[api_users]] kept plaintext passwords in the config; people now have hashed ones.
API_USERS_GONE = (
    "[[api_users]] is no longer read: API users are people now, with hashed passwords. "
    "For each one add a [[supervisors]] entry (number = their user, digits; api = true; "
    "user_level = 7 or more), remove [[api_users]], then run `fastagi-spy set-password "
    "--config <this file> <user>`")


def local_day_start(now: float) -> float:
    """The last local midnight at or before ``now``, in this process's time zone (TZ):
    when the queue strip's answered and abandoned counts start again."""
    day = time.localtime(now)
    return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))


def _map_rules(t: Mapping[str, Any]) -> ModelConfig:
    _only(t, "map.", {"session_range", "trunk_contexts", "trunk_prefixes", "dialer_contexts",
                      "dialer_prefixes", "dialer_dial_prefixes", "logged_in_by",
                      "session_quarantine"})
    rng = _list(t, "map.session_range", int, default=[8600000, 8699999])
    _check(
        len(rng) == 2 and 1000000 <= rng[0] <= rng[1] <= 9999999,
        "map.session_range",
        "expected [first, last] 7-digit numbers with first <= last",
    )
    logged_in_by = _get(t, "map.logged_in_by", str, "registration")
    _check(logged_in_by in LOGGED_IN_BY, "map.logged_in_by",
           f"expected one of {', '.join(repr(v) for v in LOGGED_IN_BY)}")
    quarantine = _number(t, "map.session_quarantine", 600, 0, 86400)
    return ModelConfig(
        session_range=(rng[0], rng[1]),
        logged_in_by=logged_in_by,
        session_quarantine=quarantine,
        day_start=local_day_start,
        trunk_contexts=frozenset(_list(t, "map.trunk_contexts", str, default=[])),
        trunk_prefixes=_strings(t, "map.trunk_prefixes", bool, _PREFIX_EXPECTED),
        dialer_contexts=frozenset(_list(t, "map.dialer_contexts", str, default=[])),
        dialer_prefixes=_strings(t, "map.dialer_prefixes", bool, _PREFIX_EXPECTED),
        dialer_dial_prefixes=_strings(
            t, "map.dialer_dial_prefixes", _is_dial_prefix,
            "expected the digits a dialler puts before every number, such as '9'"),
    )


# A channel-name prefix must not be empty: it would match every channel.
_PREFIX_EXPECTED = "expected a channel-name prefix such as 'PJSIP/trunk-'"


def _is_dial_prefix(prefix: str) -> bool:
    return prefix.isascii() and prefix.isdigit()


def _strings(
    t: Mapping[str, Any], key: str, valid: Callable[[str], object], expected: str
) -> tuple[str, ...]:
    """The list of strings at ``key``, each passing ``valid``; ``expected`` (where "{!r}"
    stands for the item) names what a bad one should have been."""
    items = _list(t, key, str, default=[])
    for i, item in enumerate(items):
        _check(valid(item), f"{key}[{i}]", expected.format(item))
    return tuple(items)


def _http_limits(server: Mapping[str, Any]) -> HttpLimits:
    return HttpLimits(
        max_connections=int(_number(server, "server.http_max_connections", 50, 1, 10000,
                                    integer=True)),
        idle_timeout=_number(server, "server.http_idle_timeout", 30.0, 1, 3600),
        auth_failures=int(_number(server, "server.http_auth_failures", 10, 1, 1000, integer=True)),
        auth_window=_number(server, "server.http_auth_window", 60.0, 1, 86400),
    )


def _security(t: Mapping[str, Any]) -> SecurityRules:
    _only(t, "security.", {"pin_tries_per_call", "lockout_failures", "lockout_window",
                           "lockout_duration", "enforce_spy_group", "notice", "notice_mode", "pin_cost",
                           "supervisor_lockout_failures", "max_pin_attempts_in_flight",
                           "pin_verify_timeout"})
    notice = _get(t, "security.notice", str, "")
    _check(re.match(r"^[A-Za-z0-9/_-]{0,64}$", notice), "security.notice",
           "a sound name such as 'beep' or 'custom/monitored'")
    notice_mode = _get(t, "security.notice_mode", str, "best_effort")
    _check(notice_mode in ("best_effort", "required"), "security.notice_mode",
           "'required' or 'best_effort'")
    _check(notice_mode != "required" or notice, "security.notice_mode",
           "'required' needs a sound in security.notice")
    cost = _get(t, "security.pin_cost", str, "production")
    _check(cost in ("production", "cheap"), "security.pin_cost", "'production' or 'cheap'")
    failures = int(_number(t, "security.lockout_failures", 5, 1, 1000, integer=True))
    supervisor_failures = int(_number(t, "security.supervisor_lockout_failures",
                                      max(50, failures), 1, 100000, integer=True))
    _check(supervisor_failures >= failures, "security.supervisor_lockout_failures",
           "must be at least security.lockout_failures")
    return SecurityRules(
        supervisor_lockout_failures=supervisor_failures,
        max_pin_attempts_in_flight=int(_number(t, "security.max_pin_attempts_in_flight", 2, 1, 100,
                                               integer=True)),
        pin_verify_timeout=_number(t, "security.pin_verify_timeout", 5.0, 0.5, 60),
        pin_tries_per_call=int(_number(t, "security.pin_tries_per_call", 3, 1, 10, integer=True)),
        lockout_failures=failures,
        lockout_window=_number(t, "security.lockout_window", 900.0, 1, 86400 * 30),
        lockout_duration=_number(t, "security.lockout_duration", 900.0, 1, 86400 * 30),
        enforce_spy_group=_get(t, "security.enforce_spy_group", bool, True),
        notice=notice,
        notice_mode=notice_mode,
        pin_cost=cost,
    )


def _pepper(server: Mapping[str, Any], base: Path, source: str = "") -> bytes:
    inline = server.get("pin_pepper")
    path = server.get("pin_pepper_file")
    _check(not (inline and path), "server.pin_pepper", "give pin_pepper or pin_pepper_file, not both")
    if path is not None:
        _check(isinstance(path, str), "server.pin_pepper_file", "expected a path")
        try:
            value: bytes = (base / path).read_bytes().strip()
        except FileNotFoundError:
            # The usual first-run state: say which file and which command makes it.
            raise ConfigError(
                f"server.pin_pepper_file: {base / path} does not exist; "
                f"`fastagi-spy init --config {source or '<this config>'}` creates it"
            ) from None
        except OSError as exc:
            raise ConfigError(f"server.pin_pepper_file: cannot read {path}: {exc.strerror}") from None
    else:
        value = _nonempty(server, "server.pin_pepper").encode()
    _check(len(value) >= 16, "server.pin_pepper", "must be at least 16 bytes of secret")
    return value


# -- typed getters ---------------------------------------------------------------------------

_MISSING: Any = object()


def _get(t: Mapping[str, Any], key: str, kind: type[T], default: T = _MISSING) -> T:
    name = key.rsplit(".", 1)[-1]
    if name not in t:
        if default is _MISSING:
            raise ConfigError(f"{key}: required")
        return default
    value = t[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    result: T = value
    return result


def _nonempty(t: Mapping[str, Any], key: str) -> str:
    value = _get(t, key, str)
    _check(value.strip(), key, "must not be empty")
    _check(not any(c in value for c in "\r\n\0"), key, "must not contain CR, LF or NUL")
    return value


def _digits(t: Mapping[str, Any], key: str) -> str:
    value = _get(t, key, str)
    _check(DIGITS.match(value), key, f"expected 1-10 digits as a string, got {value!r}")
    return value


def _number(
    t: Mapping[str, Any], key: str, default: float, low: float, high: float, integer: bool = False
) -> float:
    name = key.rsplit(".", 1)[-1]
    value = t.get(name, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if integer:
        ok = ok and float(value).is_integer()
    _check(ok, key, f"expected a {'whole ' if integer else ''}number, got {value!r}")
    _check(low <= value <= high, key, f"must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _list(t: Mapping[str, Any], key: str, kind: type[T], default: list[T]) -> list[T]:
    name = key.rsplit(".", 1)[-1]
    value = t.get(name, default)
    _check(isinstance(value, list), key, f"expected a list, got {type(value).__name__}")
    for i, item in enumerate(value):
        _check((isinstance(item, kind) and not isinstance(item, bool)) or kind is bool,
               f"{key}[{i}]", f"expected {kind.__name__}, got {item!r}")
    return list(value)


def _devices(t: Mapping[str, Any], key: str) -> tuple[str, ...]:
    return _strings(
        t, key + "devices", DEVICE.match, "expected a device such as 'PJSIP/1001', got {!r}")


def _table(t: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = t.get(key, {})
    _check(isinstance(value, dict), key, "expected a table")
    return value  # type: ignore[no-any-return]


def _tables(t: Mapping[str, Any], key: str, required: bool = False) -> list[Mapping[str, Any]]:
    value = t.get(key, [])
    _check(isinstance(value, list) and all(isinstance(v, dict) for v in value), key,
           f"expected an array of tables ([[{key}]])")
    _check(value or not required, key, f"at least one [[{key}]] is required")
    return list(value)


def _only(t: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
    for name in t:
        _check(name in allowed, f"{prefix}{name}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _unique(values: list[str], key: str) -> None:
    seen: set[str] = set()
    for value in values:
        _check(value not in seen, key, f"duplicate {value!r}")
        seen.add(value)


def _endpoint(t: Mapping[str, Any], key: str, default: str) -> str:
    value = _get(t, key, str, default)
    try:
        # Parsing only: the endpoint keeps the reactor reference without using it.
        serverFromString(None, value)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{key}: not a Twisted endpoint such as {default!r}: {exc}") from None
    return value


def _check(ok: object, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {problem}")

