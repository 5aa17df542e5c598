"""The SSRF guard of endpoints (roost.endpoints.addresses): with endpoints_allow_private off (the
default), a URL whose host is, or resolves to, an address that is not public is refused before
anything is sent, and the refusal is not retried."""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from websockets.asyncio.client import connect

from roost.app import Roost
from roost.endpoints.addresses import checked_address, is_public
from roost.errors import Forbidden, InvalidInput

from conftest import bearer
from endpoint_target import (
    ENDPOINTS,
    create_endpoint,
    events_url,
    receive,
    running_target,
    subscribe,
)

REFUSED = [
    "127.0.0.1",
    "127.1.2.3",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space
    "0.0.0.0",
    "0.1.2.3",
    "192.0.0.8",  # IETF protocol assignments
    "192.0.0.170",
    "192.0.2.1",  # documentation
    "192.88.99.1",  # deprecated 6to4 relay anycast
    "198.18.0.1",  # benchmarking
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "::127.0.0.1",  # IPv4-compatible
    "::10.0.0.1",
    "::8.8.8.8",  # IPv4-compatible is deprecated: refused whatever it carries
    "fe80::1",
    "fec0::1",  # site-local
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "ff0e::1",
    "100::1",  # discard-only
    "2001:db8::1",  # documentation
    "3fff::1",
    "5f00::1",  # SRv6
    "2001:2::1",  # benchmarking
    "2001:10::1",  # ORCHID
    "4000::1",  # outside global unicast
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:0:127.0.0.1",  # IPv4-translated (SIIT)
    "::ffff:0:a00:1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",
    "64:ff9b:1::808:808",  # local-use NAT64: refused whatever it carries
    "2001:0:808:808::80ff:fefe",  # Teredo, client 127.0.1.1 (inverted)
    "2001:0:a00:1::f7f7:f7f7",  # Teredo, server 10.0.0.1
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "192.0.0.9",  # port control protocol anycast, inside 192.0.0.0/24
    "192.0.0.10",
    "192.31.196.1",  # AS112
    "100.63.255.255",
    "100.128.0.1",
    "172.32.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
    "2001:4:112::1",  # AS112-v6, inside 2001::/23
    "2001:1::1",
    "2001:20::1",
    "3fff:1000::1",  # past 3fff::/20
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:808:808::f7f7:f7f7",  # Teredo: server 8.8.8.8, client 8.8.8.8
]


@pytest.mark.parametrize("address", REFUSED)
def test_addresses_that_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


async def test_a_name_is_checked_by_what_it_resolves_to() -> None:
    with pytest.raises(Forbidden, match="not public") as refused:
        await checked_address("localhost", 80, allow_private=False)
    said = refused.value.message
    assert "127.0.0.1" not in said and "::1" not in said  # the address found is not told
    with pytest.raises(Forbidden):
        await checked_address("2130706433", 80, allow_private=False)  # 127.0.0.1 as a number
    assert await checked_address("localhost", 80, allow_private=True) in ("127.0.0.1", "::1")
    assert await checked_address("8.8.8.8", 80, allow_private=False) == "8.8.8.8"
    for name in ("a..b", "a" * 64 + ".com"):  # labels IDNA cannot encode: refused, not retried
        with pytest.raises(InvalidInput, match="not a valid host name"):
            await checked_address(name, 80, allow_private=True)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.0.0.7", "169.254.169.254", "[::1]", "localhost", "[::ffff:127.0.0.1]"],
)
async def test_calls_to_private_addresses_are_refused_and_not_sent(
    host: str, server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    async with running_target() as target, connect(events_url(server, admin_token)) as ws:
        await subscribe(ws, {"event": "endpoint_call_response"})
        await create_endpoint(http, admin_token, "inside", {"url": f"http://{host}:{target.port}/"})
        called = await http.post(f"{ENDPOINTS}/inside/call", json={"a": 1}, headers=auth)
        assert called.status_code == 502
        said = called.json()["error"]["message"]
        assert "not public" in said
        event = await receive(ws)
        assert (event["status"], event["attempts"]) == (None, 1)
        assert "endpoints_allow_private" in event["error"]
        if host == "localhost":  # what the name resolves to is not told
            assert all(a not in said + event["error"] for a in ("127.0.0.1", "::1"))
        assert target.received.empty()


async def test_a_placeholder_cannot_change_the_host(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """A value filled into a URL is percent-encoded: it cannot end the host or add one."""
    async with running_target() as target:
        url = "http://{{host}}:" + str(target.port) + "/"
        await create_endpoint(http, admin_token, "hosted", {"url": url})
        auth = bearer(admin_token)
        for host in ("127.0.0.1", "8.8.8.8@127.0.0.1", "x/@127.0.0.1"):
            called = await http.post(f"{ENDPOINTS}/hosted/call", json={"host": host}, headers=auth)
            assert called.status_code in (400, 502), host
        assert target.received.empty()
