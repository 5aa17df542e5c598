"""Device-to-device calls: a device runs a resource of another device of its user (legacy flag 9
CALL_DEVICE, IOTMP service 3) and gets the reply on the stream id of its request.

The call reaches the target as the API's do: a request on the :class:`~roost.bus.base.Bus`
(wherever the target's session lives), with the ``call_timeout_ms`` deadline. The caller names
the target by its device id alone, so it is always looked for in the caller's own tree: another
user's device cannot be named, and anything that is not a device id is refused. Every call ends in
an answer (the reply, or a refusal with a reason), so a calling device never hangs; one that asks
for no answer (stream id 0) has its call run all the same. A device may have at most
``device_calls_in_flight`` calls waiting at once; past that, it is refused at once. Each call is a
frame the device sent unasked, so it also counts against its ``device_frame_rate`` (net/flow.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from roost import ids
from roost.bus.base import Bus, DeviceKey, Operation, ResourcePath
from roost.errors import RoostError
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.devices.peers")


class CallAnswers(Protocol):
    """Where a call's answer goes: the calling device's connection (roost.net)."""

    def answer_call(self, stream_id: int, ok: bool, payload: PsonValue, error: str) -> None:
        """Put the reply (``ok``, ``payload``) or the refusal (``error``) on the wire."""


def target_path(resource: PsonValue) -> ResourcePath | None:
    """The target resource's path: legacy sends ``["a", "b"]``, IOTMP ``"a/b"``; None if it is
    neither (or names nothing)."""
    parts = resource.split("/") if isinstance(resource, str) else resource
    if not isinstance(parts, list) or not parts:
        return None
    path = tuple(part for part in parts if isinstance(part, str) and part)
    return path if len(path) == len(parts) else None


class PeerCalls:
    __slots__ = ("_in_flight", "_spawn", "bus", "max_in_flight", "timeout")

    def __init__(
        self,
        timeout: float,
        max_in_flight: int,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
    ) -> None:
        self.bus: Bus | None = None  # set once the bus exists (roost.wiring.build_services)
        self.timeout = timeout  # seconds: call_timeout_ms
        self.max_in_flight = max_in_flight  # per calling device: device_calls_in_flight
        self._spawn = spawn  # owns the calls' tasks (the gateway's: cancelled on shutdown)
        self._in_flight: dict[DeviceKey, int] = {}

    def call(
        self,
        caller: DeviceKey,
        replies: CallAnswers,
        stream_id: int,
        target: PsonValue,
        resource: PsonValue,
        payload: PsonValue,
    ) -> None:
        """Run ``caller``'s call of ``target``'s ``resource`` with ``payload``; its answer goes to
        ``replies`` on ``stream_id`` (none for stream id 0)."""
        path = target_path(resource)
        if not ids.DEVICE.matches(target):
            error = "the target must be a device id of the caller's user"
        elif path is None:
            error = "the target resource must be a resource name or path"
        elif self.bus is None:
            error = "device calls are not available"
        elif self._in_flight.get(caller, 0) >= self.max_in_flight:
            error = f"more than {self.max_in_flight} device calls in flight"
        else:
            assert isinstance(target, str)  # ids.DEVICE.matches checked it
            self._in_flight[caller] = self._in_flight.get(caller, 0) + 1
            key = DeviceKey(caller.owner, target)
            self._spawn(self._run(self.bus, caller, key, path, payload, replies, stream_id))
            return
        log.debug("device %s: call of %r refused: %s", caller, target, error)
        if stream_id:
            replies.answer_call(stream_id, False, None, error)

    async def _run(
        self,
        bus: Bus,
        caller: DeviceKey,
        key: DeviceKey,
        path: ResourcePath,
        payload: PsonValue,
        replies: CallAnswers,
        stream_id: int,
    ) -> None:
        try:
            reply = await bus.request(key, Operation.CALL, path, payload, self.timeout)
        except RoostError as exc:  # offline, unknown resource, deadline passed
            log.debug("device %s: call of %s/%s failed: %s", caller, key, "/".join(path), exc)
            if stream_id:
                replies.answer_call(stream_id, False, None, exc.message)
            return
        except Exception:  # never leave the caller waiting
            log.exception("device %s: call of %s/%s failed", caller, key, "/".join(path))
            if stream_id:
                replies.answer_call(stream_id, False, None, "device call failed")
            return
        finally:
            left = self._in_flight[caller] - 1
            if left:
                self._in_flight[caller] = left
            else:
                del self._in_flight[caller]
        if stream_id:
            replies.answer_call(stream_id, True, reply, "")
