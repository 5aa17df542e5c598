"""The bus contract (bus_contract.py) against the in-process bus."""

from __future__ import annotations

import pytest

from roost.wiring import BusFactory, local_bus

from bus_contract import *  # noqa: F403


@pytest.fixture
def bus_factory() -> BusFactory:
    return local_bus
