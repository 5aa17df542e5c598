"""Device connections still authenticating: how many there are, from where, and who makes room.

Each connection counts from its arrival until it is in, refused or gone, against a budget per
address (IPv6: its /64) and a global one. A connection from an address at its own budget is
refused. When the global budget is full, a newcomer takes the place of the oldest connection of
the address holding the most, provided that address holds more than the newcomer's: many idle
connections from a few addresses cannot lock out a device from another one, and an address can
only push the budget toward an equal share. Connections that have sent nothing at all go before
those that have sent part of a frame; a connection whose credentials are being checked (its
authentication frame arrived whole) is never evicted, as that check ends soon either way.

Device connections in all, in or authenticating, are held to ``room`` (set from the open files,
:func:`roost.net.http_admission.device_room`): at it a newcomer makes room as under the budget
above (a few addresses holding silent connections cannot lock the others out), or is refused
when every connection in the room is a device that is in, so that devices never take the
descriptors the HTTP API needs. A process out of descriptors closes every new connection at
once, the API's included: its devices could no longer be called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from roost.auth.ratelimit import address_key

log = logging.getLogger("roost.devices")


class Waiting(Protocol):
    """A connection waiting to authenticate, as the admission sees it."""

    def evict(self, reason: str) -> None:
        """Close: another connection takes this one's place (it no longer counts here)."""


class _Address:
    """The connections authenticating from one address, oldest first."""

    __slots__ = ("checking", "key", "silent", "talking")

    def __init__(self, key: str) -> None:
        self.key = key
        self.silent: dict[Waiting, None] = {}  # sent no byte yet
        self.talking: dict[Waiting, None] = {}  # sent part of their authentication
        self.checking = 0  # authentication frame received, credentials being checked

    @property
    def evictable(self) -> int:
        return len(self.silent) + len(self.talking)

    @property
    def held(self) -> int:
        return len(self.silent) + len(self.talking) + self.checking


class Admission:
    def __init__(
        self, limit: int, per_address: int, connected: Callable[[], int] = lambda: 0
    ) -> None:
        self.limit = limit
        self.per_address = per_address
        self.room = 0  # device connections, in (``connected()``) or authenticating; 0: no cap
        self._connected = connected
        self.full = False  # at the room, until the count falls a tenth below it
        self.total = 0
        self._addresses: dict[str, _Address] = {}
        self._of: dict[Waiting, _Address] = {}
        # addresses by how many evictable connections they hold (> 0), and the largest such count
        self._by_evictable: dict[int, dict[_Address, None]] = {}
        self._top = 0

    def admit(self, connection: Waiting, ip: str | None) -> bool:
        """Count ``connection`` in, evicting another if the global budget or the room is full;
        False if it must be refused (its address is at its budget, or holds as many as any
        other, or the room is full of devices that are in)."""
        no_room = self._no_room()
        key = address_key(ip)
        address = self._addresses.get(key)
        held = 0 if address is None else address.held
        if held >= self.per_address:
            return False
        if (no_room or self.total >= self.limit) and not self._evict_for(held):
            return False
        if address is None:
            address = self._addresses[key] = _Address(key)
        before = address.evictable
        address.silent[connection] = None
        self._of[connection] = address
        self.total += 1
        self._moved(address, before)
        return True

    def heard(self, connection: Waiting) -> None:
        """``connection`` sent its first bytes."""
        address = self._of.get(connection)
        if address is not None and address.silent.pop(connection, 0) is None:
            address.talking[connection] = None

    def checking(self, connection: Waiting) -> None:
        """``connection``'s credentials are being checked: it stays counted, but is no longer
        evicted to make room."""
        address = self._of.get(connection)
        if address is None:
            return
        before = address.evictable
        if address.silent.pop(connection, 0) is None or address.talking.pop(connection, 0) is None:
            address.checking += 1
            self._moved(address, before)

    def release(self, connection: Waiting) -> None:
        """``connection`` no longer counts (in, refused or gone); nothing if it did not."""
        address = self._of.pop(connection, None)
        if address is None:
            return
        before = address.evictable
        if (
            address.silent.pop(connection, 0) is not None
            and address.talking.pop(connection, 0) is not None
        ):
            address.checking -= 1
        self.total -= 1
        self._moved(address, before)
        if not address.held:
            del self._addresses[address.key]

    def _no_room(self) -> bool:
        if not self.room:
            return False
        count = self.total + self._connected()
        if count >= self.room:
            if not self.full:
                self.full = True
                log.warning(
                    "%d device connections: refusing new ones until some go (the rest of the "
                    "open files is the HTTP API's; raise the open-file limit to hold more)",
                    count,
                )
            return True
        if self.full and count < self.room - self.room // 10:
            self.full = False
        return False

    def _evict_for(self, held: int) -> bool:
        """Make room for a connection from an address holding ``held``: evict the oldest
        connection of the address holding the most, if that is more than ``held``."""
        while self._top and self._top not in self._by_evictable:
            self._top -= 1
        if self._top <= held:
            return False
        address = next(iter(self._by_evictable[self._top]))
        victim = next(iter(address.silent or address.talking))
        self.release(victim)
        victim.evict("made room for a connection from another address")
        return True

    def _moved(self, address: _Address, before: int) -> None:
        """Re-file ``address`` after its evictable count changed from ``before``."""
        after = address.evictable
        if after == before:
            return
        if before:
            bucket = self._by_evictable[before]
            del bucket[address]
            if not bucket:
                del self._by_evictable[before]
        if after:
            self._by_evictable.setdefault(after, {})[address] = None
            self._top = max(self._top, after)
