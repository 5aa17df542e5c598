"""The token holes of issue 14 item 8, each reproduced as the review found it, over real HTTP:
non-canonical JWT spellings, re-created access tokens, ``?%61uthorization=``, deny rules Roost
cannot honour, and refresh rotations whose answer was lost."""

from __future__ import annotations

import base64

import httpx
import pytest

from conftest import ADMIN, bearer, login

DEVICES = f"/v1/users/{ADMIN}/devices"
TOKENS = f"/v1/users/{ADMIN}/tokens"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert isinstance(response.json()["error"]["message"], str)


# -- f. one spelling per JWT ------------------------------------------------------------------


def same_bytes_other_spelling(token: str) -> str:
    """The token with the unused low bit of its signature's last character set: base64url of the
    very same bytes, which a lenient decoder accepts."""
    head, payload, signature = token.split(".")
    unused_bits = (6 * len(signature)) % 8
    assert unused_bits, "a 32-byte HMAC in base64url leaves 2 bits unused"
    last = B64URL[B64URL.index(signature[-1]) ^ 1]
    variant = signature[:-1] + last
    decode = base64.urlsafe_b64decode
    assert decode(variant + "=" * (-len(variant) % 4)) == decode(signature + "=")
    return f"{head}.{payload}.{variant}"


@pytest.mark.parametrize("spell", ["padded", "double padded", "unused bits set"])
async def test_non_canonical_spellings_of_a_valid_token_are_refused(
    http: httpx.AsyncClient, spell: str
) -> None:
    token = await login(http)
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200  # now cached
    variant = {
        "padded": token + "=",
        "double padded": token + "==",
        "unused bits set": same_bytes_other_spelling(token),
    }[spell]
    assert_error(await http.get(DEVICES, headers=bearer(variant)), 401)
    assert_error(await http.get(DEVICES, params={"authorization": variant}), 401)
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200


async def test_a_non_canonical_spelling_is_refused_before_the_canonical_one_is_seen(
    http: httpx.AsyncClient,
) -> None:
    token = await login(http)
    assert_error(await http.get(DEVICES, headers=bearer(same_bytes_other_spelling(token))), 401)
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200
