"""The floor of the rpc benchmark: ``roost serve`` whose bus answers every device request at once.

    python -m bench.floor <the arguments of python -m roost.cli>

The same process as ``python -m roost.cli`` (the same start-up, uvloop, collector settings,
listeners and HTTP stack), with one change made before it starts: the in-process bus Roost builds
is :class:`InstantBus`, whose ``request`` answers the benchmark devices' value without reaching a
device. A resource call on it takes the whole path a real one takes (uvicorn's protocol,
``RestApi.direct``, the route match, the token check, the path and timeout checks, the call
through the bus interface, the ``{"out": value}`` JSON answer written in one send) except the
device round trip: no session, no wire encoding, no device socket, no wait for the answer.
``rpc_ratio`` divides the rpc throughput by this one's. The bus's ``request`` is the seam chosen
because it is exactly where the round trip starts, and an interface every bus keeps; everything
else (stats, streams, revocations) is the real bus's. ``bench.run`` checks that a call on the
floor answers what Roost answers with a device behind it (unpatched, it would be a 404).
"""

from __future__ import annotations

import sys

import roost.wiring
from roost.bus.base import DeviceKey, Operation
from roost.bus.local import LocalBus
from roost.cli import main as cli_main
from roost.wire.pson import PsonValue

VALUE = 23.5  # what bench.devsim's devices answer


class InstantBus(LocalBus):
    """The in-process bus, answering every request with VALUE at once."""

    async def request(  # type: ignore[override]
        self,
        key: DeviceKey,
        op: Operation,
        path: tuple[str, ...],
        payload: PsonValue,
        timeout: float,
    ) -> PsonValue:
        return VALUE


def install() -> None:
    """Make ``roost.wiring`` build InstantBus where it builds its LocalBus (loudly, or not at
    all)."""
    if getattr(roost.wiring, "LocalBus", None) is not LocalBus:
        raise SystemExit("bench.floor: roost.wiring no longer builds roost.bus.local.LocalBus")
    roost.wiring.LocalBus = InstantBus  # type: ignore[misc]


if __name__ == "__main__":
    install()
    sys.exit(cli_main(sys.argv[1:]))
