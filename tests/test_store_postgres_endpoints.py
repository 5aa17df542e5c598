"""PostgresStore: the endpoint part of the Store contract."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.store.postgres import PostgresStore

if str(Path(__file__).parent) not in sys.path:  # the contract module sits next to this one
    sys.path.insert(0, str(Path(__file__).parent))

from endpoint_store_contract import *  # noqa: F403


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(postgres_url)
    await opened.open()
    yield opened
    await opened.close()
