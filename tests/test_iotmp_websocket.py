"""IOTMP over WebSocket at /iotmp: the same device protocol, in WebSocket messages."""

from __future__ import annotations

import asyncio

import httpx
from websockets.asyncio.client import connect

from roost.app import Roost
from roost.wire import iotmp
from roost.wire.iotmp import KEEP_ALIVE_BYTES, Message, MessageType

from conftest import ADMIN, bearer, create_device


async def test_a_device_over_websocket_answers_rest_calls(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token)
    url = f"ws://127.0.0.1:{server.http_port}/iotmp"
    async with connect(url, subprotocols=["iotmp"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "iotmp"
        connect_frame = Message(
            MessageType.CONNECT, stream_id=7, payload=[ADMIN, "dev1", "secret1"]
        )
        await ws.send(iotmp.encode(connect_frame))
        assert await asyncio.wait_for(ws.recv(), 5) == bytes.fromhex("01 02 08 07")
        await ws.send(KEEP_ALIVE_BYTES)
        assert await asyncio.wait_for(ws.recv(), 5) == KEEP_ALIVE_BYTES

        call = asyncio.create_task(
            http.get(f"/v2/users/{ADMIN}/devices/dev1/temperature", headers=bearer(admin_token))
        )
        request = iotmp.Decoder().feed(await asyncio.wait_for(ws.recv(), 5))[0]
        assert (request.type, request.resource) == (MessageType.RUN, "temperature")
        # answer in a text frame, as the official client's WebSocket sends them
        reply = iotmp.encode(Message(MessageType.OK, stream_id=request.stream_id, payload=21))
        await ws.send(reply.decode())
        assert (await call).json() == {"out": 21}
        stats = await http.get(f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(admin_token))
        assert stats.json()["connected"] is True

    async def offline() -> bool:
        response = await http.get(
            f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(admin_token)
        )
        return response.json()["connected"] is False

    from conftest import wait_for

    await wait_for(offline)


async def test_bad_credentials_over_websocket_are_refused(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token)
    async with connect(f"ws://127.0.0.1:{server.http_port}/iotmp") as ws:
        bad = Message(MessageType.CONNECT, stream_id=9, payload=[ADMIN, "dev1", "wrong-one"])
        await ws.send(iotmp.encode(bad))
        assert await asyncio.wait_for(ws.recv(), 5) == bytes.fromhex("02 02 08 09")
        await asyncio.wait_for(ws.wait_closed(), 5)
