"""This node's metrics, for ``GET /metrics`` in the Prometheus text format.

Each :class:`Metrics` has its own ``CollectorRegistry`` (never prometheus_client's global one:
a process may run several Roost instances, the tests do). What the hot paths count costs them a
few integer additions: calls, bus requests and store work are plain counters here, and gauges
(devices connected, stream watchers) are not kept at all but read from the live objects when
Prometheus scrapes; one collector turns all of it into metric families at that moment. The
process collector of prometheus_client adds CPU, memory and open files.

The families (``roost_`` prefix):

- ``devices_connected{protocol,tls}``: sessions in this process, by protocol (``legacy``,
  ``iotmp``, ``iotmp_websocket``) and whether the connection is TLS;
- ``device_calls_total{outcome}`` and ``device_call_seconds`` (histogram): resource calls and
  descriptions made through the REST API, by outcome (``ok``, ``offline``, ``timeout``,
  ``refused``: the device has no such resource or answered with an error, ``error``: anything
  else);
- ``stream_watchers{kind}``: resource stream watchers (``resource``) and stats watches
  (``stats``) held by this node's devices;
- ``bucket_points_written_total``: points stored in buckets (devices' writes, the API's,
  device-source feeds): its rate is the ingest rate;
- ``bus_requests_total``: requests to devices (calls, descriptions) carried by this node's bus,
  from the API, bucket feeds and device-to-device calls; the local bus serves them in-process, a
  bus between nodes will count its round trips to other nodes here;
- ``store_errors_total{operation}``: store operations that failed (the store method's name).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from roost.devices.session import DeviceSession
from roost.errors import DeviceOffline, DeviceTimeout, ResourceUnavailable
from roost.store.base import StoreCounts

OK = "ok"
OFFLINE = "offline"
TIMEOUT = "timeout"
REFUSED = "refused"
ERROR = "error"
OUTCOMES = (OK, OFFLINE, TIMEOUT, REFUSED, ERROR)

# Upper bounds of the call latency buckets, seconds: a loopback call takes about a millisecond,
# a device far away tens to hundreds, a deadline seconds.
CALL_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def outcome_of(exc: BaseException) -> str:
    """The outcome label of a call that raised ``exc``."""
    if isinstance(exc, DeviceOffline):
        return OFFLINE
    if isinstance(exc, DeviceTimeout):
        return TIMEOUT
    if isinstance(exc, ResourceUnavailable):
        return REFUSED
    return ERROR


class CallMeter:
    """Calls by outcome and a histogram of their durations: plain counters, no lock (every call
    is counted on the event loop's thread, and read there when scraped)."""

    __slots__ = ("buckets", "outcomes", "seconds")

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.buckets = [0] * (len(CALL_BOUNDS) + 1)  # the last one: over every bound (+Inf)
        self.seconds = 0.0

    def succeeded(self, seconds: float) -> None:
        self.outcomes[OK] += 1
        self.buckets[bisect_left(CALL_BOUNDS, seconds)] += 1
        self.seconds += seconds

    def failed(self, exc: BaseException, seconds: float) -> None:
        self.outcomes[outcome_of(exc)] += 1
        self.buckets[bisect_left(CALL_BOUNDS, seconds)] += 1
        self.seconds += seconds

    def histogram(self) -> HistogramMetricFamily:
        cumulative: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*map(repr, CALL_BOUNDS), "+Inf"), self.buckets, strict=True):
            total += count
            cumulative.append((bound, total))
        return HistogramMetricFamily(
            "roost_device_call_seconds",
            "Duration of resource calls made through the REST API",
            buckets=cumulative,
            sum_value=self.seconds,
        )


# What the collector reads of the node when scraped: its device sessions, and its watchers
# (resource streams, stats).
Sessions = Callable[[], Iterable[DeviceSession]]
WatcherCounts = Callable[[], dict[str, int]]


class Metrics:
    """The registry and the counters of one node. ``calls`` and ``store`` are counted by the API
    and the store; ``watch`` tells it what to read of the node when scraped."""

    def __init__(self, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.calls = CallMeter()
        self.store = StoreCounts()
        self._sessions: Sessions = tuple
        self._watchers: WatcherCounts = dict
        self._bus_requests: Callable[[], int] = int
        self.registry.register(_NodeCollector(self))
        if process:
            ProcessCollector(registry=self.registry)

    def watch(
        self, sessions: Sessions, watchers: WatcherCounts, bus_requests: Callable[[], int]
    ) -> None:
        """Read the node's sessions, watchers and bus requests from these when scraped."""
        self._sessions = sessions
        self._watchers = watchers
        self._bus_requests = bus_requests

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """Every metric, and its content type, in the format the ``Accept`` header asks for:
        the Prometheus text format (0.0.4) unless it asks for OpenMetrics."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def families(self) -> Iterator[Metric]:
        devices = GaugeMetricFamily(
            "roost_devices_connected",
            "Devices connected to this node, by protocol and TLS",
            labels=("protocol", "tls"),
        )
        connected: Counter[tuple[str, bool]] = Counter(
            session.link.kind() for session in self._sessions()
        )
        for protocol in ("legacy", "iotmp", "iotmp_websocket"):
            for tls in (False, True):
                connected.setdefault((protocol, tls), 0)
        for (protocol, tls), count in sorted(connected.items()):
            devices.add_metric((protocol, "true" if tls else "false"), count)
        yield devices
        calls = CounterMetricFamily(
            "roost_device_calls",
            "Resource calls made through the REST API, by outcome",
            labels=("outcome",),
        )
        for outcome, count in self.calls.outcomes.items():
            calls.add_metric((outcome,), count)
        yield calls
        yield self.calls.histogram()
        watchers = GaugeMetricFamily(
            "roost_stream_watchers",
            "Watchers of this node's devices: resource streams and stats",
            labels=("kind",),
        )
        for kind, count in sorted(self._watchers().items()):
            watchers.add_metric((kind,), count)
        yield watchers
        yield CounterMetricFamily(
            "roost_bucket_points_written",
            "Points stored in buckets (device writes, API writes, device-source feeds)",
            value=self.store.points_written,
        )
        yield CounterMetricFamily(
            "roost_bus_requests",
            "Requests to devices (calls, descriptions) carried by this node's bus",
            value=self._bus_requests(),
        )
        errors = CounterMetricFamily(
            "roost_store_errors",
            "Store operations that failed, by operation",
            labels=("operation",),
        )
        for operation, count in sorted(self.store.failures.items()):
            errors.add_metric((operation,), count)
        yield errors


class _NodeCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics.families()
