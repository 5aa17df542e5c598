"""Keep tokens out of logs: the HTTP server logs request lines, and WebSocket and SSE clients
carry their token in the query string (``?authorization=...``).

A parameter is hidden when its name, percent-decoded, contains ``authorization`` in any case: the
server takes only the plain spelling as a token (:func:`roost.api.access.bearer_token`), but a
client that sent ``?%61uthorization=...`` has put its token in the request line all the same.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

# name=value inside a query string: the name stops at the separators around it
QUERY_PARAMETER = re.compile(r"([^\s&?=;\"'/]+)=([^&\s\"']+)")
SECRET_NAME = "authorization"
MAX_DECODINGS = 4  # %2561 is %61 once decoded, then a
SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access", "websockets.server")


def redact(message: str) -> str:
    """``message`` with the value of every authorization parameter replaced by ``***``."""
    if "=" not in message:
        return message
    return QUERY_PARAMETER.sub(_hide_secret, message)


def _hide_secret(match: re.Match[str]) -> str:
    name = match[1]
    for _ in range(MAX_DECODINGS):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    if SECRET_NAME in name.lower():
        return f"{match[1]}=***"
    return match[0]


class TokenRedactor(logging.Filter):
    """Rewrites a record whose message carries a token as ``authorization=***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_server_logs() -> None:
    """Install the redactor on the loggers of the HTTP/WebSocket servers (once)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactor) for f in logger.filters):
            logger.addFilter(TokenRedactor())
