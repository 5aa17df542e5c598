"""What the NATS bus puts on the wire: its subjects, its messages (JSON bytes) and its claims.

Subjects (``<owner>``, ``<device>``, ``<user>`` are ids, escaped by :func:`token` if ever needed):

- ``roost.device.<owner>.<device>``: the node holding the device (or remembering its last stats)
  subscribes; requests (call, describe, stats, disconnect, forget) are NATS requests to it, watches
  are messages to it, and a node taking the device announces its claim on it;
- ``roost.claim.<owner>.<device>``: the claims again, for the nodes watching the device (so that
  they carry their watches to the new holder); nobody answers there;
- ``roost.frames.<node>``: the frames of resource streams for the watchers of one node;
- ``roost.events.<user>``: server events, heard by every node with a listener of that user;
- ``roost.revocations.<user>``: revocations, heard by every node (``roost.revocations.*``): each
  drops what its store keeps in memory before its listeners of that user check again;
- ``roost.feeds``: a device-source bucket changed on one node; every node reloads its feed (each
  node feeds the buckets of the devices it holds, so that a sample is stored once);
- ``roost.failures.<node>``: failed authentications the node counted or forgave (the notes of
  roost.auth.budgets), heard by every other node (``roost.failures.*``): one budget for all.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

from roost import errors
from roost.bus.base import DeviceKey

PREFIX = "roost"
BYTES = "\x00bytes"  # how a bytes value (an OTA chunk, say) crosses the JSON wire
NUL = "\x00"  # a key of the caller's that starts with it crosses with one more before it
_SAFE = frozenset(string.ascii_letters + string.digits + "_-")
_ESCAPE = "~"  # not in any id, safe in a NATS token


def token(value: str) -> str:
    """``value`` as one NATS subject token: ids pass unchanged (letters, digits, ``_``, ``-``);
    anything else (never an id of roost.ids) is escaped to ``~`` and its hex, so that no value
    can add a token or a wildcard to a subject."""
    if value and _SAFE.issuperset(value):
        return value
    return _ESCAPE + value.encode().hex()


def device_subject(key: DeviceKey) -> str:
    return f"{PREFIX}.device.{token(key.owner)}.{token(key.device)}"


def claim_subject(key: DeviceKey) -> str:
    return f"{PREFIX}.claim.{token(key.owner)}.{token(key.device)}"


FEEDS_SUBJECT = f"{PREFIX}.feeds"


def node_subject(node: str) -> str:
    """Where a node answers that it is still there (the holders ask it of their watchers)."""
    return f"{PREFIX}.node.{token(node)}"


def frames_subject(node: str) -> str:
    return f"{PREFIX}.frames.{token(node)}"


def events_subject(user: str) -> str:
    return f"{PREFIX}.events.{token(user)}"


def revocations_subject(user: str) -> str:
    return f"{PREFIX}.revocations.{token(user)}"


EVERY_REVOCATION = f"{PREFIX}.revocations.*"  # every user's


def failures_subject(node: str) -> str:
    return f"{PREFIX}.failures.{token(node)}"


EVERY_FAILURE = f"{PREFIX}.failures.*"  # every node's


def new_node_id() -> str:
    return secrets.token_hex(8)


def encode(message: dict[str, Any]) -> bytes:
    try:
        data = _ENCODER.encode(message)
    except _HoldsBytes:
        return _ENCODER.encode(_escaped(message)).encode()
    if _NUL_TEXT in data:  # a key of the caller's own may start with NUL: escape it
        data = _ENCODER.encode(_escaped(message))
    return data.encode()


def decode(data: bytes) -> dict[str, Any]:
    # most messages hold no text starting with NUL: read without the hook
    decoder = _HOOK_DECODER if _NUL_BYTES in data else _DECODER
    message = decoder.decode(data.decode())
    if not isinstance(message, dict):
        raise ValueError("a bus message is a JSON object")
    return message


def _escaped(value: Any) -> Any:
    """``value`` with each bytes value as ``{BYTES: base64}`` and one more NUL before each key
    that starts with one, so that a caller's own ``{"\\x00bytes": ...}`` comes back as itself."""
    if isinstance(value, dict):
        return {(NUL + k if k.startswith(NUL) else k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(item) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES: base64.b64encode(value).decode()}
    return value


class _HoldsBytes(TypeError):
    """A bytes value in a message: it takes the escaped form."""


def _not_json(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        raise _HoldsBytes
    raise TypeError(f"{type(value).__name__} cannot cross the bus")


def _unescaped(obj: dict[str, Any]) -> object:
    if len(obj) == 1 and BYTES in obj:
        return base64.b64decode(obj[BYTES])
    return {(k[1:] if k.startswith(NUL) else k): v for k, v in obj.items()}


_ENCODER = json.JSONEncoder(default=_not_json, separators=(",", ":"))
_DECODER = json.JSONDecoder()
_HOOK_DECODER = json.JSONDecoder(object_hook=_unescaped)
_NUL_TEXT = '"\\u0000'  # a JSON string that starts with NUL, as the encoder writes it
_NUL_BYTES = _NUL_TEXT.encode()


def error_message(exc: errors.RoostError) -> bytes:
    return encode({"error": type(exc).__name__, "message": exc.message})


def raise_error(answer: dict[str, Any]) -> None:
    """Raise the domain error an answer carries, if it carries one."""
    if "error" not in answer:
        return
    kind = getattr(errors, str(answer["error"]), None)
    message = str(answer.get("message", "error on another node"))
    if isinstance(kind, type) and issubclass(kind, errors.RoostError):
        if kind in (errors.RateLimited, errors.Unavailable):
            raise errors.Unavailable(message)
        raise kind(message)
    raise errors.RoostError(message)


@dataclass(frozen=True, slots=True, order=True)
class Claim:
    """A node's claim on a device: the later one wins (the device connected there last); equal
    times are settled by the node id, so every node agrees on the winner."""

    ns: int  # wall clock of the claiming node, in ns
    node: str

    @classmethod
    def now(cls, node: str, after: Claim | None = None) -> Claim:
        ns = time.time_ns()
        if after is not None and ns <= after.ns:
            ns = after.ns + 1  # a node's claims on a device only ever grow
        return cls(ns, node)

    def to_json(self) -> dict[str, Any]:
        return {"op": "claim", "ns": self.ns, "node": self.node}

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Claim:
        return cls(int(message["ns"]), str(message["node"]))
