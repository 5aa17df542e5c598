"""The console in a real browser: Debian's chromium driven by Playwright, against a real Roost
with an SDK device (issue 12).

One server, one browser and one logged-in page serve the whole module; the tests run in file
order and build on each other as a person would (the device registered in one is used in the
next). Every browser console error or uncaught page error fails the test it happened in.
Screenshots of each page at 1280 and 360 px wide go to test-artifacts/console/ (git-ignored).
The harness is tests/console_browser.py.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from roost.api.openapi import openapi_document
from roost.device import Device

from conftest import ADMIN, ADMIN_PASSWORD
from console_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    ConsoleServer,
    Errors,
    Relay,
    Requests,
    Target,
    api_token,
    check_labels,
    open_page,
    shoot,
    wait_until,
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    # endpoints may call loopback: the test's own target
    server = ConsoleServer(
        tmp_path_factory.mktemp("console") / "data", endpoints_allow_private=True
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no {CHROMIUM}: run `make chromium` (Debian's package)"
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def errors() -> Errors:
    return Errors()


@pytest.fixture(scope="module")
def requests() -> Requests:
    return Requests()


@pytest.fixture(scope="module")
def page(
    browser: Browser, live: ConsoleServer, errors: Errors, requests: Requests
) -> Iterator[Page]:
    page = open_page(browser, live, errors, requests)
    yield page
    page.context.close()


@pytest.fixture(autouse=True)
def no_browser_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "errors" in request.fixturenames:
        errors: Errors = request.getfixturevalue("errors")
        assert errors.take() == [], "errors in the browser console"


@pytest.fixture(scope="module")
def weather() -> list[dict[str, int]]:
    """The points written to the bucket weather."""
    return []


@pytest.fixture(scope="module")
def relay() -> Relay:
    return Relay()


@pytest.fixture(scope="module")
def fan() -> Relay:
    return Relay({"speed": 3, "label": "hall", "on": False})


@pytest.fixture(scope="module")
def device(live: ConsoleServer, relay: Relay, fan: Relay) -> Iterator[Device]:
    """The SDK device (not started: the test that sees it come online starts it)."""
    sdk = Device(ADMIN, "dev1", "secret-one", port=live.roost.device_port, reconnect_delay=0.2)
    sdk.output("temperature", lambda: 21.5)
    samples = iter(range(1_000_000))
    sdk.output("counter", lambda: next(samples))  # a new value each time it is read
    sdk.input("relay", relay.set, lambda: relay.value)
    sdk.input("fan", fan.set, lambda: fan.value)
    sdk.run("beep", relay.beeped.set)
    yield sdk
    live.run(sdk.stop())


def test_wrong_password_shows_the_servers_message(page: Page, errors: Errors) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in to Roost")).to_be_visible()
    check_labels(page)
    shoot(page, "login")
    page.get_by_label("User name", exact=True).fill(ADMIN)
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("invalid username or password")
    errors.expected.append("401")  # Chromium logs the refused request itself


def test_too_many_failures_say_when_to_retry(
    page: Page, live: ConsoleServer, errors: Errors
) -> None:
    for _ in range(10):  # login_failures_per_user
        wrong = {"grant_type": "password", "username": "mallory", "password": "guess-guess"}
        assert httpx.post(f"{live.url}/oauth/token", data=wrong).status_code == 401
    page.get_by_label("User name", exact=True).fill("mallory")
    page.get_by_label("Password", exact=True).fill("guess-again")
    page.get_by_role("button", name="Log in").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("too many failed attempts: retry in")
    expect(alert).to_contain_text("you may retry at")
    errors.expected.append("429")


def test_focus_is_visible(page: Page) -> None:
    page.get_by_label("User name", exact=True).focus()
    page.keyboard.press("Tab")
    style = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [document.activeElement.name, s.outlineStyle, s.outlineWidth]; }"
    )
    assert style[0] == "password"
    assert style[1] != "none" and style[2] != "0px"


def test_log_in_with_the_keyboard_and_register_a_device(page: Page) -> None:
    page.get_by_label("User name", exact=True).fill("")
    page.get_by_label("User name", exact=True).focus()
    page.keyboard.type(ADMIN)
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Devices")).to_be_visible()
    expect(page.get_by_text("No devices yet.")).to_be_visible()
    page.get_by_label("Device id").fill("dev1")
    page.get_by_label("Credentials").fill("secret-one")
    page.get_by_label("Name", exact=True).fill("Kitchen")
    page.get_by_role("button", name="Create device").click()
    # the credentials are shown once, with a copy button
    expect(page.get_by_label("credentials of dev1", exact=True)).to_have_text("secret-one")
    expect(page.get_by_role("button", name="Copy credentials of dev1")).to_be_visible()
    row = page.locator("tr[data-device=dev1]")
    expect(row).to_contain_text("Kitchen")
    expect(row).to_contain_text("offline")
    check_labels(page)
    shoot(page, "devices")
    # dark, as the system says
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.screenshot(path=ARTIFACTS / "devices-dark-1280.png", full_page=True)
    page.emulate_media(color_scheme="light")
    assert (light, dark) == ("rgb(255, 255, 255)", "rgb(21, 24, 28)")


def test_the_device_comes_online_without_reloading(
    page: Page, live: ConsoleServer, device: Device
) -> None:
    page.evaluate("window.notReloaded = true")
    live.run(device.start())
    live.run(device.wait_connected(5))
    expect(page.locator("tr[data-device=dev1] .state")).to_have_text("online")
    assert page.evaluate("window.notReloaded") is True


def test_device_stats_are_live(page: Page, live: ConsoleServer, device: Device) -> None:
    page.get_by_role("link", name="dev1").click()
    stats = page.locator("#device-stats")
    expect(stats).to_contain_text("online")
    expect(stats).to_contain_text("127.0.0.1")
    check_labels(page)
    shoot(page, "device")
    # a device token limited to one resource: made, copied, used, deleted
    page.get_by_label("Token name").fill("thermometer")
    page.get_by_label("Resources").fill("temperature")
    page.get_by_role("button", name="Create device token").click()
    tokens = page.locator("section").filter(has=page.get_by_role("heading", name="Device tokens"))
    copy = tokens.get_by_role("button", name=re.compile("^Copy token "))
    expect(copy).to_be_visible()
    jwt = tokens.get_by_label(re.compile("^token ")).first.inner_text()
    url = f"{live.url}/v2/users/{ADMIN}/devices/dev1"
    bearer = {"Authorization": f"Bearer {jwt}"}
    assert httpx.get(f"{url}/temperature", headers=bearer).json() == {"out": 21.5}
    assert httpx.get(f"{url}/counter", headers=bearer).status_code == 403
    tokens.get_by_role("button", name=re.compile("^Delete token ")).click()
    expect(tokens.get_by_text("No device tokens.")).to_be_visible()
    assert httpx.get(f"{url}/temperature", headers=bearer).status_code == 401
    live.run(device.stop())
    expect(stats).to_contain_text("offline")  # pushed by the stats stream
    live.run(device.start())
    live.run(device.wait_connected(5))
    expect(stats).to_contain_text("online")


def test_read_an_output_and_flip_an_input(page: Page, relay: Relay, fan: Relay) -> None:
    page.get_by_role("link", name="Resource explorer").click()
    expect(page.get_by_role("status").filter(has_text="resources")).to_have_text("5 resources")
    temperature = page.locator("div.resource[data-resource=temperature]")
    temperature.get_by_role("button", name="Read temperature").click()
    expect(temperature.locator("output")).to_have_text("21.5")
    curl = temperature.get_by_label("curl command for temperature", exact=True)
    expect(curl).to_contain_text("/v2/users/admin/devices/dev1/temperature")
    # live over the resource stream, every second
    temperature.get_by_label("Stream temperature").check()
    counter = page.locator("div.resource[data-resource=counter]")
    counter.get_by_label("Stream counter").check()
    first = int(counter.locator("output").inner_text())
    expect(counter.locator("output")).not_to_have_text(str(first))
    counter.get_by_label("Stream counter").uncheck()
    relay_card = page.locator("div.resource[data-resource=relay]")
    switch = relay_card.get_by_role("switch")
    assert not switch.is_checked()
    switch.check()
    relay_card.get_by_role("button", name="Write relay").click()
    assert relay.written.wait(5), "the device did not receive the write"
    assert relay.value is True
    relay_curl = relay_card.get_by_label("curl command for relay", exact=True)
    expect(relay_curl).to_contain_text('{"in":true}')
    # an object input: a form of its fields, each as its type
    fan_card = page.locator("div.resource[data-resource=fan]")
    expect(fan_card.get_by_role("group", name="fan input")).to_be_visible()
    fan_card.get_by_label("speed").fill("5")
    fan_card.get_by_label("label").fill("attic")
    fan_card.get_by_role("switch", name="on").check()
    fan_card.get_by_role("button", name="Write fan").click()
    assert fan.written.wait(5), "the device did not receive the write"
    assert fan.value == {"speed": 5, "label": "attic", "on": True}
    page.get_by_role("button", name="Run beep").click()
    assert relay.beeped.wait(5), "the device did not run beep"
    check_labels(page)
    shoot(page, "explorer")
    temperature.get_by_label("Stream temperature").uncheck()


def test_create_an_access_token_and_use_it(page: Page, live: ConsoleServer) -> None:
    page.get_by_role("link", name="Access tokens").click()
    page.get_by_label("Token id").fill("reader")
    page.get_by_label("Name", exact=True).fill("Reads the thermometer")
    page.get_by_label("Permission preset").select_option("Use every device's resources")
    page.get_by_role("button", name="Create access token").click()
    jwt = page.get_by_label("access token reader", exact=True).inner_text()
    expect(page.locator("tr[data-token=reader]")).to_be_visible()
    check_labels(page)
    shoot(page, "tokens")
    answer = httpx.get(
        f"{live.url}/v2/users/{ADMIN}/devices/dev1/temperature",
        headers={"Authorization": f"Bearer {jwt}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"out": 21.5}
    refused = httpx.delete(
        f"{live.url}/v1/users/{ADMIN}/devices/dev1", headers={"Authorization": f"Bearer {jwt}"}
    )
    assert refused.status_code == 403
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_text("No access tokens.")).to_be_visible()
    gone = httpx.get(
        f"{live.url}/v2/users/{ADMIN}/devices/dev1/temperature",
        headers={"Authorization": f"Bearer {jwt}"},
    )
    assert gone.status_code == 401


def test_written_points_are_charted(
    page: Page, live: ConsoleServer, weather: list[dict[str, int]]
) -> None:
    page.get_by_role("link", name="Buckets").click()
    page.get_by_label("Bucket id").fill("weather")
    page.get_by_label("Source", exact=True).select_option("api")
    page.get_by_label("Keep points for").fill("30")
    page.get_by_label("Unit").select_option("days")
    page.get_by_role("button", name="Create bucket").click()
    expect(page.get_by_role("link", name="weather")).to_be_visible()
    expect(page.locator("tr[data-bucket=weather]")).to_contain_text("30 days")
    check_labels(page)
    shoot(page, "buckets")
    now = int(time.time() * 1000)
    points = [{"ts": now - 60_000 * i, "temperature": 20 + i % 5} for i in range(50)]
    weather.extend(points)
    written = httpx.post(
        f"{live.url}/v1/users/{ADMIN}/buckets/weather/data",
        json=points,
        headers={"Authorization": f"Bearer {api_token(live)}"},
    )
    assert written.status_code == 200, written.text
    made = httpx.get(
        f"{live.url}/v1/users/{ADMIN}/buckets/weather",
        headers={"Authorization": f"Bearer {api_token(live)}"},
    ).json()
    assert (made["config"], made["retention"]) == (
        {"source": "api"},
        {"period": 30, "unit": "days"},
    )
    page.get_by_role("link", name="weather").click()
    chart = page.locator("#bucket-chart")
    expect(chart).to_have_attribute("data-points", "50")
    expect(chart).to_have_attribute("data-series", "1")
    expect(chart.locator("canvas")).to_be_visible()
    expect(page.locator("#bucket-latest table")).to_contain_text("temperature")
    page.get_by_role("button", name="Zoom in").click()
    check_labels(page)
    shoot(page, "bucket")


def test_a_bucket_fed_by_the_device(page: Page, live: ConsoleServer) -> None:
    """A bucket whose source is a device's resource, sampled every second by the server."""
    page.goto("/#/buckets")
    page.get_by_label("Bucket id").fill("sampled")
    expect(page.get_by_label("Source device")).to_be_hidden()
    page.get_by_label("Source", exact=True).select_option("device")
    page.get_by_label("Source device").fill("dev1")
    page.get_by_label("Source resource").fill("temperature")
    page.get_by_label("Sampling interval, s").fill("1")
    page.get_by_role("button", name="Create bucket").click()
    expect(page.locator("tr[data-bucket=sampled]")).to_contain_text("device")
    check_labels(page)
    data = f"{live.url}/v2/users/{ADMIN}/buckets/sampled/data"
    bearer = {"Authorization": f"Bearer {api_token(live)}"}
    wait_until(lambda: bool(httpx.get(data, headers=bearer).json()))
    page.get_by_role("link", name="sampled").click()
    # a bare number is stored as it is: GET /v2 shows it as val
    expect(page.locator("#bucket-latest td[data-field=val]").first).to_have_text("21.5")
    page.goto("/#/buckets/weather")


def test_an_export_is_downloaded_when_the_server_announces_it(
    page: Page, live: ConsoleServer, weather: list[dict[str, int]]
) -> None:
    """POST .../exports, bucket_export_completed on the events socket, then GET
    .../exports/{file}: the downloaded CSV holds the points written above. The server's export
    slots are held meanwhile, so that the export is still running when the console looks at
    it: the page waits for the event (a page that did not would wait minutes)."""
    assert live.roost.services is not None
    slots = live.roost.services.exports._slots  # max_exports_running of them

    async def take() -> None:
        await slots.acquire()

    async def give() -> None:
        slots.release()

    for _ in range(live.settings.max_exports_running):
        live.run(take())
    page.get_by_label("Export format").select_option("csv")
    page.get_by_label("Timestamps").select_option("milliseconds")
    with page.expect_response(lambda r: "/exports?name=" in r.url) as looked:
        page.get_by_role("button", name="Export", exact=True).click()
    assert json.loads(looked.value.body())[0]["status"] == "running"
    expect(page.get_by_role("status").filter(has_text="Writing")).to_be_visible()
    with page.expect_download() as download:
        for _ in range(live.settings.max_exports_running):
            live.run(give())
    file = download.value.suggested_filename
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}Z\.{ADMIN}\.weather\.[\w-]+\.csv", file)
    text = Path(download.value.path()).read_text()
    lines = list(csv.reader(text.splitlines(), delimiter=";"))
    assert lines[0] == ["temperature", "ts"]  # Thinger's dialect: ;-separated, sorted names
    rows = {int(ts): float(value) for value, ts in lines[1:]}
    assert rows == {p["ts"]: p["temperature"] for p in weather}
    listed = page.locator(f"tr[data-export='{file}']")
    expect(listed).to_contain_text("completed")
    check_labels(page)
    shoot(page, "export")
    # kept on the server until deleted from the list
    listed.get_by_role("button", name="Delete").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.get_by_text("No exports yet.")).to_be_visible()
    gone = httpx.get(
        f"{live.url}/v1/users/{ADMIN}/buckets/weather/exports/{file}",
        headers={"Authorization": f"Bearer {api_token(live)}"},
    )
    assert gone.status_code == 404


def test_the_chart_aggregates_in_the_browsers_zone(page: Page, live: ConsoleServer) -> None:
    """24 points, one every 10 minutes over 4 hours, each worth its index; by 1h mean in
    Asia/Kolkata (UTC+5:30) they are 4 rows starting at :30 UTC (in UTC they would be 5)."""
    hour = 3_600_000
    last = (int(time.time() * 1000) - hour // 2) // hour * hour + hour // 2  # starts at :30
    first = last - 3 * hour
    token = {"Authorization": f"Bearer {api_token(live)}"}
    made = httpx.post(
        f"{live.url}/v1/users/{ADMIN}/buckets", json={"bucket": "hourly"}, headers=token
    )
    assert made.status_code == 200, made.text
    points = [
        {"ts": first + i * 600_000, "temperature": i, "humidity": 50 + i % 2} for i in range(24)
    ]
    written = httpx.post(
        f"{live.url}/v1/users/{ADMIN}/buckets/hourly/data", json=points, headers=token
    )
    assert written.status_code == 200, written.text
    page.goto("/#/buckets/hourly")
    chart = page.locator("#bucket-chart")
    expect(chart).to_have_attribute("data-points", "24")
    page.get_by_label("Aggregation", exact=True).select_option("1h")
    page.get_by_label("Aggregation type").select_option("mean")
    page.get_by_role("button", name="Draw").click()
    expect(chart).to_have_attribute("data-points", "4")
    expect(chart).to_have_attribute("data-series", "2")
    expect(page.get_by_role("heading", name="Latest values (1h mean)")).to_be_visible()
    rows = page.locator("#bucket-latest tbody tr")
    expect(rows).to_have_count(4)
    for k in range(4):  # the newest first
        row = rows.nth(3 - k)
        expect(row).to_have_attribute("data-ts", str(first + k * hour))
        mean = sum(range(6 * k, 6 * k + 6)) / 6
        expect(row.locator("td[data-field=temperature]")).to_have_text(f"{mean:g}")
        expect(row.locator("td[data-field=humidity]")).to_have_text("50.5")
    page.get_by_label("Aggregation type").select_option("max")
    page.get_by_role("button", name="Draw").click()
    expect(rows.first.locator("td[data-field=temperature]")).to_have_text("23")
    check_labels(page)
    shoot(page, "bucket-aggregated")


def test_properties_are_edited(page: Page, live: ConsoleServer) -> None:
    page.goto("/#/devices/dev1")
    page.get_by_label("Property id").fill("location")
    page.get_by_label("Value (JSON or text)").fill('{"lat": 1.5, "lng": 2}')
    page.get_by_role("button", name="Create property").click()
    value = page.get_by_label("Value of location")
    expect(value).to_have_value('{\n  "lat": 1.5,\n  "lng": 2\n}')
    value.fill('{"lat": 48.2, "lng": 16.4}')
    page.get_by_role("button", name="Save property location").click()
    expect(page.get_by_text("Property location saved")).to_be_visible()
    expect(value).to_have_value('{\n  "lat": 48.2,\n  "lng": 16.4\n}')
    stored = httpx.get(
        f"{live.url}/v3/users/{ADMIN}/devices/dev1/properties/location",
        headers={"Authorization": f"Bearer {api_token(live)}"},
    )
    assert stored.json()["value"] == {"lat": 48.2, "lng": 16.4}
    check_labels(page)
    shoot(page, "device-properties")


def test_an_endpoint_is_created_called_edited_and_deleted(
    page: Page, live: ConsoleServer, errors: Errors
) -> None:
    target = Target()
    target.start()
    try:
        page.goto("/#/endpoints")
        expect(page.get_by_text("No endpoints yet.")).to_be_visible()
        page.get_by_label("Endpoint id").fill("notify")
        page.get_by_label("Name", exact=True).fill("Tell the target")
        page.get_by_label("Type", exact=True).select_option("http_request")
        page.get_by_label("Method").select_option("POST")
        page.get_by_label("URL").fill(f"{target.url}/hook")
        page.get_by_label("Headers").fill("X-Token: abc123")
        page.get_by_role("button", name="Create endpoint").click()
        row = page.locator("tr[data-endpoint=notify]")
        expect(row).to_contain_text("Tell the target")
        expect(row).to_contain_text("http_request")
        # called from the page: the target gets the data, the page shows its answer
        row.get_by_role("button", name="Call endpoint notify").click()
        page.get_by_label("Data to call notify with (JSON)").fill('{"temperature": 21.5}')
        page.get_by_role("button", name="Call notify", exact=True).click()
        answer = page.get_by_label("Answer of notify")
        expect(answer).to_contain_text('"greeting": "hello from the target"')
        method, path, headers, body = target.next()
        assert (method, path, headers["x-token"]) == ("POST", "/hook", "abc123")
        assert json.loads(body) == {"temperature": 21.5}
        check_labels(page)
        shoot(page, "endpoints")
        # edited: the form holds its config (read with GET .../endpoints/notify)
        row.get_by_role("button", name="Edit endpoint notify").click()
        expect(page.get_by_role("heading", name="Edit endpoint notify")).to_be_visible()
        expect(page.get_by_label("URL")).to_have_value(f"{target.url}/hook")
        expect(page.get_by_label("Headers")).to_have_value("X-Token: abc123")
        page.get_by_label("URL").fill(f"{target.url}/other")
        page.get_by_label("Body type").select_option("custom")
        page.get_by_label("Body", exact=True).fill("t={{temperature}}")
        check_labels(page)
        shoot(page, "endpoints-edit")
        page.get_by_role("button", name="Save endpoint").click()
        expect(page.get_by_role("heading", name="New endpoint")).to_be_visible()
        row.get_by_role("button", name="Call endpoint notify").click()
        page.get_by_label("Data to call notify with (JSON)").fill('{"temperature": 19}')
        page.get_by_role("button", name="Call notify", exact=True).click()
        expect(answer).to_contain_text('"got": "t=19"')
        assert target.next()[1::2] == ("/other", b"t=19")
        # a target that fails: the server's 502 and why, on the page
        page.get_by_label("Data to call notify with (JSON)").fill('{"temperature": "teapot"}')
        page.get_by_role("button", name="Call notify", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("418")
        errors.expected.append("502")  # Chromium logs the failed request itself
        assert target.next()[3] == b"t=teapot"
        row.get_by_role("button", name="Delete").click()
        page.get_by_role("button", name="Yes, delete").click()
        expect(row).to_have_count(0)
        # another type: its config as JSON, kept as given (not called by Roost: 501)
        page.get_by_label("Endpoint id").fill("mail")
        page.get_by_label("Type", exact=True).select_option("email")
        expect(page.get_by_label("URL")).to_be_hidden()
        page.get_by_label("Config (JSON)").fill('{"recipient": "me@example.com"}')
        page.get_by_role("button", name="Create endpoint").click()
        page.get_by_role("button", name="Edit endpoint mail").click()
        expect(page.get_by_label("Config (JSON)")).to_have_value(
            '{\n  "recipient": "me@example.com"\n}'
        )
        page.get_by_role("button", name="Cancel").click()
        page.get_by_role("button", name="Call endpoint mail").click()
        page.get_by_role("button", name="Call mail", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("does not call")
        errors.expected.append("501")
        mail = page.locator("tr[data-endpoint=mail]")
        mail.get_by_role("button", name="Delete").click()
        page.get_by_role("button", name="Yes, delete").click()
        expect(page.get_by_text("No endpoints yet.")).to_be_visible()
    finally:
        target.stop()
    gone = httpx.get(
        f"{live.url}/v1/users/{ADMIN}/endpoints/notify",
        headers={"Authorization": f"Bearer {api_token(live)}"},
    )
    assert gone.status_code == 404


def test_admin_manages_users(page: Page, live: ConsoleServer) -> None:
    page.goto("/#/users")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    page.get_by_label("User name", exact=True).fill("bob")
    page.get_by_label("Password", exact=True).fill("bob-password")
    page.get_by_role("button", name="Create user").click()
    row = page.locator("tr[data-user=bob]")
    expect(row).to_contain_text("yes")
    row.get_by_role("button", name="Disable bob").click()
    expect(row).to_contain_text("no")
    check_labels(page)
    shoot(page, "users")
    refused = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "password", "username": "bob", "password": "bob-password"},
    )
    assert refused.status_code == 403
    assert refused.json() == {"error": {"message": "user 'bob' is disabled"}}
    row.get_by_role("button", name="Enable bob").click()
    expect(row).to_contain_text("yes")
    row.get_by_role("button", name="Reset the password of bob").click()
    password = page.get_by_label("new password of bob", exact=True).inner_text()
    welcome = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "password", "username": "bob", "password": password},
    )
    assert welcome.status_code == 200, welcome.text


def test_the_session_is_refreshed_before_it_expires(page: Page) -> None:
    """A login about to expire is refreshed at once (from the page's own timer), silently."""
    before = page.evaluate("JSON.parse(sessionStorage.getItem('roost.session'))")
    soon = {**before, "expires": int(time.time() * 1000) + 30_000}  # within the minute's margin
    page.evaluate("(s) => sessionStorage.setItem('roost.session', JSON.stringify(s))", soon)
    page.reload()
    wait_until(
        lambda: (
            page.evaluate("JSON.parse(sessionStorage.getItem('roost.session')).refresh")
            != before["refresh"]
        )
    )
    after = page.evaluate("JSON.parse(sessionStorage.getItem('roost.session'))")
    assert after["expires"] > soon["expires"] + 3_600_000
    page.goto("/#/buckets/weather")  # the API answers with the new token
    expect(page.locator("#bucket-chart")).to_have_attribute("data-points", "50")


def test_a_chart_without_its_library_leaves_a_notice(
    browser: Browser, live: ConsoleServer, page: Page, requests: Requests
) -> None:
    """The console without the vendor files (npm never ran): the bucket page still works."""
    errors = Errors()
    other = open_page(browser, live, errors, requests)
    other.route("**/console/vendor/**", lambda route: route.fulfill(status=404, body=""))
    session = page.evaluate("sessionStorage.getItem('roost.session')")
    other.add_init_script(f"sessionStorage.setItem('roost.session', {json.dumps(session)})")
    other.goto("/#/buckets/weather")
    expect(other.get_by_role("status").filter(has_text="chart library")).to_be_visible()
    expect(other.locator("#bucket-latest table")).to_contain_text("temperature")
    other.context.close()
    assert all("404" in e for e in errors.take())  # the missing file, and nothing else


def test_the_console_called_only_public_api_paths(requests: Requests) -> None:
    templates = []
    for path in openapi_document()["paths"]:
        pattern = re.escape(path).replace(r"\{resource\}", ".+")  # a path parameter: a/b
        templates.append(re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", pattern) + "$"))
    called = {p for p in requests.paths if p != "/" and not p.startswith("/console/")}
    assert len(called) > 20
    assert [p for p in called if not any(t.match(p) for t in templates)] == []


def test_disable_and_delete_a_device(page: Page, live: ConsoleServer, device: Device) -> None:
    page.goto("/#/devices/dev1")
    stats = page.locator("#device-stats")
    expect(stats).to_contain_text("online")
    page.get_by_label("Enabled").uncheck()
    page.get_by_role("button", name="Save device").click()
    expect(stats).to_contain_text("Disabled")
    wait_until(lambda: not device.is_connected)  # a disabled device is disconnected
    live.run(device.stop())
    page.get_by_role("button", name="Delete device").focus()
    page.keyboard.press("Enter")  # asks first, with the focus on the answer
    expect(page.get_by_role("button", name="Yes, delete device")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Devices")).to_be_visible()
    expect(page.locator("tr[data-device=dev1]")).to_have_count(0)


def test_a_plain_user_sees_only_their_own_tree(
    browser: Browser, live: ConsoleServer, requests: Requests
) -> None:
    admin = api_token(live)
    made = httpx.post(
        f"{live.url}/v1/users",
        json={"user": "carol", "password": "carol-password"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert made.status_code == 200, made.text
    errors = Errors()
    carol = open_page(browser, live, errors, requests)
    carol.goto("/")
    carol.get_by_label("User name", exact=True).fill("carol")
    carol.get_by_label("Password", exact=True).fill("carol-password")
    carol.get_by_role("button", name="Log in").click()
    expect(carol.get_by_text("No devices yet.")).to_be_visible()  # admin's dev1 is not hers
    nav = carol.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Devices")).to_be_visible()
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    carol.goto("/#/users")
    expect(carol.get_by_role("heading", name="Devices")).to_be_visible()
    carol.context.close()
    assert errors.take() == []


def test_log_out_and_be_refused(page: Page, live: ConsoleServer, errors: Errors) -> None:
    refresh = page.evaluate("JSON.parse(sessionStorage.getItem('roost.session')).refresh")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Roost")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('roost.session')") is None
    answer = httpx.post(
        f"{live.url}/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh}
    )
    assert answer.status_code == 401
    page.goto("/#/devices")
    expect(page.get_by_role("heading", name="Log in to Roost")).to_be_visible()
