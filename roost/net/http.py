"""The HTTP connection protocol: uvicorn's httptools protocol with a bounded request head.

httptools buffers a header line until it is complete, with no limit of its own, so one client
could make a connection hold megabytes with a single endless header. Here the bytes received
while a request's head (request line and headers) is incomplete are counted, and past
``MAX_HEAD_BYTES`` the request is answered 431 and the connection closed.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
_BODY = b'{"error":{"message":"request line and headers over 64 KiB"}}'
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


class BoundedHttpProtocol(HttpToolsProtocol):
    _in_head = True
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()
