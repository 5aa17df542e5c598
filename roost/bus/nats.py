"""The NATS bus: several Roost nodes, one system (design.md section 3; ``ROOST_NATS_URL``).

:class:`NatsBus` wraps this node's :class:`~roost.bus.local.LocalBus` (its sessions and stream
hub): the devices it holds are served to every node by :class:`~roost.bus.nats_holder.Holder`;
everything else the rest of Roost asks goes over NATS to the node holding the device (subjects in
:mod:`roost.bus.nats_wire`). A request nobody holds is answered at once by the server ("no
responders": DeviceOffline); a request while NATS is out of reach is Unavailable (503), never a
hang. A call waiting on another node ends as that node would end it (DeviceOffline) once the
device has been connected here for ``TAKEOVER_GRACE_S``, even if that node is gone. Watches are
kept here and carried again to whichever node claims the device next.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from roost import errors
from roost.bus import events
from roost.bus.base import (
    DeviceKey,
    Event,
    EventListener,
    FrameSink,
    Operation,
    ResourcePath,
    Revocation,
    RevocationListener,
    Stats,
)
from roost.bus.listeners import ListenersByUser
from roost.bus.local import LocalBus
from roost.bus.nats_holder import TAKEN_OVER, WATCHER_CHECK_S, Holder
from roost.bus.nats_link import Interest, NatsLink
from roost.bus.nats_wire import (
    EVERY_FAILURE,
    EVERY_REVOCATION,
    FEEDS_SUBJECT,
    claim_subject,
    decode,
    device_subject,
    encode,
    events_subject,
    failures_subject,
    frames_subject,
    new_node_id,
    node_subject,
    raise_error,
    revocations_subject,
)
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.bus.nats")

DEADLINE_MARGIN_S = 1.0  # a request's own deadline: the device's, plus the bus's share
STATS_TIMEOUT_S = 5.0  # of a stats, disconnect or forget request to the holding node
# once a device connects here, how long the calls sent to its last holder may still wait for it
TAKEOVER_GRACE_S = 1.0
OFFLINE = Stats(connected=False, connected_ts=None, ip_address=None, rx_bytes=0, tx_bytes=0)


async def nats_bus(node: LocalBus, url: str, watcher_check: float = WATCHER_CHECK_S) -> NatsBus:
    """Connect this node to NATS at ``url`` (a BusFactory, with the URL bound)."""
    node_id = new_node_id()
    link = await NatsLink.connect(url, f"roost-{node_id}")
    return NatsBus(node, link, node_id, watcher_check)


class NatsBus:
    def __init__(
        self, node: LocalBus, link: NatsLink, node_id: str, watcher_check: float = WATCHER_CHECK_S
    ) -> None:
        self.node_id = node_id
        self._node = node
        self._link = link
        self._holder = Holder(node, link, node_id)
        self.revocations: ListenersByUser[Revocation] = ListenersByUser("revocation")
        self.events: ListenersByUser[Event] = ListenersByUser("event")
        self._user_interests: dict[str, Interest] = {}  # user -> subscription to their events
        self._ids = itertools.count(1)
        self._sinks: dict[int, FrameSink] = {}  # sink id -> sink
        self._sink_ids: dict[FrameSink, int] = {}
        self._watched: dict[int, dict[tuple[DeviceKey, ResourcePath], float]] = {}  # by sink id
        self._stats_watches: Counter[DeviceKey] = Counter()
        self._claim_interest: dict[DeviceKey, tuple[int, Interest]] = {}  # watches, subscription
        self._claimed_by: dict[DeviceKey, str] = {}  # of the devices watched: the last claimer
        # told of every revocation, before its listeners: what the store keeps is stale
        self.revoked_elsewhere: Callable[[Revocation], None] = _nothing
        link.subscribe(frames_subject(node_id), self._heard_frame)
        link.subscribe(node_subject(node_id), self._asked_if_here)
        link.reconnected = self._watch_again
        self._holder.spawn(self._holder.check_watchers(watcher_check))
        link.subscribe(EVERY_REVOCATION, self._heard_revocation)

    # requests: to the node holding the device; nobody holds it: offline at once

    async def request(
        self,
        key: DeviceKey,
        op: Operation,
        path: ResourcePath,
        payload: PsonValue,
        timeout: float,
    ) -> PsonValue:
        if self._holder.holds(key):  # here: no need to cross the bus
            return await self._node.request(key, op, path, payload, timeout)
        message = {
            "op": "request",
            "key": list(key),
            "kind": op.value,
            "path": list(path),
            "payload": payload,
            "timeout": timeout,
        }
        answer = await self._ask(key, message, timeout + DEADLINE_MARGIN_S, about=key)
        value: PsonValue = answer["value"]
        return value

    async def stats(self, key: DeviceKey) -> Stats:
        try:
            answer = await self._ask(key, {"op": "stats", "key": list(key)}, STATS_TIMEOUT_S)
        except errors.DeviceOffline:
            return OFFLINE  # nobody holds it nor remembers it
        return Stats(**answer["value"])

    async def disconnect(self, key: DeviceKey, reason: str) -> bool:
        message = {"op": "disconnect", "key": list(key), "reason": reason}
        try:
            answer = await self._ask(key, message, STATS_TIMEOUT_S)
        except errors.DeviceOffline:
            return False
        return bool(answer["value"])

    async def forget(self, key: DeviceKey) -> None:
        with contextlib.suppress(errors.DeviceOffline):  # nobody remembers it: nothing to forget
            await self._ask(key, {"op": "forget", "key": list(key)}, STATS_TIMEOUT_S)

    async def _ask(
        self, key: DeviceKey, message: dict[str, Any], timeout: float, about: Hashable = None
    ) -> dict[str, Any]:
        try:
            data = await self._link.request(device_subject(key), encode(message), timeout, about)
        except nats.errors.NoRespondersError:
            raise errors.DeviceOffline(f"device {key.device} is not connected") from None
        except nats.errors.TimeoutError:
            raise errors.DeviceTimeout(f"device {key.device} did not answer in time") from None
        try:
            answer = decode(data)
        except (ValueError, TypeError) as exc:  # not what a node sends: a fault, not the user's
            log.error("NATS: an unreadable answer on %s: %s", device_subject(key), exc)
            raise errors.Unavailable(
                "the node holding the device gave an unreadable answer"
            ) from None
        raise_error(answer)
        return answer

    # watches: kept here, carried to the node holding the device, again when it moves

    def watch_stats(self, key: DeviceKey) -> None:
        self._stats_watches[key] += 1
        if self._stats_watches[key] == 1:
            self._interested(key, +1)
            self._tell(key, {"op": "watch_stats"})

    def unwatch_stats(self, key: DeviceKey) -> None:
        if not self._stats_watches[key]:
            return
        self._stats_watches[key] -= 1
        if not self._stats_watches[key]:
            del self._stats_watches[key]
            self._tell(key, {"op": "unwatch_stats"})
            self._interested(key, -1)

    def watch_stream(
        self, key: DeviceKey, path: ResourcePath, interval: float, sink: FrameSink
    ) -> None:
        sink_id = self._sink_ids.get(sink)
        if sink_id is None:
            sink_id = self._sink_ids[sink] = next(self._ids)
            self._sinks[sink_id] = sink
        watched = self._watched.setdefault(sink_id, {})
        if (key, path) not in watched:
            self._interested(key, +1)
        watched[(key, path)] = interval
        self._tell(key, _stream_message(path, sink_id, interval))

    def unwatch_stream(self, key: DeviceKey, path: ResourcePath, sink: FrameSink) -> None:
        sink_id = self._sink_ids.get(sink)
        watched = self._watched.get(sink_id) if sink_id is not None else None
        if sink_id is None or watched is None or (key, path) not in watched:
            return
        del watched[(key, path)]
        if not watched:  # the sink watches nothing more: forget it
            del self._watched[sink_id], self._sinks[sink_id], self._sink_ids[sink]
        self._tell(key, {"op": "unwatch_stream", "path": list(path), "sink": sink_id})
        self._interested(key, -1)

    def _tell(self, key: DeviceKey, message: dict[str, Any]) -> None:
        data = encode({**message, "key": list(key), "node": self.node_id})
        self._link.publish(device_subject(key), data)

    def _interested(self, key: DeviceKey, change: int) -> None:
        """Count this node's watches of the device; while any, hear who claims it."""
        count, interest = self._claim_interest.get(key, (0, None))
        count += change
        if interest is None:
            interest = self._link.subscribe(claim_subject(key), self._heard_claim)
        if count > 0:
            self._claim_interest[key] = (count, interest)
        else:
            self._claim_interest.pop(key, None)
            self._claimed_by.pop(key, None)
            self._link.unsubscribe(interest)

    def _heard_claim(self, msg: Msg) -> None:
        """A node claimed a device watched here: carry the watches to it (``moved``: from
        another node, whose sinks heard it leave: the new one tells them it is back)."""
        message = decode(msg.data)
        key, node = DeviceKey(*message["key"]), str(message["node"])
        before = self._claimed_by.get(key)
        self._claimed_by[key] = node
        self._carry_watches(key, moved=before is not None and before != node)

    def _watch_again(self) -> None:
        """Back on NATS after an outage: carry every watch here to the nodes holding the devices
        again (one that took this node for gone meanwhile has dropped them; one that did not
        takes them as the same watches)."""
        self._carry_watches()

    def _carry_watches(self, only: DeviceKey | None = None, moved: bool = False) -> None:
        """Tell the holders of the devices watched here (of ``only``, if given) every watch."""
        for sink_id, watched in self._watched.items():
            for (key, path), interval in watched.items():
                if only is None or key == only:
                    self._tell(key, {**_stream_message(path, sink_id, interval), "moved": moved})
        for key in self._stats_watches if only is None else [only]:
            if self._stats_watches.get(key):
                self._tell(key, {"op": "watch_stats"})

    def _heard_frame(self, msg: Msg) -> None:
        message = decode(msg.data)
        sink = self._sinks.get(message["sink"])
        if sink is not None:
            sink.put(message["frame"])

    def _asked_if_here(self, msg: Msg) -> None:
        self._link.reply(msg, b"")

    # revocations and events: on their user's subject, heard by every node with a listener

    async def announce(self, revocation: Revocation) -> None:
        self._link.publish(revocations_subject(revocation.user), encode(revocation.to_json()))
        await self._link.sent()

    def watch_revocations(self, user: str, listener: RevocationListener) -> None:
        self.revocations.add(user, listener)

    def unwatch_revocations(self, user: str, listener: RevocationListener) -> None:
        self.revocations.remove(user, listener)

    def publish(self, event: Event) -> None:
        if event.name == events.DEVICE_STATE_CHANGE:  # this node's gateway: claim, let go
            key = DeviceKey(event.user, str(event.fields["device"]))
            if event.fields["state"] == events.CONNECTED:
                if self._node.holds(key):
                    self._holder.session_opened(key)
                    # the calls sent to its last holder: that session is closed now. A holder
                    # that is there answers them within the grace; one that is gone (SIGKILL)
                    # never will, so they end then, as it would have ended them
                    loop = asyncio.get_running_loop()
                    loop.call_later(TAKEOVER_GRACE_S, self._link.fail, key, _taken_over)
            elif not self._holder.session_closed(key):
                return  # closed for another node's claim: the device did not go offline
        self._link.publish(events_subject(event.user), encode(event.to_json()))

    def subscribe_events(self, user: str, listener: EventListener) -> None:
        if user not in self._user_interests:  # this node hears the user's events from now
            self._user_interests[user] = self._link.subscribe(
                events_subject(user), self._heard_event
            )
        self.events.add(user, listener)

    def unsubscribe_events(self, user: str, listener: EventListener) -> None:
        self.events.remove(user, listener)
        if not self.events.listening(user) and user in self._user_interests:
            self._link.unsubscribe(self._user_interests.pop(user))

    def _heard_event(self, msg: Msg) -> None:
        self.events.deliver(Event.from_json(decode(msg.data)))

    def _heard_revocation(self, msg: Msg) -> None:
        revocation = Revocation.from_json(decode(msg.data))
        self.revoked_elsewhere(revocation)
        self.revocations.deliver(revocation)

    # device-source buckets: each node feeds those of the devices it holds; a change on one node
    # is told to the others, which reload the bucket's feed as well

    def feeds_changed(self, owner: str, bucket: str) -> None:
        data = encode({"node": self.node_id, "owner": owner, "bucket": bucket})
        self._link.publish(FEEDS_SUBJECT, data)

    def hear_feed_changes(self, reload: Callable[[str, str], Awaitable[None]]) -> None:
        def heard(msg: Msg) -> None:
            message = decode(msg.data)
            if message["node"] != self.node_id:
                self._holder.spawn(reload(str(message["owner"]), str(message["bucket"])))

        self._link.subscribe(FEEDS_SUBJECT, heard)

    # failed authentications (roost.auth.budgets): each node tells the others of the failures it
    # counts and forgives, and counts theirs, so that the nodes share one budget

    def tell_failures(self, note: bytes) -> None:
        self._link.publish(failures_subject(self.node_id), note)

    def hear_failures(self, heard: Callable[[bytes], None]) -> None:
        """Hand ``heard`` the notes of every other node (this node's own are not heard)."""
        own = failures_subject(self.node_id)

        def handler(msg: Msg) -> None:
            if msg.subject != own:
                heard(msg.data)

        self._link.subscribe(EVERY_FAILURE, handler)

    async def close(self) -> None:
        await self._holder.close()
        await self._link.close()

    @property
    def connected(self) -> bool:
        """Whether NATS is reachable now."""
        return self._link.connected

    async def settled(self) -> None:
        """Until what this node has sent so far (its claims, its watches) has reached the NATS
        server, so that every node's next message sees it (a round trip to the server)."""
        await self._link.settled()


def _nothing(revocation: Revocation) -> None:
    pass  # no store of this node keeps anything a revocation makes stale


def _stream_message(path: ResourcePath, sink_id: int, interval: float) -> dict[str, Any]:
    return {"op": "watch_stream", "path": list(path), "sink": sink_id, "interval": interval}


def _taken_over() -> Exception:
    return errors.DeviceOffline(f"device disconnected: {TAKEN_OVER}")
