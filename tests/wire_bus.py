"""A second Bus, for the tests: the shape a NATS bus has, over an in-memory wire.

:class:`WireBus` is what the rest of Roost holds; the node's :class:`~roost.bus.local.LocalBus`
(its sessions and stream hub) sits on the far side of a wire that carries only bytes (JSON), one
loop step later, as a NATS subject would: a request is a message to the node holding the device
and its answer (or error) a message back; a stream or stats watch is a subscription carried to
that node, whose frames and changes come back as messages to the watcher's node; a revocation is
published to every node (here the one) and heard from the wire. Nothing is shared between the two
sides but bytes, so whatever passes over it would pass over any bus that moves messages.

The bus contract (``bus_contract.py``) runs against it, and the API tests run over it with
``pytest --bus=wire``.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections import Counter
from typing import Any

from roost import errors
from roost.bus.base import (
    DeviceKey,
    Event,
    EventListener,
    Frame,
    FrameSink,
    Operation,
    ResourcePath,
    Revocation,
    RevocationListener,
    Stats,
)
from roost.bus.events import DEVICE_STATS
from roost.bus.listeners import ListenersByUser
from roost.bus.local import LocalBus
from roost.wire.pson import PsonValue

BYTES = "\x00bytes"  # how a bytes value (an OTA chunk, say) crosses the JSON wire
DEADLINE_MARGIN_S = 1.0  # a request's own deadline: the device's, plus the wire's share


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, default=_bytes_to_json).encode()


def decode(data: bytes) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(data, object_hook=_json_to_bytes)
    return message


def _bytes_to_json(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES: base64.b64encode(value).decode()}
    raise TypeError(f"{type(value).__name__} cannot cross the wire")


def _json_to_bytes(obj: dict[str, Any]) -> object:
    if len(obj) == 1 and BYTES in obj:
        return base64.b64decode(obj[BYTES])
    return obj


def _error(name: str, message: str) -> errors.RoostError:
    kind = getattr(errors, name, None)
    if isinstance(kind, type) and issubclass(kind, errors.RoostError):
        return kind(message)
    return errors.RoostError(message)


class WireBus:
    """The watcher's side: every Bus operation is a message over the wire."""

    def __init__(self, node: LocalBus) -> None:
        self._far = _FarSide(node, self._hear)
        self.revocations: ListenersByUser[Revocation] = ListenersByUser(
            "revocation"
        )  # this node's listeners, as on every bus
        self.events: ListenersByUser[Event] = ListenersByUser("event")
        self.messages = 0  # how many crossed the wire, both ways
        self._ids = itertools.count(1)
        self._sinks: dict[int, FrameSink] = {}  # sink id -> sink
        self._sink_ids: dict[FrameSink, int] = {}
        self._watched: dict[int, set[tuple[DeviceKey, ResourcePath]]] = {}  # by sink id

    # requests: a message to the node holding the device, its answer a message back

    async def request(
        self,
        key: DeviceKey,
        op: Operation,
        path: ResourcePath,
        payload: PsonValue,
        timeout: float,
    ) -> PsonValue:
        message = {
            "op": "request",
            "key": list(key),
            "kind": op.value,
            "path": list(path),
            "payload": payload,
            "timeout": timeout,
        }
        answer = await asyncio.wait_for(self._ask(message), timeout + DEADLINE_MARGIN_S)
        value: PsonValue = answer["value"]
        return value

    async def stats(self, key: DeviceKey) -> Stats:
        answer = await self._ask({"op": "stats", "key": list(key)})
        return Stats(**answer["value"])

    async def disconnect(self, key: DeviceKey, reason: str) -> bool:
        answer = await self._ask({"op": "disconnect", "key": list(key), "reason": reason})
        return bool(answer["value"])

    async def forget(self, key: DeviceKey) -> None:
        await self._ask({"op": "forget", "key": list(key)})

    # subscriptions: carried to the node holding the device; what they see comes back

    def watch_stats(self, key: DeviceKey) -> None:
        self._tell({"op": "watch_stats", "key": list(key)})

    def unwatch_stats(self, key: DeviceKey) -> None:
        self._tell({"op": "unwatch_stats", "key": list(key)})

    def watch_stream(
        self, key: DeviceKey, path: ResourcePath, interval: float, sink: FrameSink
    ) -> None:
        sink_id = self._sink_ids.get(sink)
        if sink_id is None:
            sink_id = self._sink_ids[sink] = next(self._ids)
            self._sinks[sink_id] = sink
        self._watched.setdefault(sink_id, set()).add((key, path))
        message = {"op": "watch_stream", "key": list(key), "path": list(path), "sink": sink_id}
        self._tell({**message, "interval": interval})

    def unwatch_stream(self, key: DeviceKey, path: ResourcePath, sink: FrameSink) -> None:
        sink_id = self._sink_ids.get(sink)
        watched = self._watched.get(sink_id) if sink_id is not None else None
        if sink_id is None or watched is None or (key, path) not in watched:
            return
        watched.discard((key, path))
        if not watched:  # the sink watches nothing more: forget it
            del self._watched[sink_id], self._sinks[sink_id], self._sink_ids[sink]
        self._tell({"op": "unwatch_stream", "key": list(key), "path": list(path), "sink": sink_id})

    # revocations: published to every node, heard from the wire

    async def announce(self, revocation: Revocation) -> None:
        self._tell({"op": "announce", "revocation": revocation.to_json()})

    def watch_revocations(self, user: str, listener: RevocationListener) -> None:
        self.revocations.add(user, listener)

    def unwatch_revocations(self, user: str, listener: RevocationListener) -> None:
        self.revocations.remove(user, listener)

    # events: published to every node, heard from the wire, as revocations

    def publish(self, event: Event) -> None:
        self._tell({"op": "publish", "event": event.to_json()})

    def subscribe_events(self, user: str, listener: EventListener) -> None:
        self.events.add(user, listener)

    def unsubscribe_events(self, user: str, listener: EventListener) -> None:
        self.events.remove(user, listener)

    async def close(self) -> None:
        await self._far.close()

    # the wire

    async def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        self.messages += 2
        # a task of its own, as a message handled elsewhere; cancelling the wait cancels it
        answer = decode(await asyncio.ensure_future(self._far.answer(encode(message))))
        if "error" in answer:
            raise _error(answer["error"], answer["message"])
        return answer

    def _tell(self, message: dict[str, Any]) -> None:
        self.messages += 1
        asyncio.get_running_loop().call_soon(self._far.receive, encode(message))

    def _hear(self, data: bytes) -> None:
        """A message from the wire: a frame for a sink, a revocation, an event."""
        self.messages += 1
        message = decode(data)
        if "frame" in message:
            sink = self._sinks.get(message["sink"])
            if sink is not None:
                sink.put(message["frame"])
        elif "revocation" in message:
            self.revocations.deliver(Revocation.from_json(message["revocation"]))
        elif "event" in message:
            self.events.deliver(Event.from_json(message["event"]))


class _Relay:
    """On the device's node, the sink standing for a remote one: frames go back over the wire.
    One per remote sink, so the hub still tells each watcher once of a disconnect."""

    __slots__ = ("_send", "sink", "watched")

    def __init__(self, sink: int, send: Any) -> None:
        self.sink = sink
        self._send = send
        self.watched: set[tuple[DeviceKey, ResourcePath]] = set()

    def put(self, frame: Frame) -> None:
        self._send({"sink": self.sink, "frame": frame})


class _FarSide:
    """The node holding the sessions: decodes each message and runs it on its LocalBus."""

    def __init__(self, node: LocalBus, reply: Any) -> None:
        self._node = node
        self._reply = reply  # bytes back to the watcher's node
        self._relays: dict[int, _Relay] = {}
        self._stats_watched: Counter[DeviceKey] = Counter()  # what the watcher's node watches

    async def answer(self, data: bytes) -> bytes:
        message = decode(data)
        node, key = self._node, DeviceKey(*message["key"])
        try:
            op = message["op"]
            if op == "request":
                path = tuple(message["path"])
                kind, payload, timeout = message["kind"], message["payload"], message["timeout"]
                value: Any = await node.request(key, Operation(kind), path, payload, timeout)
            elif op == "stats":
                value = (await node.stats(key)).to_json()
            elif op == "disconnect":
                value = await node.disconnect(key, message["reason"])
            elif op == "forget":
                await node.forget(key)
                value = None
            else:
                raise ValueError(f"no such request: {op}")
        except errors.RoostError as exc:
            return encode({"error": type(exc).__name__, "message": exc.message})
        return encode({"value": value})

    def receive(self, data: bytes) -> None:
        message = decode(data)
        op = message["op"]
        if op in ("announce", "publish"):  # published: every node hears it, this one included
            self._send(message)
            return
        key = DeviceKey(*message["key"])
        if op == "watch_stream":
            relay = self._relays.setdefault(message["sink"], _Relay(message["sink"], self._send))
            path = tuple(message["path"])
            relay.watched.add((key, path))
            self._node.watch_stream(key, path, message["interval"], relay)
        elif op == "unwatch_stream":
            relay = self._relays[message["sink"]]
            path = tuple(message["path"])
            relay.watched.discard((key, path))
            self._node.unwatch_stream(key, path, relay)
            if not relay.watched:
                del self._relays[message["sink"]]
        elif op == "watch_stats":  # the node publishes the changes: they cross as events
            if not self._stats_watched[key]:
                self._node.subscribe_events(key.owner, self._forward_stats)
            self._stats_watched[key] += 1
            self._node.watch_stats(key)
        elif op == "unwatch_stats" and self._stats_watched[key]:
            self._node.unwatch_stats(key)
            self._stats_watched[key] -= 1
            if not self._stats_watched[key]:
                del self._stats_watched[key]
                self._node.unsubscribe_events(key.owner, self._forward_stats)

    def _forward_stats(self, event: Event) -> None:
        if (
            event.name == DEVICE_STATS
            and (event.user, event.fields["device"]) in self._stats_watched
        ):
            self._send({"event": event.to_json()})

    def _send(self, message: dict[str, Any]) -> None:
        asyncio.get_running_loop().call_soon(self._reply, encode(message))

    async def close(self) -> None:
        for key, count in self._stats_watched.items():
            for _ in range(count):
                self._node.unwatch_stats(key)
            self._node.unsubscribe_events(key.owner, self._forward_stats)
        self._stats_watched.clear()
