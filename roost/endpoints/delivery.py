"""Endpoint calls: checked, queued, delivered by a few workers, announced on the bus.

:meth:`EndpointCalls.call` checks the call (the endpoint exists, is enabled, is of a type this
server calls, its request can be made from the data), puts it in a bounded queue
(``endpoints_queue`` in all, ``endpoints_queue_per_user`` of one user, queued or under way;
full: Unavailable, never more memory) and waits for its result. A pool of
``endpoints_workers`` workers delivers the queued calls: each attempt bounded by
``endpoints_timeout`` seconds (name resolution, connection and answer together), repeated
``endpoints_retries`` more times after a connection failure, a timeout or a 5xx answer (waiting
``endpoints_retry_delay`` seconds, doubled after each attempt), never after another answer or a
refused address. Each result, delivered or given up, is published as the server event
``endpoint_call_response`` (:func:`roost.bus.events.endpoint_call_response`) with the target's
``status``, its ``body`` (at most ``endpoints_response_bytes``), the ``duration`` in ms, the
``attempts`` made and the ``error``, if any.

Whoever called waits for the result (the REST route answers with the target's answer, a device
gets its confirmation once the call is done); a caller that goes away does not stop the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from roost import ids
from roost.bus import events
from roost.bus.base import DeviceKey, Event
from roost.config import Settings
from roost.endpoints import http_request
from roost.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RoostError,
    Unavailable,
    Unsupported,
)
from roost.store.base import Endpoint, Store
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.endpoints")

CALLED_TYPES = ("http_request",)  # the endpoint types this server calls; others are kept only


@dataclass(frozen=True, slots=True)
class CallResult:
    ok: bool  # the target answered 2xx
    status: int | None  # the target's HTTP status; None: no answer
    body: str  # the start of its answer (UTF-8, invalid bytes replaced)
    content_type: str
    duration_ms: int
    attempts: int
    error: str | None  # why the call failed, None if it did not
    truncated: bool = False  # the answer was longer than the limit

    def fields(self) -> dict[str, PsonValue]:
        """The event's fields beside ``endpoint``, ``ts`` and ``user``."""
        return {
            "status": self.status,
            "body": self.body,
            "duration": self.duration_ms,
            "attempts": self.attempts,
            "error": self.error,
            "truncated": self.truncated,
        }


@dataclass(slots=True)
class _Job:
    endpoint: Endpoint
    request: http_request.PreparedRequest
    device: str | None
    result: asyncio.Future[CallResult]


class EndpointCalls:
    """The calls of every user's endpoints in this process (see the module's notes)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Callable[[], float],
        publish: Callable[[Event], None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.publish = publish
        self._queue: asyncio.Queue[_Job] | None = None  # made on the first call, in its loop
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._pending: dict[str, int] = {}  # owner -> calls queued or under way

    async def call(
        self, owner: str, endpoint_id: str, data: Any, device: str | None = None
    ) -> CallResult:
        """Calls ``owner``'s endpoint with ``data`` (from ``device``, if a device called) and
        returns the result once delivered or given up. Raises NotFound (no such endpoint),
        Conflict (disabled), Unsupported (a type this server does not call), InvalidInput
        (its request cannot be made from the data), Unavailable (the queue is full)."""
        record = await self.store.get_endpoint(owner, endpoint_id)
        if record is None:
            raise NotFound(f"endpoint {endpoint_id!r} not found")
        if not record.enabled:
            raise Conflict(f"endpoint {endpoint_id!r} is disabled")
        if record.type not in CALLED_TYPES:
            raise Unsupported(
                f"endpoint {endpoint_id!r} is of type {record.type!r}, which this server keeps"
                f" but does not call (it calls {', '.join(CALLED_TYPES)})"
            )
        try:
            request = http_request.prepare(http_request.parse_config(record.config), data)
        except (TypeError, ValueError, RecursionError):  # bytes, NaN, too deep: not JSON
            raise InvalidInput("the call data cannot be written as JSON") from None
        limit = self.settings.endpoints_queue_per_user
        if limit and self._pending.get(owner, 0) >= limit:
            raise Unavailable(
                f"user {owner!r} has too many endpoint calls under way"
                " (endpoints_queue_per_user): retry later"
            )
        job = _Job(record, request, device, asyncio.get_running_loop().create_future())
        try:
            self._started().put_nowait(job)
        except asyncio.QueueFull:
            raise Unavailable(
                "too many endpoint calls are waiting (endpoints_queue): retry later"
            ) from None
        self._pending[owner] = self._pending.get(owner, 0) + 1
        job.result.add_done_callback(lambda _: self._release(owner))
        return await asyncio.shield(job.result)

    def _release(self, owner: str) -> None:
        """One call of ``owner`` is done (delivered, given up, or dropped at shutdown)."""
        left = self._pending.pop(owner) - 1
        if left:
            self._pending[owner] = left

    def _started(self) -> asyncio.Queue[_Job]:
        if self._closed:
            raise Unavailable("the server is shutting down")
        if self._queue is None:
            settings = self.settings
            self._queue = asyncio.Queue(max(1, settings.endpoints_queue))
            http_request.quiet_client_logs()
            self._client = http_request.new_client(settings.endpoints_timeout)
            loop = asyncio.get_running_loop()
            self._workers = [
                loop.create_task(self._work(self._queue), name=f"roost-endpoints-{n}")
                for n in range(max(1, settings.endpoints_workers))
            ]
        return self._queue

    async def close(self) -> None:
        """Stops the workers; the calls still queued or under way fail as Unavailable."""
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        queue, self._queue = self._queue, None
        while queue is not None and not queue.empty():
            _settle(queue.get_nowait(), Unavailable("the server is shutting down"))
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _work(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            job = await queue.get()
            try:
                result = await self._deliver(job)
            except asyncio.CancelledError:
                _settle(job, Unavailable("the server is shutting down"))
                raise
            except Exception:  # a bug: the call fails, the worker lives on
                log.exception("endpoint %s of %s: delivery failed", *_name(job))
                result = CallResult(False, None, "", "", 0, 0, "internal error")
            try:
                self._announce(job, result)
            except Exception:  # the caller still gets its result
                log.exception("endpoint %s of %s: result not announced", *_name(job))
            _settle(job, result)

    async def _deliver(self, job: _Job) -> CallResult:
        settings = self.settings
        loop = asyncio.get_running_loop()
        started, delay, attempts = loop.time(), settings.endpoints_retry_delay, 0
        while True:
            attempts += 1
            answer, error, retry = await self._attempt(job.request)
            if not retry or attempts > settings.endpoints_retries:
                ms = int((loop.time() - started) * 1000)
                if answer is None:
                    return CallResult(False, None, "", "", ms, attempts, error)
                body = answer.body.decode("utf-8", "replace")
                return CallResult(
                    error is None,
                    answer.status,
                    body,
                    answer.content_type,
                    ms,
                    attempts,
                    error,
                    answer.truncated,
                )
            log.debug("endpoint %s of %s: attempt %d failed: %s", *_name(job), attempts, error)
            await asyncio.sleep(delay)
            delay *= 2

    async def _attempt(
        self, request: http_request.PreparedRequest
    ) -> tuple[http_request.Answer | None, str | None, bool]:
        """One attempt: (the answer if one came, why it failed if it did, whether to retry)."""
        timeout = self.settings.endpoints_timeout
        try:
            async with asyncio.timeout(timeout):
                answer = await self._send(request)
        except (Forbidden, InvalidInput) as exc:
            return None, exc.message, False
        except TimeoutError:
            return None, f"no answer within {timeout:g} s", True
        except (OSError, httpx.TransportError) as exc:
            return None, f"the target cannot be reached: {_reason(exc)}", True
        except httpx.HTTPError as exc:
            return None, f"the answer cannot be read: {_reason(exc)}", False
        status = answer.status
        if 200 <= status < 300:
            return answer, None, False
        if 300 <= status < 400:
            return answer, f"the target answered {status} (redirects are not followed)", False
        return answer, f"the target answered {status}", status >= 500

    async def _send(self, request: http_request.PreparedRequest) -> http_request.Answer:
        assert self._client is not None
        settings = self.settings
        limit = settings.endpoints_response_bytes
        try:
            return await http_request.send(
                self._client, request, settings.endpoints_allow_private, limit
            )
        except httpx.InvalidURL as exc:
            raise InvalidInput(f"the URL cannot be used: {exc}") from None

    def _announce(self, job: _Job, result: CallResult) -> None:
        owner, endpoint = job.endpoint.owner, job.endpoint.endpoint
        if result.ok:
            log.debug("endpoint %s of %s: %d", endpoint, owner, result.status)
        else:
            log.info("endpoint %s of %s failed: %s", endpoint, owner, result.error)
        fields = result.fields()
        if job.device is not None:
            fields["device"] = job.device
        ts = int(self.clock() * 1000)
        self.publish(events.endpoint_call_response(owner, endpoint, ts, **fields))


async def device_call(
    calls: EndpointCalls | None, device: DeviceKey, endpoint: PsonValue, data: PsonValue
) -> str | None:
    """A device's call of its user's endpoint (legacy flag 8, IOTMP service 4): None once the
    target answered 2xx, else why not (for the confirmation the device may have asked for)."""
    if calls is None:
        return "endpoints are not served here"
    if not ids.ENDPOINT.matches(endpoint):
        return "the endpoint must be an endpoint id"
    assert isinstance(endpoint, str)  # matches checked it
    try:
        result = await calls.call(device.owner, endpoint, data, device.device)
    except RoostError as exc:
        log.debug("device %s: endpoint %s refused: %s", device, endpoint, exc.message)
        return exc.message
    return None if result.ok else result.error


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _name(job: _Job) -> tuple[str, str]:
    return job.endpoint.endpoint, job.endpoint.owner


def _settle(job: _Job, outcome: CallResult | Exception) -> None:
    if job.result.done():
        return
    if isinstance(outcome, Exception):
        job.result.set_exception(outcome)
        job.result.exception()  # retrieved: a caller gone away leaves no warning
    else:
        job.result.set_result(outcome)
