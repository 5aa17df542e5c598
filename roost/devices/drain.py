"""Draining a stopping node's device sessions: each closes as soon as no call is in flight on it.

A node told to stop (SIGTERM) first lets its HTTP requests finish; calls from other nodes
through the bus may still be on their way to its devices. :func:`drain_sessions` closes every
session that has no request in flight at once (its device reconnects to another node and calls
reach it there), and waits, until ``deadline``, for the busy ones to answer before closing them
too: a call a device already received is answered, not failed by the shutdown.
"""

from __future__ import annotations

import asyncio
import logging

from roost.devices.registry import Registry

log = logging.getLogger("roost.devices")

DRAIN_POLL_S = 0.02  # how often the busy sessions are looked at again


async def drain_sessions(registry: Registry, deadline: float, reason: str) -> int:
    """Close each session once it has no call in flight, until ``deadline`` (loop time); the
    number of sessions still busy then (left open: the caller closes them)."""
    loop = asyncio.get_running_loop()
    while True:
        busy = 0
        for session in registry.sessions():
            if session.closed:
                continue
            if session.calls_in_flight:
                busy += 1
            else:
                session.link.close(reason)
        if not busy:
            return 0
        if loop.time() >= deadline:
            log.warning("%d device sessions still had calls in flight when draining ended", busy)
            return busy
        await asyncio.sleep(DRAIN_POLL_S)
