"""Keep tokens out of logs: the HTTP and WebSocket servers log request lines (and, at DEBUG, the
websockets library every request header), and WebSocket and SSE clients carry their token in the
query string (``?authorization=...``) or in the ``Authorization`` header.

The server takes only the plain spelling ``authorization=`` as a token
(:func:`roost.api.access.bearer_token`), but a client that sent ``?%61uthorization=...`` or
``?authorization%3D...`` has put its token in the request line all the same. So the rule is
broad, by what a piece of the line says once decoded, not by how it is spelled:

- a query parameter (any part of a word between ``?``, ``&`` and ``;``) whose text, percent-decoded
  up to :data:`MAX_DECODINGS` times with ``+`` as a space, mentions ``authorization`` in any case
  is hidden, name and value: as ``name=***`` when its name alone is some spelling of
  ``authorization`` (``%61uthorization=***``), else whole as ``***``;
- an ``Authorization:`` header line is hidden after its colon;
- the traceback of a record is hidden the same way.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

SECRET_NAME = "authorization"
MAX_DECODINGS = 4  # %2561 is %61 once decoded, then a
HEADER = re.compile(r"(authorization[ \t]*:[ \t]*)[^\r\n]+", re.IGNORECASE)
WORD = re.compile(r"\S+")
PARAMETER = re.compile(r"[^?&;]+")  # the parts of a word: a path, each query parameter
NOT_SECRET = " :=\"'"
QUOTES = "\"'"  # around a request line in uvicorn's log lines: kept after a hidden value
# every logger that writes a request target or request headers: uvicorn's (its WebSocket
# protocols give the websockets library "uvicorn.error" too), the websockets library's own, and
# Roost's that name request paths
SERVER_LOGGERS = (
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "websockets.server",
    "roost.api",
    "roost.http",
)


def redact(message: str) -> str:
    """``message`` with every mention of an authorization parameter or header hidden."""
    if "%" not in message and SECRET_NAME not in message.lower():
        return message  # nothing that decodes to it: the common case, kept cheap
    message = HEADER.sub(r"\1***", message)
    return WORD.sub(_hide_in_word, message)


def _decoded(text: str) -> str:
    for _ in range(MAX_DECODINGS):
        decoded = unquote_plus(text)
        if decoded == text:
            break
        text = decoded
    return text


def _mentions_secret(text: str) -> bool:
    return SECRET_NAME in _decoded(text).lower()


def _hide_in_word(match: re.Match[str]) -> str:
    word = match[0]
    if word == "***" or not _mentions_secret(word):
        return word
    return PARAMETER.sub(_hide_parameter, word)


def _hide_parameter(match: re.Match[str]) -> str:
    parameter = match[0]
    decoded = _decoded(parameter).lower()
    if SECRET_NAME not in decoded or decoded.strip(NOT_SECRET) == SECRET_NAME:
        return parameter  # the bare name holds nothing: "Authorization:" before its header value
    quotes = parameter[len(parameter.rstrip(QUOTES)) :]
    name, equals, _ = parameter.partition("=")
    if equals and _decoded(name).lower() == SECRET_NAME:
        return f"{name}=***{quotes}"
    return f"***{quotes}"


class TokenRedactor(logging.Filter):
    """Rewrites a record whose message or traceback carries a token, as :func:`redact` does."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # formatted here, as a handler's Formatter would, which then takes this text as is
            text = logging.Formatter().formatException(record.exc_info)
            hidden = redact(text)
            if hidden != text:
                record.exc_text = hidden
        return True


def redact_server_logs() -> None:
    """Install the redactor on the loggers of the HTTP/WebSocket servers (once)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactor) for f in logger.filters):
            logger.addFilter(TokenRedactor())
