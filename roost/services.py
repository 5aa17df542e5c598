"""Services: everything a request or a device session needs, built once from Settings.

Defined apart from ``wiring.py`` (which builds it) and ``app.py`` (which runs it) so that ``api``
can name it without importing the layers above it. No module-level state: each test builds its
own Services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from roost.auth.passwords import DeviceCredentials
from roost.auth.permissions import ParsedPermissions
from roost.auth.ratelimit import LoginLimiter
from roost.auth.tokens import TokenSigner
from roost.buckets.exports import BucketExports
from roost.buckets.feeds import BucketFeeds
from roost.bus.base import Bus
from roost.config import Settings
from roost.devices.calls import DeviceCalls
from roost.devices.gateway import DeviceGateway
from roost.devices.registry import Registry
from roost.endpoints.delivery import EndpointCalls
from roost.metrics import Metrics
from roost.store.base import Store


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    registry: Registry  # this process's sessions: for the device listeners, not the API
    bus: Bus
    gateway: DeviceGateway  # what the device listeners (roost.net) work with, not the API
    devices: DeviceCalls  # how the API reaches devices: through the bus, wherever they are
    signer: TokenSigner
    credentials: DeviceCredentials
    clock: Callable[[], float]  # wall clock, seconds since the epoch
    login_limiter: LoginLimiter  # wrong passwords per user name and address, for every listener
    permissions: ParsedPermissions  # of user access tokens, parsed once per stored record
    feeds: BucketFeeds  # device-source buckets the server fills: reload one after changing it
    exports: BucketExports  # bucket exports and the tasks writing them (roost.buckets.exports)
    endpoints: EndpointCalls  # the calls of users' endpoints, from the API and from devices
    metrics: Metrics  # this node's, for GET /metrics: counted by the API, the bus and the store

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
