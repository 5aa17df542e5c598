"""Budgets of failed authentications: the pure windows with a fake clock, then `POST /oauth/token`
and device authentication over real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from roost.auth.ratelimit import FailureWindow, LoginLimiter, address_key
from roost.config import Settings

from conftest import ADMIN, ADMIN_PASSWORD, DeviceFactory, bearer, create_device, make_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- FailureWindow ------------------------------------------------------------------------------


def test_window_blocks_at_the_limit_and_slides() -> None:
    clock = FakeClock()
    window = FailureWindow(3, 60, clock)
    for _ in range(3):
        assert window.retry_after("k") == 0
        window.record("k")
        clock.now += 10  # failures at 1000, 1010, 1020
    assert window.retry_after("k") == pytest.approx(30)  # the first leaves at 1060; now 1030
    assert window.retry_after("other") == 0
    clock.now = 1059.5
    assert window.retry_after("k") == pytest.approx(0.5)
    clock.now = 1060
    assert window.retry_after("k") == 0  # one slot free again...
    window.record("k")
    assert window.retry_after("k") == pytest.approx(10)  # ...until 1010 + 60


def test_forgive_takes_back_the_latest_failure() -> None:
    clock = FakeClock()
    window = FailureWindow(2, 60, clock)
    window.record("k")
    window.record("k")
    assert window.retry_after("k") > 0
    window.forgive("k")
    assert window.retry_after("k") == 0
    window.forgive("k")
    window.forgive("k")  # nothing left: harmless
    assert len(window) == 0


def test_limit_zero_means_no_limit() -> None:
    window = FailureWindow(0, 60, FakeClock())
    for _ in range(1000):
        window.record("k")
    assert window.retry_after("k") == 0 and len(window) == 0


def test_keys_are_bounded_stale_ones_go_first() -> None:
    clock = FakeClock()
    window = FailureWindow(1, 60, clock, max_keys=3)
    window.record("old")
    clock.now += 100  # "old" has left the window
    window.record("a")
    window.record("b")
    window.record("c")  # full: the stale key makes room
    assert len(window) == 3
    assert window.retry_after("a") > 0 and window.retry_after("c") > 0
    window.record("d")  # no stale key: the least recently failed goes
    assert len(window) == 3
    assert window.retry_after("a") == 0
    assert all(window.retry_after(k) > 0 for k in ("b", "c", "d"))


def test_bad_parameters_are_refused() -> None:
    for limit, seconds, keys in ((-1, 60, 10), (1, 0, 10), (1, 60, 0)):
        with pytest.raises(ValueError):
            FailureWindow(limit, seconds, FakeClock(), keys)


def test_address_keys() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("2001:db8:0:1::1") != address_key("2001:db8::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key(None) == address_key("") == "-"
    assert address_key("not an address" * 10) == ("not an address" * 10)[:64]


# -- LoginLimiter -------------------------------------------------------------------------------


def test_login_limiter_counts_per_user_and_per_address() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(FailureWindow(2, 60, clock), FailureWindow(3, 60, clock))
    assert limiter.attempt("alice", "192.0.2.1") is None
    assert limiter.attempt("alice", "192.0.2.2") is None
    refusal = limiter.attempt("alice", "192.0.2.3")  # a third address, same user
    assert refusal is not None and refusal.reason == "user" and refusal.whole_seconds == 60
    assert limiter.attempt("bob", "192.0.2.1") is None
    assert limiter.attempt("carol", "192.0.2.1") is None
    refusal = limiter.attempt("dave", "192.0.2.1")  # a fourth user, same address
    assert refusal is not None and refusal.reason == "address"
    clock.now += 60
    assert limiter.attempt("alice", "192.0.2.1") is None


def test_an_attempt_counts_until_it_succeeds() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(FailureWindow(1, 60, clock), FailureWindow(10, 60, clock))
    assert limiter.attempt("alice", "192.0.2.1") is None
    assert limiter.attempt("alice", "192.0.2.1") is not None  # the first is still in flight
    limiter.succeeded("alice", "192.0.2.1")
    assert limiter.attempt("alice", "192.0.2.1") is None


# -- POST /oauth/token over HTTP ----------------------------------------------------------------

WINDOW = 1.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "data",
        auth_failure_window=WINDOW,
        login_failures_per_user=3,
        login_failures_per_address=6,
        device_auth_failures_per_address=3,
    )


async def password_grant(http: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    form = {"grant_type": "password", "username": user, "password": password}
    return await http.post("/oauth/token", data=form)


async def test_failures_lock_a_user_name_then_recover(http: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await password_grant(http, ADMIN, "wrong-password")).status_code == 401
    locked = await password_grant(http, ADMIN, ADMIN_PASSWORD)  # right, but refused too
    assert locked.status_code == 429
    assert locked.json() == {"error": {"message": "too many failed attempts: retry in 1 s"}}
    assert locked.headers["Retry-After"] == "1"
    # other names from the same address still get their own tries
    assert (await password_grant(http, "someone", "wrong-password")).status_code == 401
    # a session already open keeps working: only logins are limited
    await asyncio.sleep(WINDOW + 0.1)
    response = await password_grant(http, ADMIN, ADMIN_PASSWORD)
    assert response.status_code == 200
    assert (
        await http.get(
            f"/v1/users/{ADMIN}/devices", headers=bearer(response.json()["access_token"])
        )
    ).status_code == 200


async def test_failures_lock_an_address(http: httpx.AsyncClient) -> None:
    for index in range(6):  # one guess at each of six names: no name reaches its own limit
        assert (await password_grant(http, f"user{index}", "guess")).status_code == 401
    response = await password_grant(http, ADMIN, ADMIN_PASSWORD)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    await asyncio.sleep(WINDOW + 0.1)
    assert (await password_grant(http, ADMIN, ADMIN_PASSWORD)).status_code == 200


async def test_concurrent_guesses_cannot_overrun_the_budget(http: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(password_grant(http, ADMIN, f"guess-{n}") for n in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 3 + [429] * 17


async def test_successes_do_not_use_the_budget(http: httpx.AsyncClient) -> None:
    for _ in range(8):
        assert (await password_grant(http, ADMIN, ADMIN_PASSWORD)).status_code == 200


async def test_wrong_current_password_counts_as_a_failed_login(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    url = f"/v1/users/{ADMIN}/password"
    body = {"password": "new-password", "current_password": "guess"}
    for _ in range(3):
        assert (await http.put(url, json=body, headers=bearer(admin_token))).status_code == 403
    assert (await http.put(url, json=body, headers=bearer(admin_token))).status_code == 429
    assert (await password_grant(http, ADMIN, ADMIN_PASSWORD)).status_code == 429


# -- device authentication over a real socket -----------------------------------------------------


async def test_failed_device_logins_lock_the_address_then_recover(
    http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    await create_device(http, admin_token, "dev1", "secret1")
    guesser = await connect_device(credentials="not-the-secret", wait=False)
    guesser.reconnect_delay = 0.02
    deadline = asyncio.get_running_loop().time() + 5
    while guesser.auth_failures < 6:  # 3 real failures, then refusals
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    await guesser.stop()

    honest = await connect_device(credentials="secret1", wait=False)
    honest.reconnect_delay = WINDOW / 4
    await asyncio.sleep(0.1)
    assert not honest.is_connected  # the right credentials are refused while the address is out
    await honest.wait_connected(WINDOW + 2)  # and accepted once the window has passed
    assert honest.auth_failures >= 1
