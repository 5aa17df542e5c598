"""Settings: one frozen tree built from defaults < TOML file < ROOST_* env < CLI flags.

Every setting has one name; the env var is ``ROOST_`` + the name upper-cased, the CLI flag is
``--`` + the name with dashes, the file key is the name itself. Unknown keys are rejected and every
error names the key and the value it could not use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from roost import ids
from roost.errors import ConfigError, InvalidInput


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("roost-data")
    # postgresql://user:password@host/db: the shared PostgreSQL store (several nodes); "": SQLite
    database_url: str = field(default="", repr=False)
    host: str = "127.0.0.1"
    http_port: int = 8080
    device_port: int = 25200
    iotmp_port: int = 25204
    # TLS: with a certificate and key (or tls_self_signed), these ports listen too
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False  # make (once) and use a self-signed pair in the data dir
    https_port: int = 8443
    device_tls_port: int = 25202
    iotmp_tls_port: int = 25206
    admin_user: str = "admin"
    admin_password: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    # device sessions
    auth_timeout: float = 5.0  # seconds a new connection has to authenticate
    keepalive_timeout: float = 150.0  # seconds of silence before a device is dropped
    max_frame_bytes: int = 65536  # largest device frame accepted
    max_pson_depth: int = 32
    outbox_limit_bytes: int = 1 << 20  # unsent bytes to one device before it is dropped
    max_device_properties: int = 256  # properties one device may hold (roost.devices.properties)
    # bucket exports (roost.buckets.exports)
    max_exports_running: int = 2  # exports written at once; more wait their turn
    max_exports_per_user: int = 4  # exports one user may have running or waiting
    max_exports_per_bucket: int = 50  # export files one bucket may keep
    max_unauthenticated: int = 1000  # connections still authenticating (roost.devices.admission)
    max_unauthenticated_per_address: int = 100  # the same, from one address (IPv6: its /64)
    # what one device may take of the event loop (roost.net.flow)
    device_frame_rate: int = 1000  # frames/s a device may send unasked; faster, it is read slower
    device_flood_seconds: float = 10.0  # seconds over that rate, without a break, before a close
    # resource calls
    call_timeout_ms: int = 10_000  # default deadline of a resource call
    max_call_timeout_ms: int = 120_000  # cap on ?timeout=
    binary_call_timeout_ms: int = 60_000  # default deadline of octet-stream calls (OTA chunks)
    device_calls_in_flight: int = 64  # device-to-device calls one device may have waiting
    stream_outbox_frames: int = 256  # frames queued per web client before the oldest drop
    max_stream_subscriptions: int = 64  # resources (or events) one WebSocket may watch at once
    stream_recheck_interval: float = 2.0  # seconds between re-checks of an open stream's access
    # HTTP
    public_host: str | None = None  # host[:port] put in token claims (svr); None: host:http_port
    max_body_bytes: int = 1 << 20
    sse_keepalive: float = 15.0  # seconds between SSE keep-alive comments
    sse_min_interval: float = 0.25  # at most 4 stats events per second per stream
    metrics_public: bool = False  # GET /metrics without a token (roost.metrics)
    # HTTP connections that have not sent a whole request yet (roost.net.http_admission)
    http_header_timeout: float = 10.0  # seconds to send a request head, from connect or last answer
    http_max_pending: int = 1000  # in all (and at most a quarter of the descriptors); 0: that only
    http_max_pending_per_address: int = 100  # from one address (IPv6: its /64); 0: no limit
    # proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or networks)
    trusted_proxies: tuple[str, ...] = ()
    # brute force: failed attempts allowed per auth_failure_window seconds (0 = no limit)
    auth_failure_window: float = 60.0
    login_failures_per_user: int = 10  # wrong passwords for one user name
    login_failures_per_address: int = 30  # wrong passwords from one address (IPv6: its /64)
    device_auth_failures_per_address: int = 60  # failed device authentications from one address
    # data buckets
    bucket_retention_interval: float = 600.0  # seconds between passes deleting expired points
    # endpoints (roost.endpoints): outgoing calls users define
    endpoints_allow_private: bool = False  # may endpoints call loopback, private, ... addresses
    endpoints_queue: int = 1000  # calls waiting for a worker; more are refused (503)
    endpoints_queue_per_user: int = 100  # calls of one user queued or under way; 0: no own limit
    endpoints_workers: int = 8  # calls delivered at once
    endpoints_timeout: float = 10.0  # seconds of one attempt
    endpoints_retries: int = 2  # more attempts after a failure to connect, a timeout or a 5xx
    endpoints_retry_delay: float = 1.0  # seconds before the first retry, doubled for each next
    endpoints_response_bytes: int = 65536  # of a target's answer kept (event, REST answer)
    # several nodes (roost.bus.nats): the NATS server(s) they share; None: this process alone
    nats_url: str | None = field(default=None, repr=False)  # may hold a user and password
    # processes of `roost serve` on this host sharing its ports (roost.workers); >1 needs nats_url
    workers: int = 1
    drain_timeout: float = 10.0  # seconds a stopping node gives the calls it accepted


SECRET_SETTINGS = frozenset({"admin_password", "database_url", "nats_url"})
NATS_SCHEMES = ("nats", "tls", "ws", "wss")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# What each setting is for, in one line: `roost --help` shows it beside the flag, with the
# default, and the README's settings table says the same (tests/test_cli.py holds them equal).
SETTING_HELP: dict[str, str] = {
    "data_dir": "directory of the database and the key files",
    "database_url": "postgresql://user:password@host/database: keep everything in PostgreSQL, "
    "shared by several nodes (roost migrate-to-postgres copies a data dir there); "
    "none: SQLite under the data dir",
    "host": "address every listener binds",
    "http_port": "port of the REST API",
    "device_port": "port of the legacy Thinger device protocol",
    "iotmp_port": "port of the IOTMP device protocol",
    "tls_cert": "PEM certificate file; with tls_key, the TLS ports below listen too "
    "(TLS 1.2+, ECDHE with AES-GCM or ChaCha20 only)",
    "tls_key": "PEM private key file of tls_cert",
    "tls_self_signed": "make (once, in <data dir>/tls/) and use a self-signed pair, "
    "for trying TLS out",
    "https_port": "port of the REST API over TLS",
    "device_tls_port": "port of the legacy device protocol over TLS",
    "iotmp_tls_port": "port of the IOTMP device protocol over TLS",
    "admin_user": "name of the first admin, created on an empty store only",
    "admin_password": "password of the first admin, 6 to 72 characters",
    "log_level": "one of " + ", ".join(LOG_LEVELS),
    "auth_timeout": "seconds a device connection has to authenticate, from its TCP connect (on "
    "the TLS ports, the handshake included)",
    "keepalive_timeout": "seconds of device silence before it is dropped "
    "(devices send a keep-alive every 60 s)",
    "max_frame_bytes": "largest device frame; larger ones close the connection",
    "max_pson_depth": "deepest nesting accepted in a device value",
    "outbox_limit_bytes": "unsent bytes to a device before it is dropped as not reading",
    "max_device_properties": "properties one device may hold, created through the API or by the "
    "device; one more is refused (0: none)",
    "max_exports_running": "bucket exports written at once; more wait their turn (0 counts as 1)",
    "max_exports_per_user": "bucket exports one user may have running or waiting; one more is "
    "refused (0: no exports)",
    "max_exports_per_bucket": "export files one bucket may keep; one more export is refused "
    "until some are deleted (0: no exports)",
    "max_unauthenticated": "device connections still authenticating, from their TCP connect "
    "(each may send at most 4 KiB before it is in; at most a quarter of the open-file limit; "
    "0: that only); when all places are taken, a new connection takes the place of the oldest "
    "(those that sent nothing first) of the address holding the most, if that is more than its "
    "own address holds; otherwise it is closed at once",
    "max_unauthenticated_per_address": "device connections still authenticating from one "
    "address (IPv6: its /64)",
    "device_frame_rate": "frames per second a device may send unasked (stream data, keep-alives: "
    "all but replies), a second's worth at once; past it, its connection is read no faster "
    "(0: no limit)",
    "device_flood_seconds": "seconds a device may keep sending over device_frame_rate, "
    "without a break, before it is disconnected",
    "call_timeout_ms": "default deadline of a resource call",
    "max_call_timeout_ms": "largest ?timeout= accepted",
    "binary_call_timeout_ms": "default deadline of application/octet-stream calls (OTA chunks)",
    "device_calls_in_flight": "calls of other devices one device may have waiting at once (legacy "
    "flag 9, IOTMP service 3); more are refused at once (0: none allowed)",
    "stream_outbox_frames": "frames queued for one WebSocket client before the oldest are dropped",
    "max_stream_subscriptions": "resources one WebSocket may watch at once, or events it may "
    "subscribe to; a message asking for one more gets an error frame",
    "stream_recheck_interval": "seconds between checks of an open stream's token, user and device "
    "in the store (changes made through the server end streams at once)",
    "public_host": "host (and port) clients use to reach the API; access tokens carry it as svr",
    "max_body_bytes": "largest request body (413 above)",
    "sse_keepalive": "seconds between keep-alive comments on an SSE stream",
    "sse_min_interval": "least seconds between two stats events",
    "metrics_public": "serve GET /metrics (Prometheus) to anyone, for a scraper on a private "
    "network; otherwise it needs an administrator's login session or an administrator's access "
    "token allowing ReadServerMetrics",
    "http_header_timeout": "seconds an HTTP connection has to send a whole request head, from "
    "when it opens or from its previous answer; then it is closed (408 if a head had begun)",
    "http_max_pending": "HTTP connections that have not sent a whole request; at the limit the "
    "oldest is closed to make room (at most a quarter of the open-file limit; 0: that only)",
    "http_max_pending_per_address": "the same, from one address (IPv6: its /64); a connection "
    "over it is closed at once (0: no limit)",
    "trusted_proxies": "reverse proxies (addresses or networks, comma-separated) whose "
    "X-Forwarded-For and X-Forwarded-Proto are believed; none: those headers are ignored",
    "auth_failure_window": "seconds over which the three budgets below count failures "
    "(a sliding window)",
    "login_failures_per_user": "wrong passwords for one user name before POST /oauth/token "
    "answers 429 (0: no limit)",
    "login_failures_per_address": "wrong passwords from one address (IPv6: its /64) before 429 "
    "(0: no limit)",
    "device_auth_failures_per_address": "failed device authentications from one address before "
    "it is refused without a check (0: no limit)",
    "bucket_retention_interval": "seconds between two passes deleting the points older than "
    "their bucket's retention (the first pass at start-up)",
    "endpoints_allow_private": "let endpoints call addresses that are not public (loopback, "
    "private, link-local, unique-local ...), checked after name resolution: for tests and home "
    "networks",
    "endpoints_queue": "endpoint calls waiting for a worker (at least 1); one more is refused "
    "with 503",
    "endpoints_queue_per_user": "endpoint calls of one user waiting, waiting a retry or under "
    "way; one more is refused with 503, so that one user cannot fill the queue (0: "
    "endpoints_queue only)",
    "endpoints_workers": "endpoint calls delivered at once (at least 1); one user's calls get at "
    "most a quarter of them (at least 1), users in turn",
    "endpoints_timeout": "seconds one attempt of an endpoint call may take (name resolution, "
    "connection and answer)",
    "endpoints_retries": "attempts made again after a connection failure, a timeout or a 5xx "
    "answer (never after another answer, nor after a host name lookup that timed out)",
    "endpoints_retry_delay": "seconds before the first retry of an endpoint call, doubled before "
    "each next one (the call waits without holding a worker)",
    "endpoints_response_bytes": "bytes of a target's answer kept for the caller and the "
    "endpoint_call_response event; the rest is not read",
    "nats_url": "NATS server(s) shared by several Roost nodes (nats://host:4222, comma-separated "
    "for a cluster): devices on any node answer calls from every node; none: this process alone",
    "workers": "processes serving on this host, sharing every port (SO_REUSEPORT), the bus and the "
    "database; more than 1 needs nats_url and fixed ports (not 0)",
    "drain_timeout": "seconds a stopping node (SIGTERM) gives the calls it accepted to finish "
    "before it closes its device sessions (the devices reconnect elsewhere)",
}
# Defaults that are not a plain value
_DEFAULT_WORDS = {
    "admin_password": "random, printed once",
    "database_url": "none",
    "public_host": "<host>:<http-port>",
}


def default_text(name: str) -> str:
    """The default of a setting as ``--help`` and the README show it."""
    if name in _DEFAULT_WORDS:
        return _DEFAULT_WORDS[name]
    value = getattr(Settings(), name)
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value)


def public_host(settings: Settings) -> str:
    """The host (and port) clients should use to reach the REST API, as token claims carry it."""
    if settings.public_host:
        return settings.public_host
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.http_port}"


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings)]


def env_name(name: str) -> str:
    return "ROOST_" + name.upper()


def load_settings(
    *,
    file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Layer the sources; later ones win. ``flags`` holds only the flags actually given."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(_read_file(file))
    if env is not None:
        values.update(
            {name: env[env_name(name)] for name in setting_names() if env_name(name) in env}
        )
    if flags:
        values.update({k: v for k, v in flags.items() if v is not None})
    return make_settings(values)


def make_settings(values: Mapping[str, Any]) -> Settings:
    known = {f.name: f for f in fields(Settings)}
    converted: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}")
        converted[key] = _convert(key, known[key].type, raw)
    return dataclasses.replace(Settings(), **converted)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc


def _convert(key: str, type_name: Any, raw: Any) -> Any:
    shown = "***" if key in SECRET_SETTINGS else repr(raw)
    kind = str(type_name)
    try:
        if kind == "Path":
            return Path(raw)
        if kind == "Path | None":
            return None if raw is None or raw == "" else Path(raw)
        if kind == "bool":
            return _bool(raw)
        if key == "log_level":
            return _log_level(shown, raw)
        if key == "admin_user":
            return _user_name(shown, raw)
        if key == "nats_url":
            return _nats_url(shown, raw)
        if key == "workers":
            return _worker_count(shown, raw)
        if key == "database_url":
            return _database_url(str(raw))
        if kind == "int":
            return _whole_number(key, shown, raw)
        if kind == "float":
            return _positive_number(key, shown, raw)
        if kind == "tuple[str, ...]":
            items = _items(raw)
            if key == "trusted_proxies":
                items = tuple(_address_or_network(key, item) for item in items)
            return items
        if kind == "str | None":
            return None if raw is None else str(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {key!r}: {shown} is not a valid {kind}") from None


def _database_url(url: str) -> str:
    if url and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("setting 'database_url' must be a postgresql:// URL (or empty)")
    return url


def _user_name(shown: str, raw: Any) -> str:
    try:
        return ids.validate(ids.USER, str(raw))
    except InvalidInput as exc:
        raise ConfigError(f"setting 'admin_user': {shown}: {exc.message}") from None


def _nats_url(shown: str, raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    for url in str(raw).split(","):
        scheme, sep, rest = url.strip().partition("://")
        if not sep or scheme not in NATS_SCHEMES or not rest:
            raise ConfigError(
                f"setting 'nats_url': {shown} is not a NATS URL (nats://host:port, or "
                + ", ".join(f"{s}://" for s in NATS_SCHEMES[1:])
                + ")"
            )
    return str(raw)


def _log_level(shown: str, raw: Any) -> str:
    level = str(raw).upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"setting 'log_level': {shown} is not one of {', '.join(LOG_LEVELS)}")
    return level


def _worker_count(shown: str, raw: Any) -> int:
    value = _whole_number("workers", shown, raw)
    if value < 1:
        raise ConfigError(f"setting 'workers': {shown} must be 1 or more")
    return value


def _whole_number(key: str, shown: str, raw: Any) -> int:
    """An int setting: 0 or more, and 0-65535 for a port (a name ending in ``_port``)."""
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str):
        with contextlib.suppress(ValueError):
            value = int(raw)
    if key.endswith("_port"):
        if value is None or not 0 <= value <= 65535:
            raise ConfigError(f"setting {key!r}: {shown} must be 0-65535 (a port number)")
    elif value is None or value < 0:
        raise ConfigError(f"setting {key!r}: {shown} must be a whole number, 0 or more")
    return value


def _positive_number(key: str, shown: str, raw: Any) -> float:
    try:
        value = float(raw) if not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        value = None
    if value is None or not value > 0:
        raise ConfigError(f"setting {key!r}: {shown} must be a number above 0")
    return value


def _items(raw: Any) -> tuple[str, ...]:
    """A list setting: a TOML list of strings, or one string of comma-separated items."""
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
        raise TypeError(raw)
    return tuple(item.strip() for item in raw if item.strip())


def _address_or_network(key: str, item: str) -> str:
    """An IP address or network (``10.0.0.0/8``; host bits allowed), in its canonical form."""
    try:
        if "/" in item:
            return str(ipaddress.ip_network(item, strict=False))
        return str(ipaddress.ip_address(item))
    except ValueError:
        raise ConfigError(f"setting {key!r}: {item!r} is not an IP address or network") from None


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)
