"""Resource calls from HTTP through Roost to a real device (the SDK over a real socket)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from roost.app import Roost
from roost.device import Device
from roost.wire import legacy
from roost.wire.legacy import Message, Signal

from conftest import ADMIN, DeviceFactory, bearer, create_device, sdk_device, wait_offline

BASE = f"/v2/users/{ADMIN}/devices/dev1"


class Thing:
    """The device of the captured session (protocol.md 9.1) plus a few extra resources."""

    def __init__(self) -> None:
        self.relay = False
        self.resets = 0

    def attach(self, device: Device) -> Device:
        device.output("temperature", lambda: 23.5)
        device.output("location", lambda: {"lat": 40.4168, "lon": -3.7038})
        device.input("relay", self._set_relay, getter=lambda: self.relay)
        device.input_output(
            "io",
            lambda value: {
                "sum": value["value1"] + value["value2"],
                "mult": value["value1"] * value["value2"],
            },
            sample={"value1": 0, "value2": 0},
        )
        device.run("reset", self._reset)
        device.input_output("echo", lambda value: value, sample=None)
        device.output("sensors/humidity", lambda: 61)
        device.output("slow", self._slow)
        return device

    def _set_relay(self, value: Any) -> None:
        self.relay = bool(value)

    def _reset(self) -> None:
        self.resets += 1

    async def _slow(self) -> int:
        await asyncio.sleep(3)
        return 1


@pytest.fixture(params=["legacy", "iotmp"])
async def thing(
    request: pytest.FixtureRequest,
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> Thing:
    """The same device over each protocol: the REST layer must not tell them apart."""
    await create_device(http, admin_token)
    thing = Thing()
    await connect_device(thing.attach(sdk_device(server, protocol=request.param)))
    return thing


async def test_read_outputs(http: httpx.AsyncClient, admin_token: str, thing: Thing) -> None:
    response = await http.get(f"{BASE}/temperature", headers=bearer(admin_token))
    assert response.status_code == 200
    assert response.json() == {"out": 23.5}
    location = await http.get(f"{BASE}/location", headers=bearer(admin_token))
    assert location.content == b'{"out":{"lat":40.4168,"lon":-3.7038}}'


async def test_write_input_then_describe(
    http: httpx.AsyncClient, admin_token: str, thing: Thing
) -> None:
    response = await http.post(f"{BASE}/relay", json={"in": True}, headers=bearer(admin_token))
    assert response.status_code == 200
    assert response.content == b""
    assert thing.relay is True
    described = await http.get(f"{BASE}/relay/api", headers=bearer(admin_token))
    assert described.json() == {"in": True}


async def test_call_input_output(http: httpx.AsyncClient, admin_token: str, thing: Thing) -> None:
    response = await http.post(
        f"{BASE}/io", json={"in": {"value1": 3, "value2": 4}}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    assert response.json() == {"out": {"sum": 7, "mult": 12}}


async def test_run_resource(http: httpx.AsyncClient, admin_token: str, thing: Thing) -> None:
    response = await http.get(f"{BASE}/reset", headers=bearer(admin_token))
    assert response.status_code == 200
    assert response.content == b""
    assert thing.resets == 1
    assert (await http.post(f"{BASE}/reset", headers=bearer(admin_token))).status_code == 200
    assert thing.resets == 2


async def test_nested_resource(http: httpx.AsyncClient, admin_token: str, thing: Thing) -> None:
    response = await http.get(f"{BASE}/sensors/humidity", headers=bearer(admin_token))
    assert response.json() == {"out": 61}


async def test_api_listing(http: httpx.AsyncClient, admin_token: str, thing: Thing) -> None:
    listing = (await http.get(f"{BASE}/api", headers=bearer(admin_token))).json()
    assert listing["temperature"] == {"al": 0, "fn": 3}
    assert listing["relay"] == {"al": 0, "fn": 2}
    assert listing["io"] == {"al": 0, "fn": 4}
    assert listing["reset"] == {"al": 0, "fn": 1}
    assert "humidity" in listing["sensors"]["/"]


async def test_json_round_trips_exactly(
    http: httpx.AsyncClient, admin_token: str, thing: Thing
) -> None:
    value = (
        b'{"z":1,"a":[0,1,2,-1,-300,2.5,0.1,-3.7038,1234567.891,{"k":"v","e":""}],'
        b'"big":1099511627776,"neg":-1099511627776,"t":true,"f":false,"n":null,'
        b'"nested":{"deep":{"deeper":[[],{}]}},"s":"h\\u00e9llo"}'
    )
    response = await http.post(
        f"{BASE}/echo",
        content=b'{"in":' + value + b"}",
        headers={**bearer(admin_token), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    expected = orjson.dumps({"out": orjson.loads(value)})
    assert response.content == expected
    out = response.json()["out"]
    assert isinstance(out["a"][7], float) and isinstance(out["z"], int)
    assert list(out) == ["z", "a", "big", "neg", "t", "f", "n", "nested", "s"]


async def test_integral_floats_travel_as_integers_like_the_cpp_encoder(
    http: httpx.AsyncClient, admin_token: str, thing: Thing
) -> None:
    # PSON (protocol.md 2.3) sends an integral float as an integer, as the official library
    # does: 3.0 reaches the device as 3. What the device sends back keeps its type.
    response = await http.post(f"{BASE}/echo", json={"in": [3.0, 2.5]}, headers=bearer(admin_token))
    assert response.content == b'{"out":[3,2.5]}'


async def test_unknown_resource_and_device_are_404(
    http: httpx.AsyncClient, admin_token: str, thing: Thing
) -> None:
    response = await http.get(f"{BASE}/nope", headers=bearer(admin_token))
    assert response.status_code == 404
    assert response.json()["error"]["message"]
    unknown = await http.get(
        f"/v2/users/{ADMIN}/devices/ghost/temperature", headers=bearer(admin_token)
    )
    assert unknown.status_code == 404
    assert "not found" in unknown.json()["error"]["message"]


async def test_offline_device_is_404(http: httpx.AsyncClient, admin_token: str) -> None:
    await create_device(http, admin_token, "sleeper")
    response = await http.get(
        f"/v2/users/{ADMIN}/devices/sleeper/temperature", headers=bearer(admin_token)
    )
    assert response.status_code == 404
    assert "not connected" in response.json()["error"]["message"]


async def test_deadline_gives_504(http: httpx.AsyncClient, admin_token: str, thing: Thing) -> None:
    started = time.monotonic()
    response = await http.get(f"{BASE}/slow", params={"timeout": 300}, headers=bearer(admin_token))
    assert response.status_code == 504
    assert "300 ms" in response.json()["error"]["message"]
    assert time.monotonic() - started < 2.5
    # the device is still usable afterwards
    assert (await http.get(f"{BASE}/temperature", headers=bearer(admin_token))).status_code == 200


@pytest.mark.parametrize("timeout", ["0", "-5", "abc", "999999999", "1.5"])
async def test_bad_timeout_is_400(
    http: httpx.AsyncClient, admin_token: str, thing: Thing, timeout: str
) -> None:
    response = await http.get(
        f"{BASE}/temperature", params={"timeout": timeout}, headers=bearer(admin_token)
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[1]",
        b'{"out": 1}',
        b'{"in": 1, "x": 2}',
        b'{"in": 340282366920938463463374607431768211456}',
    ],
)
async def test_bad_post_bodies_are_400(
    http: httpx.AsyncClient, admin_token: str, thing: Thing, body: bytes
) -> None:
    response = await http.post(
        f"{BASE}/io",
        content=body,
        headers={**bearer(admin_token), "Content-Type": "application/json"},
    )
    assert response.status_code == 400


async def test_oversized_body_is_413(
    http: httpx.AsyncClient, admin_token: str, thing: Thing
) -> None:
    big = b'{"in": "' + b"x" * (2 << 20) + b'"}'
    response = await http.post(
        f"{BASE}/echo",
        content=big,
        headers={**bearer(admin_token), "Content-Type": "application/json"},
    )
    assert response.status_code == 413


async def test_other_users_devices_are_forbidden(
    http: httpx.AsyncClient, server: Roost, thing: Thing
) -> None:
    assert server.services is not None
    stranger = server.services.signer.access_token("mallory", int(time.time()))
    response = await http.get(f"{BASE}/temperature", headers=bearer(stranger))
    assert response.status_code == 403


async def test_disconnect_mid_call_fails_at_once(
    http: httpx.AsyncClient, admin_token: str, server: Roost
) -> None:
    """A raw device that authenticates, receives the call and hangs up without answering."""
    await create_device(http, admin_token, "flaky")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.device_port)
    writer.write(legacy.encode(Message(signal=Signal.AUTH, resource=[ADMIN, "flaky", "secret1"])))
    decoder = legacy.Decoder()
    assert decoder.feed(await reader.read(100)) == [Message(signal=Signal.REQUEST_OK)]

    async def hang_up_on_request() -> None:
        frames: list[legacy.Frame] = []
        while not frames:
            frames = decoder.feed(await reader.read(100))
        writer.close()

    hang_up = asyncio.create_task(hang_up_on_request())
    started = time.monotonic()
    response = await http.get(
        f"/v2/users/{ADMIN}/devices/flaky/value",
        params={"timeout": 20000},
        headers=bearer(admin_token),
    )
    await hang_up
    assert response.status_code == 404
    assert "disconnected" in response.json()["error"]["message"]
    assert time.monotonic() - started < 5


async def test_device_tokens_limit_access(
    http: httpx.AsyncClient, admin_token: str, thing: Thing
) -> None:
    tokens_url = f"/v1/users/{ADMIN}/devices/dev1/tokens"
    created = await http.post(
        tokens_url,
        json={"token_name": "temperature only", "token_resources": ["temperature"]},
        headers=bearer(admin_token),
    )
    assert created.status_code == 200
    body = created.json()
    assert body["name"] == "temperature only"
    claims = __import__("jwt").decode(body["token"], options={"verify_signature": False})
    assert claims["usr"] == ADMIN and claims["dev"] == "dev1" and claims["res"] == ["temperature"]
    assert claims["jti"] == body["id"] and "exp" not in claims
    device_token = body["token"]

    ok = await http.get(f"{BASE}/temperature", headers=bearer(device_token))
    assert ok.json() == {"out": 23.5}
    assert (await http.get(f"{BASE}/location", headers=bearer(device_token))).status_code == 403
    assert (
        await http.get(f"/v1/users/{ADMIN}/devices", headers=bearer(device_token))
    ).status_code == 403
    assert (
        await http.get(f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(device_token))
    ).status_code == 403

    listed = (await http.get(tokens_url, headers=bearer(admin_token))).json()
    assert [(t["id"], t["token"]) for t in listed] == [(body["id"], device_token)]

    deleted = await http.delete(f"{tokens_url}/{body['id']}", headers=bearer(admin_token))
    assert deleted.status_code == 200
    assert (await http.get(f"{BASE}/temperature", headers=bearer(device_token))).status_code == 401
    again = await http.delete(f"{tokens_url}/{body['id']}", headers=bearer(admin_token))
    assert again.status_code == 404


async def test_unrestricted_and_expiring_device_tokens(
    http: httpx.AsyncClient, admin_token: str, thing: Thing
) -> None:
    tokens_url = f"/v1/users/{ADMIN}/devices/dev1/tokens"
    full = (
        await http.post(tokens_url, json={"token_name": "all"}, headers=bearer(admin_token))
    ).json()
    assert (await http.get(f"{BASE}/location", headers=bearer(full["token"]))).status_code == 200
    assert (await http.get(f"{BASE}/api", headers=bearer(full["token"]))).status_code == 200

    expires = int(time.time() * 1000) + 1500
    short = (
        await http.post(
            tokens_url,
            json={"token_name": "short", "token_expiration": expires},
            headers=bearer(admin_token),
        )
    ).json()
    assert short["expiration"] == expires
    assert (
        await http.get(f"{BASE}/temperature", headers=bearer(short["token"]))
    ).status_code == 200
    await asyncio.sleep(2.1)
    response = await http.get(f"{BASE}/temperature", headers=bearer(short["token"]))
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "token expired"}}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"token_name": ""},
        {"token_name": 5},
        {"token_name": "x", "token_resources": "temp"},
        {"token_name": "x", "token_resources": [1]},
        {"token_name": "x", "token_expiration": 5},
        {"token_name": "x", "token_expiration": "soon"},
    ],
)
async def test_bad_device_token_bodies(
    http: httpx.AsyncClient, admin_token: str, body: dict[str, Any]
) -> None:
    await create_device(http, admin_token)
    response = await http.post(
        f"/v1/users/{ADMIN}/devices/dev1/tokens", json=body, headers=bearer(admin_token)
    )
    assert response.status_code == 400


async def test_device_token_for_missing_device_is_404(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    response = await http.post(
        f"/v1/users/{ADMIN}/devices/ghost/tokens",
        json={"token_name": "x"},
        headers=bearer(admin_token),
    )
    assert response.status_code == 404


async def test_reconnected_device_answers_again(
    http: httpx.AsyncClient, admin_token: str, server: Roost, thing: Thing
) -> None:
    assert server.services is not None
    session = server.services.registry.sessions()[0]
    session.link.close("test: drop the device")
    await wait_offline(http, admin_token, "dev1")

    async def answers() -> bool:
        response = await http.get(f"{BASE}/temperature", headers=bearer(admin_token))
        return response.status_code == 200

    from conftest import wait_for

    await wait_for(answers)


async def test_values_orjson_cannot_write_still_answer(
    http: httpx.AsyncClient, admin_token: str, server: Roost, connect_device: DeviceFactory
) -> None:
    # PSON carries integers down to -(2**64-1); JSON has no limit. Nothing a device sends is a 500.
    await create_device(http, admin_token, "wide")
    device = sdk_device(server, "wide")
    device.output("neg", lambda: -(2**64) + 1)
    device.output("text", lambda: {"t": "caf\u00e9", "n": -(2**63) - 1})
    await connect_device(device)
    response = await http.get(f"/v2/users/{ADMIN}/devices/wide/neg", headers=bearer(admin_token))
    assert response.status_code == 200
    assert response.content == b'{"out":-18446744073709551615}'
    mixed = await http.get(f"/v2/users/{ADMIN}/devices/wide/text", headers=bearer(admin_token))
    assert mixed.json() == {"out": {"t": "caf\u00e9", "n": -(2**63) - 1}}
