"""The bus contract (bus_contract.py) against the NATS bus, one node on a real nats-server:
everything the node asks goes over NATS, its own devices' requests aside."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from ports import free_port

from roost.bus.nats import nats_bus
from roost.config import load_settings
from roost.errors import ConfigError
from roost.wiring import BusFactory, build_services

from bus_contract import *  # noqa: F403
from conftest import make_settings
from nats_server import NatsServer, nats_server  # noqa: F401


@pytest.fixture
def bus_factory(nats_server: NatsServer) -> BusFactory:  # noqa: F811
    return partial(nats_bus, url=nats_server.url)


def test_the_nats_url_setting_takes_nats_urls_only(tmp_path: Path) -> None:
    assert load_settings(env={"ROOST_NATS_URL": "nats://127.0.0.1:4222"}).nats_url
    both = "nats://a:4222, tls://b:4222"
    assert load_settings(env={"ROOST_NATS_URL": both}).nats_url == both
    assert load_settings(env={"ROOST_NATS_URL": ""}).nats_url is None
    with pytest.raises(ConfigError, match="nats_url"):
        load_settings(env={"ROOST_NATS_URL": "http://127.0.0.1:4222"})
    secret = "nats://user:hunter2@127.0.0.1:4222"
    assert "hunter2" not in repr(load_settings(env={"ROOST_NATS_URL": secret}))


async def test_a_node_that_cannot_reach_nats_does_not_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", nats_url=f"nats://127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="cannot connect"):
        await build_services(settings)
