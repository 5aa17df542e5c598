"""The one error vocabulary of Roost.

Every failure the domain can name is a leaf of :class:`RoostError`. Errors carry data (a message,
maybe an id), never HTTP status codes: ``roost.api.errors`` is the one table that maps them to
responses, and the device layer maps them to protocol replies.
"""

from __future__ import annotations


class RoostError(Exception):
    """Root of every error Roost raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DecodeError(RoostError):
    """Bytes from a peer are not a valid frame, message or PSON value."""


class InvalidInput(RoostError):
    """A request is well-formed but its content is not acceptable (bad id, missing field)."""


class PayloadTooLarge(RoostError):
    """A request body is larger than the configured limit."""


class NotFound(RoostError):
    """The thing asked for does not exist (or is not visible to the caller)."""


class Conflict(RoostError):
    """The thing exists already, or its state forbids the operation."""


class Unauthenticated(RoostError):
    """No credentials, or credentials that do not identify anyone."""


class InvalidToken(Unauthenticated):
    """A token that is malformed, expired, revoked or signed by someone else."""


class Forbidden(RoostError):
    """The caller is known but may not do this."""


class RateLimited(RoostError):
    """Too many failed attempts from this address or at this account: retry after a while."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds until an attempt may succeed


class DeviceOffline(NotFound):
    """The device is registered but has no live session (Thinger answers 404)."""


class ResourceUnavailable(NotFound):
    """The device answered that it has no such resource, or refused the request."""


class DeviceTimeout(RoostError):
    """The device did not answer within the call's deadline."""


class Unsupported(RoostError):
    """The server keeps this but cannot carry it out (an endpoint type it does not call)."""


class UpstreamFailed(RoostError):
    """A server the call was passed on to (an endpoint's target) failed or could not be
    reached."""


class Unavailable(RoostError):
    """The server has no room for the work now (a full queue): retry after a while."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds


class ConfigError(RoostError):
    """A setting is unknown or has a value that cannot be used."""
