"""How much of the event loop one device connection may take.

Two bounds, so that one device cannot stall the others or the API:

- per loop step, a connection decodes at most :data:`STEP_BYTES` at a time and handles at most
  :data:`STEP_FRAMES` frames; what is left waits for the next step, with reading paused (a read
  can bring 256 KiB, tens of thousands of tiny frames);
- per second, a device may send ``device_frame_rate`` frames we did not ask for (stream data,
  keep-alives, anything but the replies to our requests), with a second's worth at once
  (:class:`FrameAllowance`). Past it, its connection is not read until the allowance has grown
  back: TCP pushes back and the device slows down. A device kept waiting like that without a
  break for ``device_flood_seconds`` is flooding, and is closed.
"""

from __future__ import annotations

from collections.abc import Callable

STEP_FRAMES = 128  # frames handled per connection per loop step
STEP_BYTES = 4096  # bytes decoded at a time (tiny frames: about 700)
# A wait that starts less than this after the previous one ended belongs to the same flood.
FLOOD_GAP = 1.0


class FrameAllowance:
    """The frames a device may still send unasked, as a bucket of ``rate`` tokens refilled at
    ``rate`` per second (a second's worth at once); ``clock`` is the loop's monotonic clock."""

    __slots__ = (
        "_clock",
        "_flood_seconds",
        "_refilled",
        "_since",
        "_waited_until",
        "rate",
        "tokens",
    )

    def __init__(self, rate: int, flood_seconds: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.tokens = float(rate)  # spent by the connection, one per frame
        self._flood_seconds = flood_seconds
        self._clock = clock
        self._refilled = clock()
        self._since: float | None = None  # start of the current run of waits
        self._waited_until = 0.0  # end of the last wait

    def refill(self) -> bool:
        """Add what has grown back since the last refill; True if a frame may go now."""
        now = self._clock()
        self.tokens = min(float(self.rate), self.tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        return self.tokens >= 1

    def wait(self) -> float | None:
        """Seconds to stop reading before the allowance covers a step's frames again; None if
        the device has been kept waiting, without a break, for ``flood_seconds``."""
        now = self._clock()
        if self._since is None or now - self._waited_until > FLOOD_GAP:
            self._since = now  # a new run of waits
        if now - self._since >= self._flood_seconds:
            return None
        delay = max(0.0, (min(self.rate, STEP_FRAMES) - self.tokens) / self.rate)
        self._waited_until = now + delay
        return delay
