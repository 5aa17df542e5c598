"""Which devices have a live session in this process, and who watches their stats."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from roost.bus.base import DeviceKey, Stats
from roost.devices.session import DeviceSession

log = logging.getLogger(__name__)

StatsListener = Callable[[DeviceKey], None]  # told the device's stats changed; must not raise

OFFLINE = Stats(connected=False, connected_ts=None, ip_address=None, rx_bytes=0, tx_bytes=0)


class Registry:
    """Device key -> live session. A second session for the same key replaces the first."""

    def __init__(self) -> None:
        self._sessions: dict[DeviceKey, DeviceSession] = {}
        self._last_stats: dict[DeviceKey, Stats] = {}
        self._watchers: dict[DeviceKey, Counter[StatsListener]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: DeviceKey) -> DeviceSession | None:
        return self._sessions.get(key)

    def sessions(self) -> list[DeviceSession]:
        return list(self._sessions.values())

    def add(self, session: DeviceSession) -> DeviceSession | None:
        """Register a new session; returns the one it replaced (already closed), if any."""
        old = self._sessions.get(session.key)
        if old is not None:
            old.close("replaced by a new connection")
            old.link.close("replaced by a new connection")
        self._sessions[session.key] = session
        self._last_stats.pop(session.key, None)
        self.stats_changed(session.key)
        return old

    def remove(self, session: DeviceSession) -> bool:
        """Forget a session that ended; False if it was not (or no longer) the current one."""
        if self._sessions.get(session.key) is not session:
            return False
        del self._sessions[session.key]
        self._last_stats[session.key] = session.stats()
        self.stats_changed(session.key)
        return True

    def disconnect(self, key: DeviceKey, reason: str) -> bool:
        """Close the device's connection (its session ends as the connection does); False when
        it has none."""
        session = self._sessions.get(key)
        if session is None:
            return False
        session.link.close(reason)
        return True

    def forget(self, key: DeviceKey) -> None:
        """Drop what is remembered of a device (it was deleted)."""
        self._last_stats.pop(key, None)

    def stats(self, key: DeviceKey) -> Stats:
        session = self._sessions.get(key)
        if session is not None:
            return session.stats()
        return self._last_stats.get(key, OFFLINE)

    def silent_since(self, cutoff: float) -> list[DeviceSession]:
        """Sessions that received nothing since loop time ``cutoff``."""
        return [s for s in self._sessions.values() if s.last_rx < cutoff]

    # stats watchers (the bus, for the stats streams)

    def watch(self, key: DeviceKey, listener: StatsListener) -> None:
        """Call ``listener`` whenever the device's stats change, until as many unwatch calls."""
        self._watchers.setdefault(key, Counter())[listener] += 1

    def unwatch(self, key: DeviceKey, listener: StatsListener) -> None:
        listeners = self._watchers.get(key)
        if listeners is None or not listeners[listener]:
            return
        listeners[listener] -= 1
        if not listeners[listener]:
            del listeners[listener]
            if not listeners:
                del self._watchers[key]

    def watching(self, key: DeviceKey) -> int:
        """How many watches of this device's stats are held."""
        return self._watchers[key].total() if key in self._watchers else 0

    def stats_watches(self) -> int:
        """How many watches of stats are held, of every device (for the metrics)."""
        return sum(listeners.total() for listeners in self._watchers.values())

    def stats_changed(self, key: DeviceKey) -> None:
        listeners = self._watchers.get(key)
        if listeners:
            for listener in list(listeners):
                listener(key)
