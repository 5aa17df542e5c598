"""Endpoint calls: checked, queued by user, delivered in turn, announced on the bus.

:meth:`EndpointCalls.call` first holds a place for the call (``endpoints_queue_per_user`` of
one user, queued, waiting a retry or under way; ``endpoints_queue`` waiting in all; full:
Unavailable at once, before the store is read, never more memory), then checks it (the endpoint
exists, is enabled, is of a type this server calls, its request can be made from the data) and
waits for its result.

Each user's calls wait in a queue of their own (:mod:`roost.endpoints.turns`); while fewer than
``endpoints_workers`` calls are under way, the next one started is that of the user served least
lately, and at most a quarter of the workers (:func:`per_user_workers`, at least one) serve one
user at once, so a user with a backlog, or with a target that fails, cannot keep the others
waiting. Each attempt is bounded by ``endpoints_timeout`` seconds (name resolution, on a small
thread pool of its own, connection and answer together) and repeated ``endpoints_retries`` more
times after a connection failure, a timeout or a 5xx answer, never after another answer, a
refused address or a name not resolved in time. A call waiting for its retry
(``endpoints_retry_delay`` seconds, doubled after each attempt) holds no worker: it is queued
again, first of its user's, when the delay is over. Each result, delivered or given up, is
published as the server event ``endpoint_call_response``
(:func:`roost.bus.events.endpoint_call_response`) with the target's ``status``, its ``body``
(at most ``endpoints_response_bytes``), the ``duration`` in ms, the ``attempts`` made and the
``error``, if any.

Whoever called waits for the result (the REST route answers with the target's answer, a device
gets its confirmation once the call is done); a caller that goes away does not stop the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from roost import ids
from roost.bus import events
from roost.bus.base import DeviceKey, Event
from roost.config import Settings
from roost.endpoints import http_request
from roost.endpoints.turns import Turns
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
LOOKUP_THREADS = 4  # at most, for the host name lookups of endpoint calls


def per_user_workers(settings: Settings) -> int:
    """How many calls of one user may be under way at once: a quarter of the workers, at
    least one."""
    return max(1, settings.endpoints_workers // 4)


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


@dataclass(slots=True, eq=False)
class _Job:
    endpoint: Endpoint
    request: http_request.PreparedRequest
    device: str | None
    result: asyncio.Future[CallResult]
    started: float = 0.0  # loop time of the first attempt
    attempts: int = 0
    delay: float = 0.0  # before the next retry


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
        self.workers = max(1, settings.endpoints_workers)
        self._turns: Turns[_Job] = Turns(per_user_workers(settings))
        self._attempts: set[asyncio.Task[None]] = set()  # one task per attempt under way
        self._retries: dict[_Job, asyncio.TimerHandle] = {}  # calls waiting to be retried
        self._client: httpx.AsyncClient | None = None  # made on the first call, in its loop
        self._lookups: ThreadPoolExecutor | None = None  # the host name lookups, owned
        self._closed = False
        self._pending: dict[str, int] = {}  # owner -> calls queued, waiting a retry or under way
        self._total = 0  # the same, all users

    async def call(
        self, owner: str, endpoint_id: str, data: Any, device: str | None = None
    ) -> CallResult:
        """Calls ``owner``'s endpoint with ``data`` (from ``device``, if a device called) and
        returns the result once delivered or given up. Raises Unavailable (the queue, or the
        user's share of it, is full: checked before anything is read), NotFound (no such
        endpoint), Conflict (disabled), Unsupported (a type this server does not call),
        InvalidInput (its request cannot be made from the data)."""
        self._admit(owner)  # the place is held from here, given back if the call is refused
        try:
            job = await self._job(owner, endpoint_id, data, device)
            self._started()
        except BaseException:
            self._release(owner)
            raise
        job.result.add_done_callback(lambda _: self._release(owner))
        self._turns.add(owner, job)
        self._dispatch()
        return await asyncio.shield(job.result)

    def _admit(self, owner: str) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down")
        limit = self.settings.endpoints_queue_per_user
        if limit and self._pending.get(owner, 0) >= limit:
            raise Unavailable(
                f"user {owner!r} has too many endpoint calls under way"
                " (endpoints_queue_per_user): retry later"
            )
        if self._total - self._turns.running >= max(1, self.settings.endpoints_queue):
            raise Unavailable("too many endpoint calls are waiting (endpoints_queue): retry later")
        self._pending[owner] = self._pending.get(owner, 0) + 1
        self._total += 1

    async def _job(self, owner: str, endpoint_id: str, data: Any, device: str | None) -> _Job:
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
        return _Job(record, request, device, asyncio.get_running_loop().create_future())

    def _release(self, owner: str) -> None:
        """One call of ``owner`` is done (delivered, given up, refused or dropped at shutdown)."""
        left = self._pending.pop(owner) - 1
        self._total -= 1
        if left:
            self._pending[owner] = left

    def _started(self) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down")
        if self._client is None:
            http_request.quiet_client_logs()
            self._client = http_request.new_client(self.settings.endpoints_timeout)
            self._lookups = ThreadPoolExecutor(
                min(self.workers, LOOKUP_THREADS), thread_name_prefix="roost-endpoint-lookup"
            )

    def _dispatch(self) -> None:
        """Starts the calls waiting, in turn, while a worker is free."""
        loop = asyncio.get_running_loop()
        while not self._closed and self._turns.running < self.workers:
            taken = self._turns.take()
            if taken is None:
                return
            owner, job = taken
            task = loop.create_task(self._run(owner, job), name="roost-endpoint-call")
            self._attempts.add(task)
            task.add_done_callback(self._attempts.discard)

    async def close(self) -> None:
        """Stops the calls; those still queued, waiting a retry or under way fail as
        Unavailable."""
        self._closed = True
        shutting = Unavailable("the server is shutting down")
        for job, handle in self._retries.items():
            handle.cancel()
            _settle(job, shutting)
        self._retries.clear()
        for job in self._turns.drain():
            _settle(job, shutting)
        attempts = list(self._attempts)
        for task in attempts:
            task.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._lookups is not None:  # a lookup stuck in the resolver is not waited for
            self._lookups.shutdown(wait=False, cancel_futures=True)
            self._lookups = None

    async def _run(self, owner: str, job: _Job) -> None:
        """One attempt of a call; then the call is done, or waits for its retry without a
        worker."""
        try:
            result = await self._try(job)
        except asyncio.CancelledError:
            _settle(job, Unavailable("the server is shutting down"))
            raise
        except Exception:  # a bug: the call fails, the server lives on
            log.exception("endpoint %s of %s: delivery failed", *_name(job))
            result = CallResult(False, None, "", "", 0, job.attempts, "internal error")
        finally:
            self._turns.done(owner)
        if result is None:
            loop = asyncio.get_running_loop()
            self._retries[job] = loop.call_later(job.delay, self._retry, owner, job)
            job.delay *= 2
        else:
            self._finish(job, result)
        self._dispatch()

    def _retry(self, owner: str, job: _Job) -> None:
        del self._retries[job]
        self._turns.add(owner, job, first=True)
        self._dispatch()

    def _finish(self, job: _Job, result: CallResult) -> None:
        try:
            self._announce(job, result)
        except Exception:  # the caller still gets its result
            log.exception("endpoint %s of %s: result not announced", *_name(job))
        _settle(job, result)

    async def _try(self, job: _Job) -> CallResult | None:
        """One attempt: the call's result, or None when it is to be tried again."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        if job.attempts == 0:
            job.started, job.delay = loop.time(), settings.endpoints_retry_delay
        job.attempts += 1
        answer, error, retry = await self._attempt(job.request)
        if retry and job.attempts <= settings.endpoints_retries:
            log.debug("endpoint %s of %s: attempt %d failed: %s", *_name(job), job.attempts, error)
            return None
        ms = int((loop.time() - job.started) * 1000)
        if answer is None:
            return CallResult(False, None, "", "", ms, job.attempts, error)
        body = answer.body.decode("utf-8", "replace")
        return CallResult(
            error is None,
            answer.status,
            body,
            answer.content_type,
            ms,
            job.attempts,
            error,
            answer.truncated,
        )

    async def _attempt(
        self, request: http_request.PreparedRequest
    ) -> tuple[http_request.Answer | None, str | None, bool]:
        """One attempt: (the answer if one came, why it failed if it did, whether to retry).
        A host name not resolved in time is not retried: its lookup may still hold a thread."""
        settings = self.settings
        timeout = settings.endpoints_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                pinned = await http_request.pin(
                    request, settings.endpoints_allow_private, self._lookups
                )
        except (Forbidden, InvalidInput) as exc:
            return None, exc.message, False
        except TimeoutError:
            return None, f"the host name was not resolved within {timeout:g} s", False
        except OSError as exc:
            return None, f"the target cannot be reached: {_reason(exc)}", True
        assert self._client is not None
        try:
            async with asyncio.timeout_at(deadline):
                answer = await http_request.send(
                    self._client, pinned, settings.endpoints_response_bytes
                )
        except InvalidInput as exc:
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
