"""TLS on every port: devices of both protocols and HTTPS, self-signed or from given files."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import httpx
import pytest

from roost.app import Roost
from roost.config import Settings
from roost.device import Device
from roost.errors import ConfigError

from conftest import ADMIN, ADMIN_PASSWORD, DeviceFactory, bearer, create_device, make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", tls_self_signed=True)


def client_context(server: Roost) -> ssl.SSLContext:
    """Trust the server's self-signed certificate, as a careful client would."""
    cert = server.settings.data_dir / "tls" / "self-signed.crt"
    return ssl.create_default_context(cafile=str(cert))


async def test_https_and_tls_devices_of_both_protocols(
    server: Roost, connect_device: DeviceFactory
) -> None:
    context = client_context(server)
    async with httpx.AsyncClient(
        base_url=f"https://localhost:{server.ports['https']}", verify=context
    ) as https:
        token = (
            await https.post(
                "/oauth/token",
                data={
                    "grant_type": "password",
                    "username": ADMIN,
                    "password": ADMIN_PASSWORD,
                },
            )
        ).json()["access_token"]
        await create_device(https, token, "dev1")
        await create_device(https, token, "dev2")
        for name, protocol, port in (
            ("dev1", "legacy", server.ports["legacy_tls"]),
            ("dev2", "iotmp", server.ports["iotmp_tls"]),
        ):
            device = Device(
                user=ADMIN,
                device=name,
                credentials="secret1",
                host="localhost",
                port=port,
                protocol=protocol,
                ssl=context,
                reconnect_delay=0.2,
            )
            device.output("temperature", lambda: 21.5)
            await connect_device(device)
            response = await https.get(
                f"/v2/users/{ADMIN}/devices/{name}/temperature", headers=bearer(token)
            )
            assert response.json() == {"out": 21.5}


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_old_protocol_versions_are_refused(server: Roost) -> None:
    context = client_context(server)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _, writer = await asyncio.open_connection(
            "localhost", server.ports["legacy_tls"], ssl=context
        )
        writer.close()
    modern = client_context(server)
    _, writer = await asyncio.open_connection(
        "localhost", server.ports["legacy_tls"], ssl=modern, server_hostname="localhost"
    )
    version = writer.get_extra_info("ssl_object").version()
    assert version in ("TLSv1.2", "TLSv1.3")
    writer.close()


async def test_self_signed_pair_is_kept_private_and_reused(server: Roost) -> None:
    folder = server.settings.data_dir / "tls"
    key = folder / "self-signed.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    await server.stop()
    again = Roost(server.settings)
    await again.start()
    try:
        assert key.read_bytes() == before
    finally:
        await again.stop()
    await server.start()  # the fixture stops it again


async def test_given_files_are_used_and_bad_ones_named(tmp_path: Path) -> None:
    first = Roost(make_settings(tmp_path / "one", tls_self_signed=True))
    await first.start()
    await first.stop()
    cert = tmp_path / "one" / "tls" / "self-signed.crt"
    key = tmp_path / "one" / "tls" / "self-signed.key"
    given = Roost(make_settings(tmp_path / "two", tls_cert=cert, tls_key=key))
    await given.start()
    try:
        assert "https" in given.ports
    finally:
        await given.stop()
    with pytest.raises(ConfigError, match="cannot load TLS certificate"):
        await Roost(make_settings(tmp_path / "three", tls_cert=key, tls_key=key)).start()
    with pytest.raises(ConfigError, match="both tls_cert and tls_key"):
        await Roost(make_settings(tmp_path / "four", tls_cert=cert)).start()
