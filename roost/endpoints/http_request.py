"""The ``http_request`` endpoint type: its config, the request a call makes, and sending it.

Config (Thinger's console fields, thinger-api.md 2.11): ``method`` (GET, POST, PUT, PATCH or
DELETE; default POST), ``url`` (http or https), ``headers`` (``[{key, value}]``), ``body`` (a
template) and ``body_type``: ``json`` sends the call data as JSON (or, when ``body`` is not
empty, that template filled as JSON), ``custom`` sends ``body`` filled (as JSON when a
``Content-Type`` header says JSON, else as text). The URL and the header values take
placeholders too (:mod:`roost.endpoints.templates`).

Sending: the host is resolved and checked once (:func:`pin`, :mod:`roost.endpoints.addresses`),
and the request goes to that address (:func:`send`: the URL's host replaced by it, ``Host``, TLS
SNI and the certificate check kept to the name), with no proxy from the environment, no redirect
followed (a 3xx is the answer) and at most ``limit`` bytes of the answer read.
"""

from __future__ import annotations

import logging
import string
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import httpx

from roost.endpoints.addresses import checked_address
from roost.endpoints.templates import fill_json, fill_text, fill_url
from roost.errors import InvalidInput

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BODY_TYPES = ("json", "custom")
MAX_URL = 2048
MAX_HEADERS = 32
MAX_HEADER_VALUE = 4096
MAX_BODY = 65536  # characters of the body template
# the characters of a header name (an RFC 9110 token)
_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
MAX_HEADER_NAME = 256
# the characters of a header value: RFC 9110 field-vchar (visible ASCII), SP and HTAB; obs-text
# (bytes 0x80-0xFF) is refused, so a non-ASCII value is never sent in some guessed encoding
_FIELD_VALUE = frozenset(chr(c) for c in range(0x21, 0x7F)) | {" ", "\t"}
_SCHEMES = ("http://", "https://")
_SERVER_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def parse_config(config: object) -> dict[str, Any]:
    """An ``http_request`` config, checked, with only the fields it uses; InvalidInput if not."""
    if not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object")
    method = config.get("method", "POST")
    if method not in METHODS:
        raise InvalidInput(f"config.method must be one of {', '.join(METHODS)}")
    url = config.get("url")
    if not isinstance(url, str) or not url.lower().startswith(_SCHEMES) or len(url) > MAX_URL:
        raise InvalidInput(
            f"config.url must be an http:// or https:// URL of at most {MAX_URL} characters"
        )
    body = config.get("body", "")
    if body is None:
        body = ""
    if not isinstance(body, str) or len(body) > MAX_BODY:
        raise InvalidInput(f"config.body must be a string of at most {MAX_BODY} characters")
    body_type = config.get("body_type", "json")
    if body_type not in BODY_TYPES:
        raise InvalidInput(f"config.body_type must be one of {', '.join(BODY_TYPES)}")
    return {
        "method": method,
        "url": url,
        "headers": _headers(config.get("headers", [])),
        "body": body,
        "body_type": body_type,
    }


def _headers(headers: object) -> list[dict[str, str]]:
    if headers is None:
        return []
    if not isinstance(headers, list) or len(headers) > MAX_HEADERS:
        raise InvalidInput(f"config.headers must be a list of at most {MAX_HEADERS} {{key, value}}")
    checked = []
    for header in headers:
        key = header.get("key") if isinstance(header, dict) else None
        value = header.get("value", "") if isinstance(header, dict) else None
        if not isinstance(key, str) or not _header_name(key):
            raise InvalidInput("each of config.headers needs a key that is a header name")
        if key.lower() in _SERVER_HEADERS:
            raise InvalidInput(f"header {key!r} is set by the server, from the URL and body")
        if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE or _broken(value):
            raise InvalidInput(
                f"header {key!r}: the value must be at most {MAX_HEADER_VALUE} characters,"
                " visible ASCII, spaces and tabs only"
            )
        checked.append({"key": key, "value": value})
    return checked


def _header_name(key: str) -> bool:
    return 0 < len(key) <= MAX_HEADER_NAME and all(c in _TOKEN for c in key)


def _broken(value: str) -> bool:
    """Whether a header value holds a character outside RFC 9110's field-value (visible ASCII,
    space, horizontal tab): a line break, a control character or a non-ASCII one."""
    return not all(c in _FIELD_VALUE for c in value)


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    content: bytes | None


def prepare(config: dict[str, Any], data: Any) -> PreparedRequest:
    """The request a call with ``data`` makes; InvalidInput when the filled URL or a filled
    header cannot be sent."""
    url = fill_url(config["url"], data)
    if not url.lower().startswith(_SCHEMES):
        raise InvalidInput("the URL, filled, is not an http:// or https:// URL")
    headers = []
    for header in config["headers"]:
        value = fill_text(header["value"], data)
        if _broken(value):
            raise InvalidInput(
                f"header {header['key']!r}, filled from the call data, holds a character a"
                " header cannot carry (only visible ASCII, spaces and tabs)"
            )
        headers.append((header["key"], value))
    return PreparedRequest(config["method"], url, headers, _content(config, data, headers))


def _content(config: dict[str, Any], data: Any, headers: list[tuple[str, str]]) -> bytes | None:
    body: str = config["body"]
    content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
    if config["body_type"] == "custom":
        if not body:
            return None
        json_body = content_type is not None and "json" in content_type.lower()
        return (fill_json(body, data) if json_body else fill_text(body, data)).encode()
    if not body and data is None:
        return None  # no call data to forward
    if content_type is None:
        headers.append(("Content-Type", "application/json"))
    return fill_json(body or "{{}}", data).encode()


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes  # at most the limit asked for
    content_type: str
    truncated: bool


@dataclass(frozen=True, slots=True)
class Pinned:
    """A request bound to the address its host was checked to have."""

    request: PreparedRequest
    url: httpx.URL  # the host replaced by the address
    headers: list[tuple[str, str]]  # Host first
    extensions: dict[str, Any]  # the name for TLS SNI and the certificate check


async def pin(
    request: PreparedRequest, allow_private: bool, lookups: Executor | None = None
) -> Pinned:
    """``request`` bound to the address its host resolves to (looked up on ``lookups``), once
    checked. Raises Forbidden for a refused address, InvalidInput for a URL httpx cannot use,
    OSError when the name does not resolve."""
    try:
        url = httpx.URL(request.url)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"the URL cannot be used: {exc}") from None
    host = url.raw_host.decode("ascii")
    if url.scheme not in ("http", "https") or not host:
        raise InvalidInput("the URL needs an http or https scheme and a host")
    port = url.port or (443 if url.scheme == "https" else 80)
    address = await checked_address(host.strip("[]"), port, allow_private, lookups)
    headers = [("Host", url.netloc.decode("ascii")), *request.headers]
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return Pinned(request, url.copy_with(host=address), headers, extensions)


async def send(client: httpx.AsyncClient, pinned: Pinned, limit: int) -> Answer:
    """Sends a pinned request and reads at most ``limit`` bytes of the answer. Raises
    InvalidInput for a URL httpx cannot use, OSError or httpx.TransportError when the target
    cannot be reached."""
    request = pinned.request
    try:
        async with client.stream(
            request.method,
            pinned.url,
            headers=pinned.headers,
            content=request.content,
            extensions=pinned.extensions,
        ) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    break
            content_type = response.headers.get("content-type", "")
            truncated = len(body) > limit
            return Answer(response.status_code, bytes(body[:limit]), content_type, truncated)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"the URL cannot be used: {exc}") from None


CLIENT_LOGGERS = ("httpx", "httpcore")


def quiet_client_logs() -> None:
    """httpx logs every request's URL at INFO; an endpoint's URL may carry a key (``?apikey=``,
    a token in the path) that must not reach the server's log, so its loggers say WARNING and
    above only."""
    for name in CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def new_client(timeout: float) -> httpx.AsyncClient:
    """The client endpoint calls share: no proxies or settings from the environment, no
    redirects, and no connection kept (one pinned to an address for one name must not serve
    another name)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )
