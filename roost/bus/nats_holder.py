"""The devices this node holds, served to every node over NATS (the far side of the NATS bus).

A node that authenticates a device claims it: it subscribes to the device's subject and announces
its claim there (and on the claim subject, for the watchers). It answers the requests that come on
that subject from its LocalBus, keeps the watches other nodes carry to it (their frames go back on
the watcher node's frames subject, the stats changes as ``device_stats`` events of the user), and
keeps answering stats (the last ones) once the device has left, until another node claims it.

A watcher node that dies (SIGKILL, its host gone) never says it stopped watching: every
``watcher_check`` seconds the holder asks each watcher node whether it is there (its node
subject); one that NATS twice in a row says nobody serves is gone, and its watches are dropped
(the device stops streaming for it). Once is not enough: after a NATS restart a node that has
reconnected may ask before the others have. A watcher node that was only cut off for a while
carries its watches here again once it is back (``NatsBus._watch_again``).

Two claims on one device: the later (:class:`~roost.bus.nats_wire.Claim`) wins; the holder that
loses closes its session, and one that wins answers a late rival with its own claim again, so
that exactly one session stays whatever order the claims cross in.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from roost import errors
from roost.bus import events
from roost.bus.base import DeviceKey, Event, Frame, Operation, ResourcePath
from roost.bus.events import DEVICE_STATS
from roost.bus.local import LocalBus
from roost.bus.nats_link import Interest, NatsLink
from roost.bus.nats_wire import (
    Claim,
    claim_subject,
    decode,
    device_subject,
    encode,
    error_message,
    events_subject,
    frames_subject,
    node_subject,
)

log = logging.getLogger("roost.bus.nats")

TAKEN_OVER = "connected to another node"
WATCHER_CHECK_S = 10.0  # how often a holder asks its watcher nodes whether they are there
PING_TIMEOUT_S = 2.0  # a node that does not answer in time is slow, not gone


class _Relay:
    """The sink standing for a watcher node's sink: its frames go back to that node."""

    __slots__ = ("_link", "node", "sink", "watched")

    def __init__(self, link: NatsLink, node: str, sink: int) -> None:
        self._link = link
        self.node = node
        self.sink = sink
        self.watched: set[tuple[DeviceKey, ResourcePath]] = set()

    def put(self, frame: Frame) -> None:
        self._link.publish(frames_subject(self.node), encode({"sink": self.sink, "frame": frame}))


@dataclass(eq=False, slots=True)
class _Held:
    """A device this node holds (or remembers): its subscription and its claim."""

    interest: Interest
    claim: Claim
    stats_watchers: set[str] = field(default_factory=set)  # nodes watching its stats


class Holder:
    def __init__(self, node: LocalBus, link: NatsLink, node_id: str) -> None:
        self._node = node
        self._link = link
        self._id = node_id
        self._held: dict[DeviceKey, _Held] = {}
        self._relays: dict[tuple[str, int], _Relay] = {}
        self._taken: set[DeviceKey] = set()  # closed for another node's claim: no event for it
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stats_users: dict[str, int] = {}  # users with a stats watch here: devices watched
        self._missing: Counter[str] = Counter()  # watcher nodes nobody answered for, in a row

    def holds(self, key: DeviceKey) -> bool:
        return key in self._held and self._node.holds(key)

    # what this node's gateway tells (through the events it publishes)

    def session_opened(self, key: DeviceKey) -> None:
        held = self._held.get(key)
        if held is None:
            interest = self._link.subscribe(device_subject(key), self._on_message)
            held = self._held[key] = _Held(interest, Claim.now(self._id))
        else:
            held.claim = Claim.now(self._id, held.claim)
        self._announce(key, held.claim)

    def session_closed(self, key: DeviceKey) -> bool:
        """False when the session was closed for another node's claim (say nothing of it)."""
        if key in self._taken:
            self._taken.discard(key)
            if key not in self._held:
                self.spawn(self._node.forget(key))  # its last stats are the new holder's
            return False
        return True

    # messages on the device subjects

    def _on_message(self, msg: Msg) -> None:
        message = decode(msg.data)
        key = DeviceKey(*message["key"])
        held = self._held.get(key)
        if held is None:  # let go a moment ago: the node that claimed it answers
            return
        op = message["op"]
        if op == "claim":
            self._heard_claim(key, held, Claim.from_json(message))
        elif op in ("request", "stats", "disconnect", "forget"):
            self.spawn(self._answer(msg, key, message))
        elif op == "watch_stream":
            self._watch_stream(key, message)
        elif op == "unwatch_stream":
            relay = self._relays.get((message["node"], message["sink"]))
            if relay is not None:
                self._release(relay, key, tuple(message["path"]))
        elif op == "watch_stats":
            self._watch_stats(key, held, str(message["node"]))
        elif op == "unwatch_stats":
            self._unwatch_stats(key, held, str(message["node"]))
        else:
            log.warning("NATS: unknown message %r on %s", op, msg.subject)

    async def _answer(self, msg: Msg, key: DeviceKey, message: dict[str, Any]) -> None:
        node, op = self._node, message["op"]
        try:
            if op == "request":
                path = tuple(message["path"])
                kind, payload, timeout = message["kind"], message["payload"], message["timeout"]
                value: Any = await node.request(key, Operation(kind), path, payload, timeout)
            elif op == "stats":
                value = (await node.stats(key)).to_json()
            elif op == "disconnect":
                value = await node.disconnect(key, message["reason"])
            else:
                await node.forget(key)
                value = None
                if not node.holds(key):
                    self._let_go(key)
        except errors.RoostError as exc:
            data = error_message(exc)
        else:
            data = encode({"value": value})
            limit = self._link.max_payload
            if len(data) > limit:  # NATS would refuse it, and the caller wait out its deadline
                data = error_message(
                    errors.UpstreamFailed(
                        f"the device's answer ({len(data)} bytes) is longer than the message "
                        f"bus carries ({limit})"
                    )
                )
        self._link.reply(msg, data)

    # claims

    def _announce(self, key: DeviceKey, claim: Claim) -> None:
        data = encode({**claim.to_json(), "key": list(key)})
        self._link.publish(device_subject(key), data)  # to the node holding it until now
        self._link.publish(claim_subject(key), data)  # to the nodes watching it

    def _heard_claim(self, key: DeviceKey, held: _Held, claim: Claim) -> None:
        if claim.node == self._id:
            return  # our own
        live = self._node.holds(key)
        if live and claim < held.claim:
            self._announce(key, held.claim)  # a late rival: ours is the newer, it closes
            return
        log.info("device %s: %s on node %s", key, TAKEN_OVER, claim.node)
        self._let_go(key)
        if live:
            self._taken.add(key)
            self._node_disconnect(key)

    def _node_disconnect(self, key: DeviceKey) -> None:
        self.spawn(self._node.disconnect(key, TAKEN_OVER))

    def _let_go(self, key: DeviceKey) -> None:
        """Forget the device here: another node holds it (or it was deleted)."""
        held = self._held.pop(key, None)
        if held is None:
            return
        self._link.unsubscribe(held.interest)
        for node in list(held.stats_watchers):
            self._unwatch_stats(key, held, node)
        for relay in list(self._relays.values()):
            for watched_key, path in list(relay.watched):
                if watched_key == key:
                    self._release(relay, key, path)
        if not self._node.holds(key):
            self.spawn(self._node.forget(key))

    # watches carried here by the watcher nodes

    def _watch_stream(self, key: DeviceKey, message: dict[str, Any]) -> None:
        node, sink = str(message["node"]), int(message["sink"])
        relay = self._relays.get((node, sink))
        if relay is None:
            relay = self._relays[(node, sink)] = _Relay(self._link, node, sink)
        path: ResourcePath = tuple(message["path"])
        new_for_device = not any(k == key for k, _ in relay.watched)
        relay.watched.add((key, path))
        self._node.watch_stream(key, path, float(message["interval"]), relay)
        if message.get("moved") and new_for_device and self._node.holds(key):
            relay.put({"device": key.device, "connected": True})  # it is here now

    def _release(self, relay: _Relay, key: DeviceKey, path: ResourcePath) -> None:
        relay.watched.discard((key, path))
        self._node.unwatch_stream(key, path, relay)
        if not relay.watched:
            del self._relays[(relay.node, relay.sink)]

    def _watch_stats(self, key: DeviceKey, held: _Held, node: str) -> None:
        if node in held.stats_watchers:
            return
        if not held.stats_watchers:
            users = self._stats_users
            if not users.get(key.owner):
                self._node.subscribe_events(key.owner, self._forward_stats)
            users[key.owner] = users.get(key.owner, 0) + 1
            self._node.watch_stats(key)
        held.stats_watchers.add(node)
        if self._node.holds(key):  # what the watcher missed before its watch arrived
            self.spawn(self._publish_stats(key))

    async def _publish_stats(self, key: DeviceKey) -> None:
        event = events.device_stats(key, await self._node.stats(key))
        self._link.publish(events_subject(key.owner), encode(event.to_json()))

    def _unwatch_stats(self, key: DeviceKey, held: _Held, node: str) -> None:
        if node not in held.stats_watchers:
            return
        held.stats_watchers.discard(node)
        if not held.stats_watchers:
            self._node.unwatch_stats(key)
            users = self._stats_users
            users[key.owner] -= 1
            if not users[key.owner]:
                del users[key.owner]
                self._node.unsubscribe_events(key.owner, self._forward_stats)

    def _forward_stats(self, event: Event) -> None:
        if event.name != DEVICE_STATS:
            return
        held = self._held.get(DeviceKey(event.user, str(event.fields["device"])))
        if held is not None and held.stats_watchers:
            self._link.publish(events_subject(event.user), encode(event.to_json()))

    # watcher nodes that are gone

    async def check_watchers(self, every: float) -> None:
        """Forever: every ``every`` seconds, drop the watches of the watcher nodes gone."""
        while True:
            await asyncio.sleep(every)
            try:
                await self._check_watchers()
            except Exception:  # logged; the next round goes on
                log.exception("NATS: checking the watcher nodes failed")

    async def _check_watchers(self) -> None:
        watchers = {relay.node for relay in self._relays.values()}
        for held in self._held.values():
            watchers |= held.stats_watchers
        self._missing = Counter({n: c for n, c in self._missing.items() if n in watchers})
        for node in watchers:
            try:
                await self._link.request(node_subject(node), b"", PING_TIMEOUT_S)
            except nats.errors.NoRespondersError:
                self._missing[node] += 1
                if self._missing[node] >= 2:
                    self._watcher_gone(node)
            except (nats.errors.TimeoutError, errors.Unavailable):
                pass  # slow, or NATS out of reach here: no proof either way
            else:
                self._missing.pop(node, None)

    def _watcher_gone(self, node: str) -> None:
        log.info("NATS: node %s is gone; its watches here end", node)
        del self._missing[node]
        for relay in [r for r in self._relays.values() if r.node == node]:
            for key, path in list(relay.watched):
                self._release(relay, key, path)
        for key, held in list(self._held.items()):
            self._unwatch_stats(key, held, node)

    # tasks

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task of this node's bus, cancelled at close, its failure logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("NATS: serving a device message failed", exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for key in list(self._held):
            held = self._held[key]
            for node in list(held.stats_watchers):
                self._unwatch_stats(key, held, node)
