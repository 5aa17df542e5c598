"""What an endpoint call sends (roost.endpoints.templates, roost.endpoints.http_request): the
placeholders of each place, the body of each body_type, and a request pinned to the address
checked with the name kept for Host, SNI and the certificate check."""

from __future__ import annotations

import datetime
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from roost.endpoints.http_request import new_client, parse_config, pin, prepare, send
from roost.endpoints.templates import fill_json, fill_text, fill_url
from roost.errors import InvalidInput

from endpoint_target import running_target

DATA = {"t": 21.5, "name": 'a "b" \\ c', "room": "x/y?z&w=1#f", "n": {"l": [1, {"m": True}]}}


def test_text_placeholders() -> None:
    assert fill_text("{{t}} {{ name }} {{n.l.1.m}} {{n.l}} [{{absent}}]", DATA) == (
        '21.5 a "b" \\ c true [1,{"m":true}] []'
    )
    assert fill_text("T={{}}", 7) == "T=7"
    assert fill_text("{{t}}", "not an object") == ""
    assert fill_text("{{ {{t}} }} {t} {{a b}}", DATA) == "{{ 21.5 }} {t} {{a b}}"


def test_url_placeholders_cannot_add_parts() -> None:
    url = fill_url("https://h.example/r/{{room}}?q={{name}}&n={{n}}", DATA)
    assert url == (
        "https://h.example/r/x%2Fy%3Fz%26w%3D1%23f?q=a%20%22b%22%20%5C%20c"
        "&n=%7B%22l%22%3A%5B1%2C%7B%22m%22%3Atrue%7D%5D%7D"
    )
    assert httpx.URL(url).host == "h.example"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{"v": {{t}}, "o": {{n}}, "m": {{absent}}}', {"v": 21.5, "o": DATA["n"], "m": None}),
        ('{"s": "name: {{name}}"}', {"s": 'name: a "b" \\ c'}),
        ('{"s": "{{t}}", "e": "\\"{{t}}\\""}', {"s": "21.5", "e": '"21.5"'}),
        ('{"all": {{}}}', {"all": DATA}),
        ('{"s": "{{n}}"}', {"s": json.dumps(DATA["n"], separators=(",", ":"))}),
    ],
)
def test_json_placeholders_give_json(template: str, expected: Any) -> None:
    assert json.loads(fill_json(template, DATA)) == expected


def test_a_value_never_breaks_out_of_a_json_string() -> None:
    hostile = {"x": '", "admin": true, "y": "'}
    assert json.loads(fill_json('{"x": "{{x}}"}', hostile)) == hostile


def _config(**fields: Any) -> dict[str, Any]:
    return parse_config({"url": "http://h.example/", **fields})


def test_bodies_by_body_type() -> None:
    forwarded = prepare(_config(), {"a": [1, "é"]})
    assert json.loads(forwarded.content or b"") == {"a": [1, "é"]}
    assert ("Content-Type", "application/json") in forwarded.headers
    assert prepare(_config(method="GET"), None).content is None
    templated = prepare(_config(body='{"x": {{a}}}'), {"a": 2})
    assert templated.content == b'{"x": 2}'
    text = prepare(_config(body_type="custom", body="<t>{{a}}</t>"), {"a": "<&>"})
    assert (text.content, text.headers) == (b"<t><&></t>", [])
    xml = [{"key": "Content-Type", "value": "application/xml"}]
    assert prepare(_config(body_type="custom", body="{{a}}", headers=xml), {"a": "s"}).content == (
        b"s"
    )
    typed = [{"key": "content-type", "value": "application/vnd.x+json"}]
    made = prepare(_config(body_type="custom", body='{"a": {{a}}}', headers=typed), {"a": "s"})
    assert made.content == b'{"a": "s"}'
    assert prepare(_config(body_type="custom"), {"a": 1}).content is None


def test_filled_headers_and_urls_are_checked() -> None:
    header = _config(headers=[{"key": "X-A", "value": "{{a}}"}])
    assert prepare(header, {"a": "one line"}).headers[0] == ("X-A", "one line")
    for value in ("two\r\nlines", "caf\u00e9", "a\x0bb", "a\x00b"):
        with pytest.raises(InvalidInput, match="cannot carry"):
            prepare(header, {"a": value})
    assert prepare(header, {"a": "\t~ !"}).headers[0] == ("X-A", "\t~ !")
    with pytest.raises(InvalidInput):
        parse_config({"url": "{{scheme}}://x"})  # the scheme is never a placeholder
    with pytest.raises(InvalidInput):
        prepare(parse_config({"url": "http{{s}}://x/"}), {"s": ":"})


def localhost_only(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate that names localhost, and no address."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_https_goes_to_the_checked_address_with_the_name_kept(tmp_path: Path) -> None:
    """The connection goes to 127.0.0.1, and the certificate, which names localhost only, is
    checked against the URL's name: the TLS handshake (SNI) and the check carry it."""
    cert, key = localhost_only(tmp_path)
    trusting = httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert)))
    async with running_target(tls=(cert, key)) as target, trusting:
        request = prepare(_config(url=f"https://localhost:{target.port}/in"), {"a": 1})
        pinned = await pin(request, allow_private=True)
        assert pinned.url.host in ("127.0.0.1", "::1")
        answer = await send(trusting, pinned, limit=100)
        assert (answer.status, answer.body) == (200, b'{"ok": true}')
        got = target.received.get_nowait()
        assert got.headers["host"] == f"localhost:{target.port}" and got.target == "/in"
        # the server's own client checks certificates against the system's authorities
        async with new_client(5) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await send(client, pinned, limit=100)
        assert target.received.empty()
