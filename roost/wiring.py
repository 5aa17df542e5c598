"""Services wired from Settings: the store the settings select, the bus (this process's own, or
the NATS bus that wraps it when ``nats_url`` is set), the device gateway, the keys, the budgets
and the jobs' services, each given what it works with. :func:`build_services` is called once per
node (roost.app.Roost.start) and by the tests that need Services without the listeners.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from functools import partial

from roost.auth.budgets import FailureBudgets
from roost.auth.keys import JWT_KEY_FILE, PEPPER_FILE, load_or_create_key, private_dir
from roost.auth.passwords import DeviceCredentials
from roost.auth.permissions import ParsedPermissions
from roost.auth.tokens import TokenSigner
from roost.buckets.exports import BucketExports
from roost.buckets.feeds import BucketFeeds
from roost.bus.base import Bus
from roost.bus.local import LocalBus
from roost.bus.nats import NatsBus, nats_bus
from roost.config import Settings
from roost.devices.calls import DeviceCalls
from roost.devices.gateway import DeviceGateway
from roost.devices.registry import Registry
from roost.endpoints.delivery import EndpointCalls
from roost.metrics import Metrics
from roost.services import Services
from roost.store.base import Store, StoreCounts
from roost.store.postgres import PostgresStore
from roost.store.sqlite import DATABASE_FILE, SQLiteStore

# How this node reaches devices: given the bus of the sessions in this process, the bus the rest
# of Roost uses. By default that local bus itself; a scale-out bus wraps it (serving this node's
# sessions to the others, reaching theirs), and so does the tests' bus over an in-memory wire.
# A bus that must connect first (NATS) is built by a coroutine: the factory returns an awaitable.
BusFactory = Callable[[LocalBus], Bus | Awaitable[Bus]]


def local_bus(bus: LocalBus) -> Bus:
    return bus


def select_store(settings: Settings, counts: StoreCounts | None = None) -> Store:
    """PostgreSQL when ``database_url`` is set (shared by several nodes), else SQLite; both
    count their failures and points into ``counts`` (roost.metrics)."""
    if settings.database_url:
        return PostgresStore(settings.database_url, counts=counts)
    return SQLiteStore(settings.data_dir / DATABASE_FILE, counts=counts)


async def build_services(
    settings: Settings, clock: Callable[[], float] = time.time, bus: BusFactory = local_bus
) -> Services:
    private_dir(settings.data_dir)
    metrics = Metrics()
    store = select_store(settings, metrics.store)
    await store.open()
    registry = Registry()
    credentials = DeviceCredentials(load_or_create_key(settings.data_dir, PEPPER_FILE))
    budgets = FailureBudgets(settings, time.monotonic)  # failed authentications, on every node
    gateway = DeviceGateway(store, registry, credentials, settings, clock, budgets.devices)
    if bus is local_bus and settings.nats_url:  # several nodes: the NATS bus (roost.bus.nats)
        bus = partial(nats_bus, url=settings.nats_url)
    local = LocalBus(registry, gateway.streams)
    try:
        built = bus(local)
        node_bus = await built if inspect.isawaitable(built) else built
    except BaseException:
        await store.close()
        raise
    streams = gateway.streams
    metrics.watch(
        registry.sessions,
        lambda: {"resource": streams.watchers(), "stats": registry.stats_watches()},
        lambda: local.requests,
    )
    gateway.peers.bus = node_bus  # device-to-device calls go through the bus, as the API's do
    gateway.publish = node_bus.publish  # device_state_change, to every node's subscribers
    devices = DeviceCalls(node_bus)
    if isinstance(node_bus, NatsBus):
        # each node feeds the device-source buckets of the devices it holds: a sample is stored
        # once, by the node its device is on; a bucket changed on one node reloads on all
        feeds = BucketFeeds(store, DeviceCalls(local), clock)
        feeds.changed = node_bus.feeds_changed

        async def bucket_changed_elsewhere(owner: str, bucket: str) -> None:
            store.changed_elsewhere()  # the record this node's store may keep is stale
            await feeds.reload_here(owner, bucket)

        node_bus.hear_feed_changes(bucket_changed_elsewhere)
        node_bus.revoked_elsewhere = lambda revocation: store.changed_elsewhere()
        budgets.tell = node_bus.tell_failures
        node_bus.hear_failures(budgets.heard)
    else:
        feeds = BucketFeeds(store, devices, clock)
    # endpoint calls, from the API and from devices (legacy flag 8, IOTMP service 4)
    gateway.endpoints = EndpointCalls(store, settings, clock, node_bus.publish)
    return Services(
        settings=settings,
        store=store,
        registry=registry,
        bus=node_bus,
        gateway=gateway,
        devices=devices,
        signer=TokenSigner(load_or_create_key(settings.data_dir, JWT_KEY_FILE)),
        credentials=credentials,
        clock=clock,
        login_limiter=budgets.login,
        permissions=ParsedPermissions(),
        feeds=feeds,
        exports=BucketExports(store, node_bus, settings, clock),
        endpoints=gateway.endpoints,
        metrics=metrics,
    )
