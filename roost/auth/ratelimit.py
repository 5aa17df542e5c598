"""Budgets of failed authentications: a sliding window per key, in memory, with an injected clock.

Pure: no I/O, no logging, no await. The clock is any ``() -> seconds`` (``time.monotonic`` in the
server, a fake one in tests).

- :class:`FailureWindow` allows at most ``limit`` failures per key in any ``window`` seconds. Once
  a key has used its budget, :meth:`FailureWindow.retry_after` says how long until the oldest of
  those failures leaves the window. A limit of 0 turns the budget off. Memory is bounded: at most
  ``limit`` timestamps per key and ``max_keys`` keys; when full, keys whose failures have all left
  the window go first, then the least recently failed.
- :class:`LoginLimiter` combines one window per user name and one per source address, which is
  what ``POST /oauth/token`` needs: a guesser is stopped whether they try many passwords on one
  account or one password on many accounts. An attempt is counted as a failure when it *starts*
  and forgiven if it succeeds, so concurrent guesses cannot all slip in before the first fails.
- :func:`address_key` groups IPv6 addresses by their /64 (one host usually holds a whole /64).

The windows are one process's. With several nodes (or ``--workers``) each node keeps its own and
tells the others of every failure it counts or forgives (:mod:`roost.auth.budgets`, over the bus),
so that the nodes share one budget within a bus round trip, not one budget each.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

DEFAULT_MAX_KEYS = 65_536
MAX_USER_KEY = 64  # longer names cannot be users; they are tracked by their first 64 characters


class FailureWindow:
    """At most ``limit`` failures per key within any ``window`` seconds."""

    def __init__(
        self, limit: int, window: float, clock: Clock, max_keys: int = DEFAULT_MAX_KEYS
    ) -> None:
        if limit < 0 or not window > 0 or max_keys < 1:
            raise ValueError("limit must be >= 0, window > 0 and max_keys >= 1")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        # key -> times of its last ``limit`` failures; ordered by most recent failure, oldest first
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0.0 when it may try now."""
        times = self._failures.get(key)
        if self.limit == 0 or times is None or len(times) < self.limit:
            return 0.0
        return max(0.0, times[0] + self.window - self._clock())

    def record(self, key: str) -> None:
        """Counts one failure of ``key`` now."""
        if self.limit == 0:
            return
        times = self._failures.pop(key, None)
        if times is None:
            self._make_room()
            times = deque(maxlen=self.limit)
        times.append(self._clock())
        self._failures[key] = times  # now the most recent

    def forgive(self, key: str) -> None:
        """Takes back the most recent failure of ``key`` (one that turned out not to be)."""
        times = self._failures.get(key)
        if times:
            times.pop()
            if not times:
                del self._failures[key]

    def __len__(self) -> int:
        return len(self._failures)

    def _make_room(self) -> None:
        if len(self._failures) < self._max_keys:
            return
        horizon = self._clock() - self.window
        while self._failures:  # the least recently failed come first
            key, times = next(iter(self._failures.items()))
            if times[-1] > horizon and len(self._failures) < self._max_keys:
                return
            del self._failures[key]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attempt is refused before it is checked, and for how long."""

    reason: str  # "user" or "address"
    retry_after: float

    @property
    def whole_seconds(self) -> int:
        """The wait rounded up, at least 1: the value of a ``Retry-After`` header."""
        return max(1, math.ceil(self.retry_after))


class LoginLimiter:
    """Failed password attempts, limited per user name and per source address."""

    def __init__(self, users: FailureWindow, addresses: FailureWindow) -> None:
        self.users = users  # failures by user name (its first MAX_USER_KEY characters)
        self.addresses = addresses  # failures by address_key

    def attempt(self, user: str, address: str | None) -> Refusal | None:
        """Starts an attempt: None if it may go on (it counts as failed until :meth:`succeeded`
        says otherwise), else why not and for how long."""
        user_key, address_key_ = user[:MAX_USER_KEY], address_key(address)
        wait = self.addresses.retry_after(address_key_)
        if wait > 0:
            return Refusal("address", wait)
        wait = self.users.retry_after(user_key)
        if wait > 0:
            return Refusal("user", wait)
        self.users.record(user_key)
        self.addresses.record(address_key_)
        return None

    def succeeded(self, user: str, address: str | None) -> None:
        self.users.forgive(user[:MAX_USER_KEY])
        self.addresses.forgive(address_key(address))


def address_key(address: str | None) -> str:
    """The key an address is counted under: IPv4 as is, IPv6 by its /64, anything else as is."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
