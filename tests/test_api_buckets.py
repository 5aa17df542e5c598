"""Data buckets over real HTTP: settings, writes, reads and paging (thinger-api.md 2.10)."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import ADMIN, bearer

BUCKETS = f"/v1/users/{ADMIN}/buckets"
T0 = 1_700_000_000_000


async def _create(http: httpx.AsyncClient, token: str, bucket: str = "temp", **fields: Any) -> Any:
    body = {"bucket": bucket, "name": f"{bucket} log", "enabled": True, **fields}
    body.setdefault("config", {"source": "api"})
    response = await http.post(BUCKETS, json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


async def test_bucket_settings_round_trip(http: httpx.AsyncClient, admin_token: str) -> None:
    auth = bearer(admin_token)
    made = await _create(http, admin_token, retention={"period": 2, "unit": "weeks"})
    assert made["bucket"] == "temp" and made["config"] == {"source": "api"}
    assert made["retention"] == {"period": 2, "unit": "weeks"}
    assert (await http.get(f"{BUCKETS}/temp", headers=auth)).json() == made
    device_config = {"source": "device", "device": "dev1", "resource": "t", "update": "interval"}
    changed = await http.put(
        f"{BUCKETS}/temp",
        json={"name": "renamed", "config": {**device_config, "interval": 60}},
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["config"] == {**device_config, "interval": 60}
    listed = (await http.get(BUCKETS, headers=auth)).json()
    assert [(b["bucket"], b["name"]) for b in listed] == [("temp", "renamed")]
    assert (await http.delete(f"{BUCKETS}/temp", headers=auth)).status_code == 200
    assert (await http.get(f"{BUCKETS}/temp", headers=auth)).status_code == 404
    assert (await http.delete(f"{BUCKETS}/temp", headers=auth)).status_code == 404


async def test_invalid_bucket_settings_are_refused(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    await _create(http, admin_token)
    bad = [
        {"bucket": "temp", "config": {"source": "write"}},  # exists
        {"bucket": "bad id", "config": {"source": "write"}},
        {"bucket": "b2", "config": {"source": "mqtt", "topic": "a"}},
        {"bucket": "b2", "config": {"source": "device", "device": "d", "update": "events"}},
        {"bucket": "b2", "config": {"source": "device", "device": "d", "resource": "r"}},
        {"bucket": "b2", "retention": {"period": 1, "unit": "fortnights"}},
    ]
    for body in bad:
        response = await http.post(BUCKETS, json=body, headers=auth)
        assert response.status_code == 400, body
        assert response.json()["error"]["message"]
    assert [b["bucket"] for b in (await http.get(BUCKETS, headers=auth)).json()] == ["temp"]


async def test_writes_and_reads_in_both_shapes(http: httpx.AsyncClient, admin_token: str) -> None:
    auth = bearer(admin_token)
    await _create(http, admin_token)
    data = f"{BUCKETS}/temp/data"
    one = await http.post(data, json={"ts": T0, "t": 20.5}, headers=auth)
    assert one.status_code == 200, one.text
    many = [{"ts": T0 + 1, "t": 21}, {"ts": T0 + 2, "t": 22, "h": 40}]
    assert (await http.post(data, json=many, headers=auth)).status_code == 200
    # the same ts again replaces the point
    assert (await http.post(data, json={"ts": T0 + 1, "t": 99}, headers=auth)).status_code == 200
    v1 = (await http.get(data, headers=auth)).json()  # the latest first by default
    assert v1 == [
        {"ts": T0 + 2, "val": {"t": 22, "h": 40}},
        {"ts": T0 + 1, "val": {"t": 99}},
        {"ts": T0, "val": {"t": 20.5}},
    ]
    v2 = await http.get(
        f"/v2/users/{ADMIN}/buckets/temp/data",
        params={"items": 2, "sort": "asc"},
        headers=auth,
    )
    assert v2.json() == [{"ts": T0, "t": 20.5}, {"ts": T0 + 1, "t": 99}]
    latest = await http.get(data, params={"items": 1, "max_ts": 0}, headers=auth)
    assert latest.json() == [{"ts": T0 + 2, "val": {"t": 22, "h": 40}}]
    now = await http.post(data, json={"t": 1}, headers=auth)  # no ts: the time of the request
    assert now.status_code == 200
    newest = (await http.get(data, params={"items": 1}, headers=auth)).json()
    assert newest[0]["val"] == {"t": 1} and newest[0]["ts"] > T0 + 2


async def test_bad_writes_and_reads_are_refused(http: httpx.AsyncClient, admin_token: str) -> None:
    auth = bearer(admin_token)
    await _create(http, admin_token)
    data = f"{BUCKETS}/temp/data"
    bodies = (
        [],
        [1],
        {},
        [{}],
        {"ts": 1},
        {"ts": "soon"},
        {"ts": -1},
        {"ts": 1.5},
        [{"v": 1}, "x"],
    )
    for body in bodies:
        assert (await http.post(data, json=body, headers=auth)).status_code == 400, body
    for params in ({"items": 1001}, {"items": 0}, {"sort": "up"}, {"agg": "2h"}, {"min_ts": "x"}):
        assert (await http.get(data, params=params, headers=auth)).status_code == 400, params
    assert (await http.get(data, headers=auth)).json() == []  # nothing of the above landed
    missing = f"{BUCKETS}/absent/data"
    assert (await http.post(missing, json={"t": 1}, headers=auth)).status_code == 404
    assert (await http.get(missing, headers=auth)).status_code == 404
    await _create(http, admin_token, "off", enabled=False)
    off = await http.post(f"{BUCKETS}/off/data", json={"t": 1}, headers=auth)
    assert off.status_code == 400 and "disabled" in off.json()["error"]["message"]


async def _page(http: httpx.AsyncClient, token: str, sort: str) -> list[int]:
    """Every ts, read as the Node-RED and n8n clients page: at most 1000 per call, moving
    min_ts (asc) or max_ts (desc) past the last ts of a full page."""
    seen: list[int] = []
    params: dict[str, Any] = {"items": 1000, "sort": sort}
    while True:
        response = await http.get(f"{BUCKETS}/big/data", params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        page = [point["ts"] for point in response.json()]
        seen += page
        if len(page) < 1000:
            return seen
        if sort == "asc":
            params["min_ts"] = page[-1] + 1
        else:
            params["max_ts"] = page[-1] - 1


async def test_paging_returns_every_point_exactly_once(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    await _create(http, admin_token, "big")
    stamps = [T0 + 7 * i for i in range(3_456)]
    for start in range(0, len(stamps), 2000):
        batch = [{"ts": ts, "i": n} for n, ts in enumerate(stamps[start : start + 2000], start)]
        response = await http.post(f"{BUCKETS}/big/data", json=batch, headers=bearer(admin_token))
        assert response.status_code == 200, response.text
    assert await _page(http, admin_token, "asc") == stamps
    assert await _page(http, admin_token, "desc") == stamps[::-1]


async def test_a_token_reaches_only_the_buckets_and_actions_it_grants(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    for bucket in ("mine", "other"):
        await _create(http, admin_token, bucket)
        await http.post(f"{BUCKETS}/{bucket}/data", json={"ts": T0, "v": 1}, headers=auth)
    allow = {"Bucket": {"mine": ["ReadBucket"]}}
    made = await http.post(
        f"/v1/users/{ADMIN}/tokens", json={"token": "reader", "allow": allow}, headers=auth
    )
    reader = bearer(made.json()["access_token"])
    assert (await http.get(f"{BUCKETS}/mine/data", headers=reader)).status_code == 200
    assert (await http.get(f"{BUCKETS}/other/data", headers=reader)).status_code == 403
    write = await http.post(f"{BUCKETS}/mine/data", json={"v": 2}, headers=reader)
    assert write.status_code == 403
    assert (await http.delete(f"{BUCKETS}/mine", headers=reader)).status_code == 403
    assert (await http.get(BUCKETS, headers=reader)).status_code == 403
    assert len((await http.get(f"{BUCKETS}/mine/data", headers=auth)).json()) == 1


async def test_clearing_a_bucket_whole_or_a_time_range(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    await _create(http, admin_token)
    data = f"{BUCKETS}/temp/data"
    points = [{"ts": T0 + i, "i": i} for i in range(10)]
    assert (await http.post(data, json=points, headers=auth)).status_code == 200
    allow = {"Bucket": {"temp": ["ReadBucket", "ClearBucket"]}}
    made = await http.post(
        f"/v1/users/{ADMIN}/tokens", json={"token": "clearer", "allow": allow}, headers=auth
    )
    clearer = bearer(made.json()["access_token"])
    reader = await http.post(
        f"/v1/users/{ADMIN}/tokens",
        json={"token": "reader", "allow": {"Bucket": {"temp": ["ReadBucket"]}}},
        headers=auth,
    )
    refused = await http.delete(data, headers=bearer(reader.json()["access_token"]))
    assert refused.status_code == 403
    ranged = await http.delete(data, params={"min_ts": T0 + 2, "max_ts": T0 + 4}, headers=clearer)
    assert ranged.json() == {"deleted": 3}
    left = (await http.get(data, params={"sort": "asc"}, headers=clearer)).json()
    assert [p["val"]["i"] for p in left] == [0, 1, 5, 6, 7, 8, 9]
    assert (await http.delete(data, params={"min_ts": "x"}, headers=clearer)).status_code == 400
    assert (await http.delete(data, headers=clearer)).json() == {"deleted": 7}
    assert (await http.get(data, headers=auth)).json() == []
    assert (await http.get(f"{BUCKETS}/temp", headers=auth)).status_code == 200  # still there
    assert (await http.delete(f"{BUCKETS}/absent/data", headers=auth)).status_code == 404


async def test_the_bucket_list_pages_as_the_clients_do(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    for n in range(5):
        await _create(http, admin_token, f"b{n}")
    auth = bearer(admin_token)
    page = await http.get(BUCKETS, params={"count": 2, "index": 2}, headers=auth)
    assert [b["bucket"] for b in page.json()] == ["b2", "b3"]
    named = await http.get(BUCKETS, params={"name": "B4"}, headers=auth)
    assert [b["bucket"] for b in named.json()] == ["b4"]
    assert (await http.get(BUCKETS, params={"count": -1}, headers=auth)).status_code == 400


async def test_untimed_points_of_one_request_are_all_kept(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    await _create(http, admin_token)
    data = f"{BUCKETS}/temp/data"
    many = [{"n": n} for n in range(5)]
    assert (await http.post(data, json=many, headers=bearer(admin_token))).status_code == 200
    got = await http.get(data, params={"sort": "asc"}, headers=bearer(admin_token))
    assert [p["val"] for p in got.json()] == many
