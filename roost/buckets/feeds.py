"""Device-source buckets (thinger-api.md 2.10, ``config.source`` ``device``): the server fills
them itself with what the device's resource streams.

Every enabled bucket with ``update`` ``interval`` (``interval`` seconds) or ``events`` has one
:class:`Feed`: a watch on ``config.device``'s ``config.resource`` held through
:class:`~roost.devices.calls.DeviceCalls`, that is through the bus alone, never this process's
sessions, so a feed works wherever the device is connected. ``interval`` watches at that interval
(the device samples at the fastest interval any watcher of the resource asks, a feed keeps one
sample per interval); ``events`` watches at interval 0: every value the device pushes
(``thing.stream()``, an input written on a streamed input) and every sample the device stream
carries for faster watchers. ``update`` ``none`` is not fed.

The bus keeps a watch across disconnections (:meth:`roost.bus.base.Bus.watch_stream`): the
device stream is reopened when the device connects again, on whichever node, so a feed is held
from the bucket's enabling to its disabling or deletion and needs no connect/disconnect events of
its own; while the device is away nothing is sampled. A device that refuses the stream (no such
resource) is logged once per attempt, and the bus tries again when the device reconnects: never
a loop.

Each sample is stored as one point at its arrival time (ms, the server's clock), as devices'
own bucket writes are: the resource's output (``out``; ``in`` for an input-only resource) as it
is, an object as an object and a bare value as that value (``GET /v1/.../data`` answers it as
``val``, ``/v2/...`` spreads an object's fields and answers a bare value as ``val``). Samples wait
in memory (at most :data:`MAX_PENDING` per bucket, the oldest dropped beyond) and are written by
one owned task, every bucket's samples since the last write in one transaction each, at the first
free ms so that two samples in one ms keep both. A failed write is logged and the feed goes on.

The buckets API tells the feeds of each bucket it creates, changes or deletes
(:meth:`BucketFeeds.reload`, which reads the bucket back from the store); a write that finds its
bucket gone reloads it too, so a bucket deleted with its user stops being fed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from roost.bus.base import DeviceKey, Frame
from roost.devices.calls import DeviceCalls
from roost.errors import InvalidInput, NotFound
from roost.store.base import Bucket, Store
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.buckets.feeds")

MAX_PENDING = 10_000  # samples of one bucket waiting for the store; beyond, the oldest go

BucketKey = tuple[str, str]  # (owner, bucket id)
Point = tuple[int, PsonValue]  # (ts in ms, value)


class Feed:
    """One bucket's watch on its device's resource: the sink the bus puts its frames into."""

    __slots__ = ("_take", "bucket", "config", "device", "interval", "path")

    def __init__(self, bucket: Bucket, take: Callable[[Feed, PsonValue], None]) -> None:
        config = bucket.config
        self.bucket: BucketKey = (bucket.owner, bucket.bucket)
        self.config = config
        self.device = DeviceKey(bucket.owner, config["device"])
        self.path = tuple(str(config["resource"]).split("/"))
        self.interval = float(config["interval"]) if config["update"] == "interval" else 0.0
        self._take = take

    def put(self, frame: Frame) -> None:
        if "error" in frame:
            error = frame["error"]
            log.warning(
                "bucket %s of %s: device %s did not stream %r (tried again when it reconnects): %s",
                self.bucket[1],
                self.bucket[0],
                self.device.device,
                "/".join(self.path),
                error.get("message") if isinstance(error, dict) else error,
            )
        elif "connected" in frame:
            state = "resumes" if frame["connected"] else "pauses: device disconnected"
            log.debug("bucket %s of %s %s", self.bucket[1], self.bucket[0], state)
        elif frame.get("out") is not None:
            self._take(self, frame["out"])
        elif frame.get("in") is not None:
            self._take(self, frame["in"])


def feeds_from(bucket: Bucket) -> bool:
    """Whether the server fills ``bucket`` from its device."""
    config = bucket.config
    update = config.get("update")
    return (
        bucket.enabled
        and config.get("source") == "device"
        and isinstance(config.get("device"), str)
        and isinstance(config.get("resource"), str)
        and (update == "events" or (update == "interval" and _seconds(config.get("interval"))))
    )


def _seconds(interval: object) -> bool:
    return isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0


class BucketFeeds:
    """Every device-source bucket's feed on this server: started and stopped with it."""

    def __init__(self, store: Store, devices: DeviceCalls, clock: Callable[[], float]) -> None:
        self._store = store
        self._devices = devices
        self._clock = clock
        self._feeds: dict[BucketKey, Feed] = {}
        self._pending: dict[BucketKey, deque[Point]] = {}
        self._dropped: dict[BucketKey, int] = {}  # samples past MAX_PENDING since the last write
        self._wake = asyncio.Event()
        self._reloading = asyncio.Lock()  # one reload at a time: the last one read the store last
        self._writer: asyncio.Task[None] | None = None
        self._stopping = False
        # told of every reload asked of this node, for the other nodes (the NATS bus)
        self.changed: Callable[[str, str], None] = _alone

    def fed(self) -> list[BucketKey]:
        """The buckets being fed, in order."""
        return sorted(self._feeds)

    async def start(self) -> None:
        """Feed every bucket the store holds for it, and start writing their samples."""
        for bucket in await self._store.list_device_source_buckets():
            if feeds_from(bucket):
                self._follow(bucket)
        self._writer = asyncio.get_running_loop().create_task(self._write_forever())
        self._writer.add_done_callback(_writer_done)
        if self._feeds:
            log.info("feeding %d device-source buckets", len(self._feeds))

    async def stop(self) -> None:
        """Stop every feed, write what has arrived, stop the writer."""
        for key in list(self._feeds):
            self._drop(key)
        writer, self._writer = self._writer, None
        if writer is not None:  # let it finish the write under way (a cancel would lose it)
            self._stopping = True
            self._wake.set()
            await asyncio.gather(writer, return_exceptions=True)  # a failure: logged when done
        await self._flush()

    async def reload(self, owner: str, bucket: str) -> None:
        """Bring the bucket's feed in line with the store: after it was created, changed or
        deleted (by the API), or found gone; and tell the other nodes (``changed``)."""
        await self.reload_here(owner, bucket)
        self.changed(owner, bucket)

    async def reload_here(self, owner: str, bucket: str) -> None:
        """Reload the bucket's feed on this node only (another node told of a change)."""
        key = (owner, bucket)
        async with self._reloading:
            record = await self._store.get_bucket(owner, bucket)
            feed = self._feeds.get(key)
            wanted = record is not None and feeds_from(record)
            if feed is not None and (not wanted or record is None or feed.config != record.config):
                self._drop(key)
                feed = None
            if wanted and feed is None and record is not None:
                self._follow(record)

    def _follow(self, bucket: Bucket) -> None:
        feed = self._feeds[(bucket.owner, bucket.bucket)] = Feed(bucket, self._take)
        self._devices.watch(feed.device, feed.path, feed.interval, feed)
        log.info(
            "bucket %s of %s fed from device %s, resource %r, %s",
            bucket.bucket,
            bucket.owner,
            feed.device.device,
            "/".join(feed.path),
            f"every {feed.interval:g} s" if feed.interval else "on its events",
        )

    def _drop(self, key: BucketKey) -> None:
        feed = self._feeds.pop(key)
        self._devices.unwatch(feed.device, feed.path, feed)
        log.info("bucket %s of %s no longer fed", key[1], key[0])

    def _take(self, feed: Feed, value: PsonValue) -> None:
        """A sample arrived (on the event loop; must not raise nor block)."""
        if self._feeds.get(feed.bucket) is not feed:
            return  # stopped meanwhile
        points = self._pending.get(feed.bucket)
        if points is None:
            points = self._pending[feed.bucket] = deque(maxlen=MAX_PENDING)
        elif len(points) == MAX_PENDING:
            self._dropped[feed.bucket] = self._dropped.get(feed.bucket, 0) + 1
        points.append((int(self._clock() * 1000), value))
        self._wake.set()

    async def _write_forever(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        dropped, self._dropped = self._dropped, {}
        for (owner, bucket), lost in dropped.items():
            log.warning("bucket %s of %s: %d samples dropped, the store lags", bucket, owner, lost)
        for (owner, bucket), points in pending.items():
            await self._write(owner, bucket, list(points))

    async def _write(self, owner: str, bucket: str, points: list[Point]) -> None:
        try:
            await self._store.write_points(owner, bucket, points, replace=False)
        except NotFound:
            log.info("bucket %s of %s is gone: %d samples dropped", bucket, owner, len(points))
            try:
                await self.reload(owner, bucket)
            except Exception:  # the store failed: the feed stays until the next reload
                log.exception("bucket %s of %s: feed not reloaded", bucket, owner)
        except (InvalidInput, TypeError, ValueError) as exc:  # bytes, NaN, beyond 64 bits
            if len(points) > 1:  # all or none: store the others one by one
                for point in points:
                    await self._write(owner, bucket, [point])
            else:
                log.warning("bucket %s of %s: a sample cannot be stored: %s", bucket, owner, exc)
        except Exception:  # the store failed: these samples are lost, the feed goes on
            log.exception("bucket %s of %s: %d samples not stored", bucket, owner, len(points))


def _alone(owner: str, bucket: str) -> None:
    pass  # one node: nobody else to tell


def _writer_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the bucket feeds' writer stopped", exc_info=task.exception())
