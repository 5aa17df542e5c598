"""HTTP connections that have not sent a whole request yet: how many may wait, and which go.

A connection is *pending* from when it opens, and again from each answer on a kept-alive
connection, until a request (head and body) has arrived in full. Pending connections cost a
file descriptor each and prove nothing, so their number is bounded two ways:

- per source address (IPv6: its /64, as :func:`roost.auth.ratelimit.address_key` groups them):
  a connection over its address's share is refused, the ones already waiting keep their place.
  A listed reverse proxy (``trusted_proxies``) speaks for many clients and has no share of its
  own: its connections count in the total only;
- in all: at the limit the OLDEST pending connection is closed to make room. An honest client
  sends its request within milliseconds of connecting, so it is never the oldest for long; a
  flood of idle or slow connections only evicts its own. Refusing the newcomer instead would
  hand the server to whoever filled it first.

The total limit is also held to a quarter of the process's descriptor limit
(:func:`descriptor_share`), as is the device connections' budget of those still authenticating
(:class:`roost.devices.admission.Admission`): connections that have proved nothing take at most
half the file table, and a flood of them leaves the rest to the devices that are in, the
database and the requests being answered. The devices, in or authenticating, leave the HTTP API
its pending budget and ``RESERVED_DESCRIPTORS`` more (:func:`device_room`): a process whose every
descriptor is taken closes each new connection at once, and no device could be called.
"""

from __future__ import annotations

import ipaddress
import logging
import resource
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

from roost.auth.ratelimit import address_key

log = logging.getLogger("roost.http")

# pending HTTP connections take at most 1/4 of the descriptor limit, and so do device
# connections authenticating
DESCRIPTOR_SHARE = 4
UNLIMITED_DESCRIPTORS = 1 << 20  # what a limit of "unlimited" is taken for
# besides the pending HTTP connections, never taken by devices: the listeners, the database, the
# bus, requests being answered and streams held
RESERVED_DESCRIPTORS = 64


class Pending(Protocol):
    def evict(self) -> None:
        """Close the connection: a newer one needs its place."""


class PendingConnections:
    """At most ``limit`` pending connections, ``per_address`` from one address (0: no limit)
    except from the ``proxies`` (addresses or networks)."""

    def __init__(self, limit: int, per_address: int, proxies: Iterable[str] = ()) -> None:
        if limit < 1 or per_address < 0:
            raise ValueError("limit must be >= 1 and per_address >= 0")
        self.limit = limit
        self.per_address = per_address
        self._proxies = [ipaddress.ip_network(proxy, strict=False) for proxy in proxies]
        self._waiting: OrderedDict[Pending, str] = OrderedDict()  # oldest first -> address key
        self._per_key: dict[str, int] = {}
        self._full = False  # the limit was hit and the count has not fallen to half since

    def admit(self, connection: Pending, address: str | None) -> bool:
        """Count ``connection`` as pending; False when its address has used its share (the
        caller closes it). At the limit the oldest pending connection is evicted first."""
        if connection in self._waiting:
            return True
        key = address_key(address)
        held = self._per_key.get(key, 0)
        if self.per_address and held >= self.per_address and not self._is_proxy(address):
            log.debug("refused an HTTP connection from %s: %d already waiting", key, held)
            return False
        while len(self._waiting) >= self.limit:
            self._warn_full()
            oldest, oldest_key = self._waiting.popitem(last=False)
            self._forget(oldest_key)
            oldest.evict()
        self._waiting[connection] = key
        self._per_key[key] = held + 1
        return True

    def release(self, connection: Pending) -> None:
        """``connection`` is no longer pending (its request arrived, or it closed)."""
        key = self._waiting.pop(connection, None)
        if key is not None:
            self._forget(key)
        if self._full and len(self._waiting) <= self.limit // 2:
            self._full = False

    def __len__(self) -> int:
        return len(self._waiting)

    def _is_proxy(self, address: str | None) -> bool:
        if not self._proxies or not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._proxies)

    def _forget(self, key: str) -> None:
        left = self._per_key.pop(key) - 1
        if left:
            self._per_key[key] = left

    def _warn_full(self) -> None:
        if not self._full:
            self._full = True
            log.warning(
                "%d HTTP connections are waiting for a request: closing the oldest to make room",
                self.limit,
            )


def descriptor_share(configured: int, descriptors: int) -> int:
    """A budget of connections that have proved nothing (HTTP pending, device authenticating):
    ``configured`` (0: none of its own), at most a quarter of the ``descriptors``."""
    share = max(1, descriptors // DESCRIPTOR_SHARE)
    return min(configured, share) if configured else share


def device_room(descriptors: int, http_pending: int) -> int:
    """Device connections, in or authenticating, a process allowed ``descriptors`` open files
    may hold: all but the HTTP connections' pending budget and RESERVED_DESCRIPTORS."""
    return max(1, descriptors - http_pending - RESERVED_DESCRIPTORS)


def raise_descriptor_limit() -> int:
    """Raise the soft limit of open files to the hard one; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft == unlimited:
        return UNLIMITED_DESCRIPTORS
    target = UNLIMITED_DESCRIPTORS if hard == unlimited else hard
    if soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    log.info("raised the open-file limit from %d to %d", soft, target)
    return target
