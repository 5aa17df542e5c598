"""Bucket exports over real HTTP and the events WebSocket (thinger-api.md 2.10): every point
round-trips through CSV, JSON and ARFF files written in the background, the bucket is read a page
at a time, and only the bucket's owner (or a token granted the export actions) reaches them."""

from __future__ import annotations

import asyncio
import csv
import datetime
import io
import json
import stat
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from roost.app import Roost
from roost.auth.passwords import hash_password
from roost.buckets import exports as exports_module
from roost.config import Settings
from roost.store.base import Bucket, User

from conftest import ADMIN, bearer, create_device, login, make_settings, wait_for

BUCKETS = f"/v1/users/{ADMIN}/buckets"
EXPORTS = f"{BUCKETS}/b1/exports"
T0 = 1_700_000_000_000
PER_BUCKET = 6  # max_exports_per_bucket in these tests


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", max_exports_per_bucket=PER_BUCKET)


def value_of(i: int) -> dict[str, Any]:
    """Point i: numbers, text that needs quoting, and fields only some points have."""
    value: dict[str, Any] = {"n": i, "half": i / 2, "s": f'say "hi";\n{i}'}
    if i % 7 == 0:
        value["seventh"] = i % 2 == 0  # a boolean, on some points only
    if i % 11 == 0:
        value["nested"] = {"a": [i, "x"]}
    return value


async def fill(http: httpx.AsyncClient, token: str, points: int, bucket: str = "b1") -> None:
    made = await http.post(BUCKETS, json={"bucket": bucket}, headers=bearer(token))
    assert made.status_code == 200, made.text
    for start in range(0, points, 5000):
        body = [
            {"ts": T0 + i * 1001, **value_of(i)} for i in range(start, min(points, start + 5000))
        ]
        wrote = await http.post(f"{BUCKETS}/{bucket}/data", json=body, headers=bearer(token))
        assert wrote.status_code == 200, wrote.text


def events_url(server: Roost, token: str) -> str:
    return f"ws://127.0.0.1:{server.http_port}/v1/users/{ADMIN}/events?authorization={token}"


async def subscribe(ws: ClientConnection, bucket: str = "b1") -> None:
    """Subscribe; return once the server has handled it (the bad message after it is answered)."""
    await ws.send(json.dumps({"event": "bucket_export_completed", "bucket": bucket}))
    await ws.send(json.dumps({"event": "(bad"}))
    assert "error" in json.loads(await asyncio.wait_for(ws.recv(), 5))


async def export(
    http: httpx.AsyncClient, ws: ClientConnection, token: str, body: dict[str, Any]
) -> tuple[dict[str, Any], bytes, httpx.Response]:
    """Start an export, wait for its event; the event, the file's bytes and the download."""
    started = await http.post(EXPORTS, json=body, headers=bearer(token))
    assert started.status_code == 200, started.text
    answer = started.json()
    assert answer["state"] == 0 and set(answer) == {"file", "state"}
    event = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert event["file"] == answer["file"]
    download = await http.get(f"{EXPORTS}/{answer['file']}", headers=bearer(token))
    assert download.status_code == 200, download.text
    return event, download.content, download


async def raw_request(server: Roost, method: str, path: str, token: str) -> tuple[int, bytes]:
    """One request with its path exactly as given; the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
    writer.write(f"{head}Connection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


def iso_ms(text: str) -> int:
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return round(moment.replace(tzinfo=datetime.UTC).timestamp() * 1000)


def csv_cell(text: str, expected: Any) -> Any:
    """A CSV cell read back as the type of the value it should hold."""
    if expected is None:
        return None if text == "" else text
    if isinstance(expected, bool):
        return {"true": True, "false": False}[text]
    if isinstance(expected, int | float):
        return type(expected)(text)
    if isinstance(expected, str):
        return text
    return json.loads(text)


async def test_csv_json_and_arff_exports_hold_every_point(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    count = 3500
    await fill(http, admin_token, count)
    expected = {T0 + i * 1001: value_of(i) for i in range(count)}
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws)
        body = {"data_type": "csv", "timestamp_format": "milliseconds", "min_ts": 0, "max_ts": 0}
        event, content, download = await export(http, ws, admin_token, body)
        file = event["file"]
        assert event == {
            "event": "bucket_export_completed",
            "user": ADMIN,
            "bucket": "b1",
            "file": file,
            "data_type": "csv",
            "timestamp_format": "milliseconds",
            "min_ts": 0,
            "max_ts": 0,
            "url": f"file://users/{ADMIN}/buckets/b1/{file}",
            "ts": event["ts"],
        }
        assert file.endswith(".csv") and file.split(".")[1:3] == [ADMIN, "b1"]
        assert download.headers["content-type"].startswith("text/csv")
        assert download.headers["content-disposition"] == f'attachment; filename="{file}"'
        rows = list(csv.reader(io.StringIO(content.decode()), delimiter=";"))
        assert rows[0] == ["half", "n", "nested", "s", "seventh", "ts"]  # sorted, as Thinger's
        assert content.startswith(b'"half";"n";"nested";"s";"seventh";"ts"\n')
        assert len(rows) == count + 1
        for row in rows[1:]:
            fields = dict(zip(rows[0], row, strict=True))
            value = expected[int(fields.pop("ts"))]
            read = {k: csv_cell(text, value.get(k)) for k, text in fields.items()}
            assert read == {k: value.get(k) for k in fields}

        event, content, download = await export(
            http, ws, admin_token, {"data_type": "json", "timestamp_format": "iso"}
        )
        assert download.headers["content-type"] == "application/json"
        listed = json.loads(content)
        assert [iso_ms(p.pop("ts")) for p in listed] == sorted(expected)
        assert listed == [expected[ts] for ts in sorted(expected)]

        _, content, download = await export(http, ws, admin_token, {"data_type": "arff"})
        lines = content.decode().split("\n")
        assert lines[0] == "@RELATION 'b1'"
        assert "@ATTRIBUTE 'n' NUMERIC" in lines and "@ATTRIBUTE 's' STRING" in lines
        data = lines[lines.index("@DATA") + 1 : -1]
        assert len(data) == count
        assert (
            data[0]
            == "'2023-11-14T22:13:20.000Z',0.0,0,'{\"a\":[0,\"x\"]}','say \"hi\";\\n0','true'"
        )
        assert data[1] == "'2023-11-14T22:13:21.001Z',0.5,1,?,'say \"hi\";\\n1',?"


async def test_min_ts_and_max_ts_bound_the_export(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await fill(http, admin_token, 50)
    low, high = T0 + 10 * 1001, T0 + 20 * 1001
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws)
        body = {"data_type": "json", "timestamp_format": "seconds", "min_ts": low, "max_ts": high}
        event, content, _ = await export(http, ws, admin_token, body)
        assert (event["min_ts"], event["max_ts"]) == (low, high)
        listed = json.loads(content)
        assert [p["n"] for p in listed] == list(range(10, 21))
        assert [p["ts"] for p in listed[:2]] == [(T0 + 10010) / 1000, (T0 + 11011) / 1000]
        body = {"data_type": "csv", "min_ts": high + 1}  # from there on, no upper bound
        _, content, _ = await export(http, ws, admin_token, body)
        rows = list(csv.reader(io.StringIO(content.decode()), delimiter=";"))
        assert [int(r[1]) for r in rows[1:]] == list(range(21, 50))
        empty = {"data_type": "json", "min_ts": T0 + 10**9}
        _, content, _ = await export(http, ws, admin_token, empty)
        assert json.loads(content) == []


async def test_list_download_and_delete(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    await fill(http, admin_token, 20)
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws)
        before = int(time.time() * 1000)
        first, content, _ = await export(http, ws, admin_token, {"data_type": "csv"})
        second, _, _ = await export(http, ws, admin_token, {"data_type": "json"})
    listed = (await http.get(EXPORTS, headers=auth)).json()
    assert [e["file"] for e in listed] == [first["file"], second["file"]]
    one = listed[0]
    assert one["status"] == "completed" and one["points"] == 20 and one["size"] == len(content)
    assert one["created"] >= before and one["completed"] >= one["created"]
    assert (one["data_type"], one["timestamp_format"], one["error"]) == ("csv", "iso", None)
    # the download URL Node-RED makes of the event's url: "exports" before the file name
    pieces = first["url"].removeprefix("file://").split("/")
    node_red = "/v1/" + "/".join([*pieces[:-1], "exports", pieces[-1]])
    assert node_red == f"{EXPORTS}/{first['file']}"
    assert (await http.get(node_red, headers=auth)).content == content
    head = await http.head(node_red, headers=auth)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(content))
    paged = await http.get(EXPORTS, params={"count": 1, "index": 1}, headers=auth)
    assert [e["file"] for e in paged.json()] == [second["file"]]
    searched = await http.get(EXPORTS, params={"name": ".JSON"}, headers=auth)
    assert [e["file"] for e in searched.json()] == [second["file"]]
    # owner-only files and dirs
    root = server.settings.data_dir / "exports"
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert (await http.delete(f"{EXPORTS}/{first['file']}", headers=auth)).status_code == 200
    assert (await http.get(f"{EXPORTS}/{first['file']}", headers=auth)).status_code == 404
    assert (await http.delete(f"{EXPORTS}/{first['file']}", headers=auth)).status_code == 404
    assert [e["file"] for e in (await http.get(EXPORTS, headers=auth)).json()] == [second["file"]]
    # deleting the bucket deletes its exports
    assert (await http.delete(f"{BUCKETS}/b1", headers=auth)).status_code == 200
    assert not (root / ADMIN / "b1").exists()
    await fill(http, admin_token, 1)
    assert (await http.get(EXPORTS, headers=auth)).json() == []
    assert (await http.get(f"{EXPORTS}/{second['file']}", headers=auth)).status_code == 404


async def test_bad_requests_are_refused_clearly(http: httpx.AsyncClient, admin_token: str) -> None:
    auth = bearer(admin_token)
    await fill(http, admin_token, 1)
    cases = [
        ({"data_type": "xml"}, "data_type must be one of csv, json, arff"),
        (
            {"timestamp_format": "unix"},
            "timestamp_format must be one of iso, seconds, milliseconds",
        ),
        ({"min_ts": -1}, "min_ts must be a whole number of ms"),
        ({"max_ts": "soon"}, "max_ts must be a whole number of ms"),
        ({"min_ts": 1.5}, "min_ts must be a whole number of ms"),
        ({"min_ts": T0 + 1, "max_ts": T0}, "min_ts must not be after max_ts"),
        ({"callback": "email", "email": "a@b.c"}, "callback is not supported"),
    ]
    for body, message in cases:
        refused = await http.post(EXPORTS, json=body, headers=auth)
        assert refused.status_code == 400, body
        assert refused.json()["error"]["message"].startswith(message), refused.json()
    assert (await http.post(EXPORTS, content=b"[]", headers=auth)).status_code == 400
    missing = await http.post(f"{BUCKETS}/absent/exports", json={}, headers=auth)
    assert missing.status_code == 404
    assert (await http.get(f"{BUCKETS}/absent/exports", headers=auth)).status_code == 404
    # Node-RED's body with nulls (a range it could not compute) and its stray empty field
    nulls = {"data_type": "csv", "timestamp_format": "iso", "min_ts": None, "max_ts": None}
    accepted = await http.post(EXPORTS, json={**nulls, "undefined": ""}, headers=auth)
    assert accepted.status_code == 200, accepted.text


async def test_a_bucket_keeps_a_bounded_number_of_exports(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await fill(http, admin_token, 5)
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws)
        for _ in range(PER_BUCKET):
            await export(http, ws, admin_token, {"data_type": "json"})
    refused = await http.post(EXPORTS, json={}, headers=bearer(admin_token))
    assert refused.status_code == 400
    assert "delete some first" in refused.json()["error"]["message"]


async def test_file_names_cannot_leave_the_bucket(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    await fill(http, admin_token, 3)
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws)
        event, _, _ = await export(http, ws, admin_token, {"data_type": "csv"})
    file = event["file"]
    data_dir = server.settings.data_dir
    assert (data_dir / "roost.db").exists() and (data_dir / "jwt.key").exists()
    for name in (".", ".."):  # sent as is (httpx would resolve the dot segments)
        for method in ("GET", "DELETE"):
            status, body = await raw_request(server, method, f"{EXPORTS}/{name}", admin_token)
            assert status == 400, (method, name, body)
            assert b"invalid export file name" in body
    malformed = [f".{file}.meta", ".jwt.key", "a%00b", "%2E%2E", "%2E", "a b", "é"]
    for name in malformed:
        for method in ("GET", "DELETE"):
            answer = await http.request(method, f"{EXPORTS}/{name}", headers=auth)
            assert answer.status_code == 400, (method, name, answer.text)
            assert answer.json()["error"]["message"].startswith("invalid export file name")
    for path in ["..%2F..%2F..%2Fjwt.key", "%2E%2E/%2E%2E/%2E%2E/roost.db", "../../jwt.key"]:
        answer = await http.get(f"{EXPORTS}/{path}", headers=auth)
        assert answer.status_code in (400, 404), path
        assert b"\x00" not in answer.content and len(answer.content) < 200
    for name in ("roost.db", "jwt.key", file + ".meta", file[:-4] + ".json"):  # not exports
        assert (await http.get(f"{EXPORTS}/{name}", headers=auth)).status_code == 404, name
        assert (await http.delete(f"{EXPORTS}/{name}", headers=auth)).status_code == 404, name
    assert (data_dir / "roost.db").exists() and (data_dir / "jwt.key").exists()
    assert (await http.get(f"{EXPORTS}/{file}", headers=auth)).status_code == 200


async def test_only_the_owner_or_a_granted_token_reaches_exports(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    await fill(http, admin_token, 3)
    await fill(http, admin_token, 3, bucket="b2")
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws)
        event, _, _ = await export(http, ws, admin_token, {"data_type": "csv"})
    item = f"{EXPORTS}/{event['file']}"

    async def token(allow: dict[str, Any], name: str) -> dict[str, str]:
        made = await http.post(
            f"/v1/users/{ADMIN}/tokens", json={"token": name, "allow": allow}, headers=auth
        )
        assert made.status_code == 200, made.text
        return bearer(made.json()["access_token"])

    actions = ["ListBucketExports", "CreateBucketExport", "ReadBucketExport", "DeleteBucketExport"]
    granted = await token({"Bucket": {"b1": actions}}, "exporter")
    reader = await token({"Bucket": {"b1": ["ReadBucket", "ReadBucketExport"]}}, "reader")
    elsewhere = await token({"Bucket": {"b2": actions}}, "other_bucket")
    assert (await http.get(EXPORTS, headers=granted)).status_code == 200
    assert (await http.get(item, headers=granted)).status_code == 200
    assert (await http.post(EXPORTS, json={}, headers=granted)).status_code == 200
    assert (await http.get(item, headers=reader)).status_code == 200
    for refused in (
        http.get(EXPORTS, headers=reader),
        http.post(EXPORTS, json={}, headers=reader),
        http.delete(item, headers=reader),
        http.get(EXPORTS, headers=elsewhere),
        http.get(item, headers=elsewhere),
        http.post(EXPORTS, json={}, headers=elsewhere),
        http.delete(item, headers=elsewhere),
    ):
        assert (await refused).status_code == 403
    assert (await http.post(f"{BUCKETS}/b2/exports", json={}, headers=elsewhere)).status_code == 200
    # a device token, and another user's session
    await create_device(http, admin_token)
    minted = await http.post(
        f"/v1/users/{ADMIN}/devices/dev1/tokens", json={"token_name": "t"}, headers=auth
    )
    device = bearer(minted.json()["token"])
    assert server.services is not None
    await server.services.store.create_user(
        User("bob", hash_password("bob-password1"), "user", int(time.time() * 1000))
    )
    bob = bearer(await login(http, "bob", "bob-password1"))
    for other in (device, bob):
        for method, url in (("GET", EXPORTS), ("POST", EXPORTS), ("GET", item), ("DELETE", item)):
            answer = await http.request(method, url, json={}, headers=other)
            assert answer.status_code == 403, (method, url)
    assert (await http.get(item)).status_code == 401
    assert (await http.get(item, headers=auth)).status_code == 200  # nobody deleted it


async def test_a_large_export_reads_the_bucket_a_page_at_a_time(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """60,000 points of ~200 bytes (~11 MB of CSV): the export's peak of memory stays a small
    fraction of that, and the store is asked for one page at a time."""
    assert server.services is not None
    store = server.services.store
    made = await http.post(BUCKETS, json={"bucket": "b1"}, headers=bearer(admin_token))
    assert made.status_code == 200
    count, padding = 60_000, "x" * 150
    points = [(T0 + i, {"n": i, "pad": padding, f"f{i % 3}": i}) for i in range(count)]
    await store.write_points(ADMIN, "b1", points)
    del points
    reads: list[int] = []
    read_points = store.read_points

    async def counted(*args: Any, **kwargs: Any) -> Any:
        page = await read_points(*args, **kwargs)
        reads.append(len(page))
        return page

    store.read_points = counted  # type: ignore[method-assign]
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws)
        tracemalloc.start()
        try:
            started = await http.post(EXPORTS, json={}, headers=bearer(admin_token))
            await asyncio.wait_for(ws.recv(), 60)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    file = started.json()["file"]
    size = (server.settings.data_dir / "exports" / ADMIN / "b1" / file).stat().st_size
    assert size > 10_000_000
    assert peak < size / 4, (peak, size)
    assert sum(reads) == count and max(reads) == exports_module.PAGE
    assert len(reads) == count // exports_module.PAGE + 1


async def test_an_export_cut_short_by_a_stop_is_failed_at_the_next_start(
    settings: Settings,
) -> None:
    folder = settings.data_dir / "exports" / ADMIN / "b1"
    server = Roost(settings)
    await server.start()
    assert server.services is not None
    await server.services.store.create_bucket(
        Bucket(ADMIN, "b1", "b1", "", True, {"source": "api"}, None, T0, T0)
    )
    await server.stop()
    folder.mkdir(parents=True)
    name = "20240725T115334Z.admin.b1.abcdefgh.csv"
    record = {"file": name, "bucket": "b1", "data_type": "csv", "timestamp_format": "iso"}
    record |= {"min_ts": 0, "max_ts": 0, "created": T0, "status": "running"}
    (folder / f".{name}.meta").write_text(json.dumps(record))
    (folder / f".{name}.part").write_text("half")
    server = Roost(settings)
    await server.start()
    try:
        assert server.services is not None
        [listed] = await server.services.exports.list_exports(ADMIN, "b1")
    finally:
        await server.stop()
    assert listed.status == "failed" and listed.error and "interrupted" in listed.error
    assert not (folder / f".{name}.part").exists()


async def test_an_export_that_cannot_be_written_is_listed_as_failed(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """A CSV header holds at most MAX_COLUMNS fields: past that the export fails, says why in
    the list, leaves no file behind and announces nothing; JSON has no header and works."""
    auth = bearer(admin_token)
    await fill(http, admin_token, 0)
    wide = {f"f{i}": i for i in range(exports_module.MAX_COLUMNS + 1)}
    assert (await http.post(f"{BUCKETS}/b1/data", json=wide, headers=auth)).status_code == 200
    started = await http.post(EXPORTS, json={"data_type": "csv"}, headers=auth)
    file = started.json()["file"]

    async def ended() -> bool:
        listed = (await http.get(EXPORTS, headers=auth)).json()
        return bool(listed[0]["status"] != "running")

    await wait_for(ended)
    [failed] = (await http.get(EXPORTS, headers=auth)).json()
    assert failed["status"] == "failed" and "more than 1000 fields" in failed["error"]
    assert (await http.get(f"{EXPORTS}/{file}", headers=auth)).status_code == 404
    folder = server.settings.data_dir / "exports" / ADMIN / "b1"
    assert sorted(p.name for p in folder.iterdir()) == [f".{file}.meta"]
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws)
        _, content, _ = await export(http, ws, admin_token, {"data_type": "json"})
    assert json.loads(content)[0]["f1000"] == 1000
    assert (await http.delete(f"{EXPORTS}/{file}", headers=auth)).status_code == 200


async def test_a_user_has_a_bounded_number_of_exports_running(tmp_path: Path) -> None:
    server = Roost(make_settings(tmp_path / "data", max_exports_per_user=0))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
            token = await login(http)
            await fill(http, token, 1)
            refused = await http.post(EXPORTS, json={}, headers=bearer(token))
    finally:
        await server.stop()
    assert refused.status_code == 400
    assert "exports of user 'admin' are running (at most 0)" in refused.json()["error"]["message"]


async def test_deleting_an_export_or_its_bucket_while_it_runs_leaves_nothing(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """Deleted at once after it starts (running, or done if it was quick): no file, no record,
    no partial file is left, and the other exports are untouched."""
    assert server.services is not None
    auth = bearer(admin_token)
    await fill(http, admin_token, 0)
    points = [(T0 + i, {"n": i, "pad": "x" * 100}) for i in range(20_000)]
    await server.services.store.write_points(ADMIN, "b1", points)
    folder = server.settings.data_dir / "exports" / ADMIN / "b1"
    for data_type in ("csv", "json"):
        started = await http.post(EXPORTS, json={"data_type": data_type}, headers=auth)
        deleted = await http.delete(f"{EXPORTS}/{started.json()['file']}", headers=auth)
        assert deleted.status_code == 200
        assert list(folder.iterdir()) == []
    await http.post(EXPORTS, json={}, headers=auth)
    assert (await http.delete(f"{BUCKETS}/b1", headers=auth)).status_code == 200
    assert not folder.exists()
