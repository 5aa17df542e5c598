"""Keep tokens out of logs: the HTTP server logs request lines, and WebSocket and SSE clients
carry their token in the query string (``?authorization=...``)."""

from __future__ import annotations

import logging
import re

TOKEN_IN_QUERY = re.compile(r"(authorization=)[^&\s\"']+", re.IGNORECASE)
SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access", "websockets.server")


class TokenRedactor(logging.Filter):
    """Rewrites a record whose message carries a token as ``authorization=***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = TOKEN_IN_QUERY.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_server_logs() -> None:
    """Install the redactor on the loggers of the HTTP/WebSocket servers (once)."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactor) for f in logger.filters):
            logger.addFilter(TokenRedactor())
