"""Settings: one frozen tree built from defaults < TOML file < ROOST_* env < CLI flags.

Every setting has one name; the env var is ``ROOST_`` + the name upper-cased, the CLI flag is
``--`` + the name with dashes, the file key is the name itself. Unknown keys are rejected and every
error names the key and the value it could not use.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from roost.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("roost-data")
    host: str = "127.0.0.1"
    http_port: int = 8080
    device_port: int = 25200
    admin_user: str = "admin"
    admin_password: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    # device sessions
    auth_timeout: float = 5.0  # seconds a new connection has to authenticate
    keepalive_timeout: float = 150.0  # seconds of silence before a device is dropped
    max_frame_bytes: int = 65536  # largest device frame accepted
    max_pson_depth: int = 32
    outbox_limit_bytes: int = 1 << 20  # unsent bytes to one device before it is dropped
    # resource calls
    call_timeout_ms: int = 10_000  # default deadline of a resource call
    max_call_timeout_ms: int = 120_000  # cap on ?timeout=
    # HTTP
    max_body_bytes: int = 1 << 20
    sse_keepalive: float = 15.0  # seconds between SSE keep-alive comments
    sse_min_interval: float = 0.25  # at most 4 stats events per second per stream


SECRET_SETTINGS = frozenset({"admin_password"})


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
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError
            value: Any = int(raw)
            if value < 0:
                raise ValueError
            return value
        if kind == "float":
            value = float(raw)
            if not value > 0:
                raise ValueError
            return value
        if kind == "str | None":
            return None if raw is None else str(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {key!r}: {shown} is not a valid {kind}") from None
