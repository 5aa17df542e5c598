"""Settings layering: defaults < file < env < flags; unknown keys and bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.config import Settings, load_settings, make_settings
from roost.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert (settings.host, settings.http_port, settings.device_port) == ("127.0.0.1", 8080, 25200)
    assert settings.data_dir == Path("roost-data")


def test_layers_in_order(tmp_path: Path) -> None:
    file = tmp_path / "roost.toml"
    file.write_text('http_port = 9000\ndevice_port = 9001\nhost = "0.0.0.0"\n')
    env = {"ROOST_DEVICE_PORT": "9101", "ROOST_HOST": "::1", "UNRELATED": "x"}
    settings = load_settings(file=file, env=env, flags={"host": "127.0.0.2", "http_port": None})
    assert settings.http_port == 9000  # file
    assert settings.device_port == 9101  # env beats file
    assert settings.host == "127.0.0.2"  # flag beats env


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "roost.toml"
    file.write_text("htp_port = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'htp_port'"):
        load_settings(file=file)


def test_bad_file_is_named(tmp_path: Path) -> None:
    file = tmp_path / "roost.toml"
    file.write_text("http_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(file=file)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(file=tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ROOST_HTTP_PORT": "http"}, "'http_port': 'http'"),
        ({"ROOST_HTTP_PORT": "-1"}, "'http_port': '-1'"),
        ({"ROOST_AUTH_TIMEOUT": "0"}, "'auth_timeout': '0'"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_secret_values_are_not_echoed() -> None:
    settings = make_settings({"admin_password": "s3cret"})
    assert settings.admin_password == "s3cret"
    assert "s3cret" not in repr(settings)


def test_log_level_is_checked() -> None:
    assert load_settings(env={"ROOST_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="'log_level': 'verbose'"):
        load_settings(env={"ROOST_LOG_LEVEL": "verbose"})
