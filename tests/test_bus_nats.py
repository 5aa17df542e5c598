"""The bus contract (bus_contract.py) against the NATS bus, one node on a real nats-server:
everything the node asks goes over NATS, its own devices' requests aside."""

from __future__ import annotations

from functools import partial

import pytest

from roost.app import BusFactory
from roost.bus.nats import nats_bus

from bus_contract import *  # noqa: F403
from nats_server import NatsServer, nats_server  # noqa: F401


@pytest.fixture
def bus_factory(nats_server: NatsServer) -> BusFactory:  # noqa: F811
    return partial(nats_bus, url=nats_server.url)
