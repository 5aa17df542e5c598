"""One user cannot fill the endpoint queue: past endpoints_queue_per_user calls queued or under
way, that user's next call is refused at once, while another user's call still gets in."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from roost.app import Roost
from roost.auth.passwords import hash_password
from roost.config import Settings
from roost.store.base import User

from conftest import bearer, make_settings
from endpoint_target import ENDPOINTS, create_endpoint, running_target


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "data",
        endpoints_allow_private=True,
        endpoints_workers=1,
        endpoints_queue=10,
        endpoints_queue_per_user=2,
    )


async def test_a_user_past_their_share_is_refused_and_others_get_in(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    assert server.services is not None
    bob = User("bob", hash_password("bob-password1"), "user", int(time.time() * 1000))
    await server.services.store.create_user(bob)
    login = {"grant_type": "password", "username": "bob", "password": "bob-password1"}
    bob_token = (await http.post("/oauth/token", data=login)).json()["access_token"]
    async with running_target() as target:
        target.gate.clear()
        await create_endpoint(http, admin_token, "slow", {"url": target.url})
        bobs = {"endpoint": "mine", "type": "http_request", "config": {"url": target.url}}
        made = await http.post("/v1/users/bob/endpoints", json=bobs, headers=bearer(bob_token))
        assert made.status_code == 200
        url, auth = f"{ENDPOINTS}/slow/call", bearer(admin_token)
        first = asyncio.create_task(http.post(url, headers=auth))
        await target.received.get()  # under way, held by the target
        second = asyncio.create_task(http.post(url, headers=auth))
        third = asyncio.create_task(http.post(url, headers=auth))
        done, waiting = await asyncio.wait([second, third], return_when=asyncio.FIRST_COMPLETED)
        refused = done.pop().result()  # one gets the user's second place, the other is refused
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "endpoints_queue_per_user" in refused.json()["error"]["message"]
        bobs_call = asyncio.create_task(
            http.post("/v1/users/bob/endpoints/mine/call", headers=bearer(bob_token))
        )
        target.gate.set()
        answered = [await first, await waiting.pop(), await bobs_call]
        assert [r.status_code for r in answered] == [200, 200, 200]
        assert target.received.qsize() == 2  # the admin's second and bob's
        again = await http.post(url, headers=auth)  # the share is free again
        assert again.status_code == 200
