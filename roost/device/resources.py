"""The resource tree of a Python device: what the official libraries build with ``thing["x"]``.

A :class:`Resource` has one kind (output, input, input/output, run, or none for a pure container),
the user's callbacks (sync or async), optional sub-resources, and the streams the server opened on
it (the legacy protocol holds at most one per resource, IOTMP any number, each with its own id).
Nothing here does I/O or knows a protocol: the dialects (``legacy.py``, ``iotmp.py``) turn server
requests into the frames the device answers with, and the client (``client.py``) sends them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

from roost.errors import InvalidInput
from roost.wire.pson import PsonValue

log = logging.getLogger(__name__)

# User callbacks may return a value or an awaitable; their arguments are decoded PSON values.
OutputFn = Callable[[], Any]
SetterFn = Callable[[Any], Any]
InOutFn = Callable[[Any], Any]
RunFn = Callable[[], Any]


class Kind(IntEnum):
    """The resource's io type, the ``fn`` of the API listing."""

    NONE = 0
    RUN = 1
    INPUT = 2
    OUTPUT = 3
    INPUT_OUTPUT = 4


@dataclass
class Stream:
    """A stream the server opened on a resource: its id and sampling interval (ms, 0 = events)."""

    stream_id: int
    interval_ms: float = 0
    sampler: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()
            self.sampler = None


def split_path(path: str | Sequence[str]) -> list[str]:
    """``"a/b"`` or ``["a", "b"]`` -> ``["a", "b"]``; empty names are refused."""
    parts = path.split("/") if isinstance(path, str) else list(path)
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise InvalidInput(f"invalid resource path {path!r}")
    return parts


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a user callback that may be a plain function or return an awaitable."""
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Resource:
    """One node of the tree. Top-level resources are the children of a nameless root."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind = Kind.NONE
        self.access = 0  # "al": 0 private, 1 protected, 2 public
        self.children: dict[str, Resource] = {}
        self.streams: dict[int, Stream] = {}  # by stream id, in the order opened
        self.sample: PsonValue = None  # the input an in/out resource describes itself with
        self.last_input: PsonValue = None
        self._fn: Callable[..., Any] | None = None
        self._getter: OutputFn | None = None

    def __repr__(self) -> str:
        return f"Resource({self.name!r}, {self.kind.name})"

    # -- building ---------------------------------------------------------------------------------

    def child(self, name: str) -> Resource:
        """The sub-resource ``name``, created (as a container) if missing."""
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = Resource(name)
        return node

    def find(self, path: Sequence[object]) -> Resource | None:
        node: Resource | None = self
        for part in path:
            if node is None or not isinstance(part, str):
                return None
            node = node.children.get(part)
        return node

    def set_output(self, fn: OutputFn) -> Resource:
        self.kind, self._fn = Kind.OUTPUT, fn
        return self

    def set_input(self, setter: SetterFn, getter: OutputFn | None = None) -> Resource:
        self.kind, self._fn, self._getter = Kind.INPUT, setter, getter
        return self

    def set_input_output(self, fn: InOutFn, sample: PsonValue = None) -> Resource:
        self.kind, self._fn, self.sample = Kind.INPUT_OUTPUT, fn, sample
        return self

    def set_run(self, fn: RunFn) -> Resource:
        self.kind, self._fn = Kind.RUN, fn
        return self

    # -- answering --------------------------------------------------------------------------------

    async def execute(self, payload: PsonValue) -> PsonValue:
        """Run the resource for a request; return the reply payload (None = no payload).

        An input is written only when the request carries a payload; reading an input with a
        plain request returns nothing, as on the official devices. An in/out resource called
        without a payload runs with its ``sample`` input.
        """
        fn = self._fn
        if fn is None:
            return None
        if self.kind is Kind.OUTPUT:
            result: PsonValue = await call(fn)
            return result
        if self.kind is Kind.INPUT:
            if payload is not None:
                await call(fn, payload)
                self.last_input = payload
            return None
        if self.kind is Kind.INPUT_OUTPUT:  # without input: run with the sample, like a describe
            result = await call(fn, self.sample if payload is None else payload)
            return result
        await call(fn)
        return None

    async def current_input(self) -> PsonValue:
        """The input's state: from the getter if there is one, else the last value written."""
        if self._getter is not None:
            value: PsonValue = await call(self._getter)
            return value
        return self.last_input

    async def api_io(self, given: PsonValue = None, output: PsonValue = None) -> PsonValue:
        """The ``{"in": ..}`` / ``{"out": ..}`` form used by describe, samples and events.

        For an in/out resource ``given``/``output`` are the input and output of a call just made;
        without them the resource is run with its ``sample`` input (``out`` first, as captured).
        """
        if self.kind is Kind.OUTPUT:
            return {"out": await self.execute(None)}
        if self.kind is Kind.INPUT:
            return {"in": await self.current_input()}
        if self.kind is Kind.INPUT_OUTPUT:
            if given is None:
                given = self.sample
                output = await self.execute(given) if given is not None else None
            return {"out": output, "in": given}
        return {}

    def api(self) -> dict[str, PsonValue]:
        """This resource's entry in the API listing, with ``"/"`` for its sub-resources."""
        entry: dict[str, PsonValue] = {"al": self.access, "fn": int(self.kind)}
        if self.children:
            entry["/"] = self.api_listing()
        return entry

    def api_listing(self) -> dict[str, PsonValue]:
        """``{name: {"al": .., "fn": ..}}`` per sub-resource (the root's is the device API)."""
        return {name: node.api() for name, node in self.children.items()}

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Resource]]:
        """``("a/b", node)`` for every node below this one, depth first."""
        for name, node in self.children.items():
            path = f"{prefix}{name}"
            yield path, node
            yield from node.walk(f"{path}/")

    # -- streams ----------------------------------------------------------------------------------

    @property
    def stream(self) -> Stream | None:
        """The first stream open on this resource (the only one in the legacy protocol)."""
        return next(iter(self.streams.values()), None)

    def open_stream(self, stream: Stream, *, exclusive: bool) -> None:
        """Add ``stream``; an ``exclusive`` one first closes every other stream of the resource,
        otherwise only a stream with the same id is replaced."""
        if exclusive:
            self.close_own_streams()
        else:
            self.close_stream(stream.stream_id)
        self.streams[stream.stream_id] = stream

    def close_stream(self, stream_id: int) -> bool:
        """Close one stream of this resource; False if it has no stream with that id."""
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return False
        stream.cancel()
        return True

    def close_own_streams(self) -> None:
        for stream in self.streams.values():
            stream.cancel()
        self.streams.clear()

    def find_stream(self, stream_id: int) -> Resource | None:
        """The node in this subtree holding the stream ``stream_id``."""
        if stream_id in self.streams:
            return self
        for node in self.children.values():
            found = node.find_stream(stream_id)
            if found is not None:
                return found
        return None

    def close_streams(self) -> None:
        """Close every stream in this subtree (the connection that opened them is gone)."""
        self.close_own_streams()
        for node in self.children.values():
            node.close_streams()


class Opened(NamedTuple):
    """A stream a request has just opened on ``node``: the client samples it if it has an
    interval."""

    node: Resource
    stream: Stream


async def guarded(node: Resource, work: Awaitable[PsonValue]) -> tuple[bool, PsonValue]:
    """Await a user callback: (True, result), or (False, None) and a log line if it raised."""
    try:
        return True, await work
    except Exception:
        log.exception("resource %r failed", node.name)
        return False, None
