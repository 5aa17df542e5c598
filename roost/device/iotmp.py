"""IOTMP for a Python device, as IOTMP-Linux speaks it (protocol.md 3.5-3.8).

* CONNECT with a random stream id and PAYLOAD ``[user, device, credentials]``; authenticated iff
  the reply is OK. KEEP_ALIVE ``05 00`` every interval, the first one an interval after
  authentication; keep-alives from the server are counted, not answered. DISCONNECT closes.
* RUN -> OK with the raw result (not ``{"out": ..}``), ERROR without payload for an unknown
  resource, ERROR ``{"error": text}`` when the callback raises. A request with stream id 0 is
  executed without a reply (as SP specifies; IL would answer with stream id 0).
* DESCRIBE without RESOURCE -> ``{path: {"fn": kind}}``. Nested resources are listed flat, by
  their full path (``"sensors/humidity"``), the way IL names its own resources
  (``"$fs/get/*path"``); containers without a kind of their own are left out. RESOURCE is such a
  path string (or, as IE accepts, a list of names). DESCRIBE with RESOURCE -> ``{"in": ..}``,
  ``{"out": ..}`` or both (an in/out resource runs with its sample input).
* START_STREAM (PARAMETERS ``{"interval": ms}`` or a bare number) -> OK, then at once one
  STREAM_DATA with the current value, then one every interval if there is one. A resource may
  hold several streams (the capture opens a second, event-only one on a sampled resource).
  STREAM_DATA from the server runs an input and echoes STREAM_DATA with the new state. A RUN
  that writes a streamed input is not echoed (IL does not). STOP_STREAM finds the stream by id.
* Device -> server: RUN with RESOURCE = the service number (a varint) and PARAMETERS = the id
  (IL's layout, e.g. a bucket name; ``[device, resource]`` to call a device), PAYLOAD = the data;
  a confirmed call carries a random stream id and waits for OK / ERROR.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable

from roost.device.resources import Kind, Opened, Resource, Stream, guarded, split_path
from roost.errors import InvalidInput
from roost.wire import iotmp
from roost.wire.iotmp import KEEP_ALIVE, Message, MessageType, Service
from roost.wire.pson import PsonValue

log = logging.getLogger(__name__)

T = MessageType


class IotmpDialect:
    """IOTMP for :class:`roost.device.client.Link`."""

    default_port = 25204
    keepalive = KEEP_ALIVE
    keepalive_at_auth = False
    keepalive_needs_answer = False
    sample_at_start = False
    start_stream_kind = int(T.START_STREAM)

    def decoder(self) -> iotmp.Decoder:
        return iotmp.Decoder()

    def encode(self, frame: Message) -> bytes:
        return iotmp.encode(frame)

    def authenticate(self, user: str, device: str, credentials: str, stream_id: int) -> Message:
        return Message(T.CONNECT, stream_id, payload=[user, device, credentials])

    def accepted(self, reply: Message) -> bool:
        return reply.type == T.OK

    def is_keepalive(self, frame: Message) -> bool:
        return frame.type == T.KEEP_ALIVE

    def is_disconnect(self, frame: Message) -> bool:
        return frame.type == T.DISCONNECT

    def kind(self, frame: Message) -> int:
        return frame.type

    def reply(self, frame: Message) -> tuple[int, bool, PsonValue] | None:
        if frame.type == T.OK or frame.type == T.ERROR:
            return frame.stream_id, frame.type == T.OK, frame.payload
        return None

    async def answer(self, root: Resource, request: Message) -> tuple[list[Message], Opened | None]:
        kind = request.type
        if kind == T.RUN:
            return await run(root, request), None
        if kind == T.DESCRIBE:
            return await describe(root, request), None
        if kind == T.START_STREAM:
            return await start_stream(root, request)
        if kind == T.STOP_STREAM:
            return stop_stream(root, request), None
        if kind == T.STREAM_DATA:
            return await stream_input(root, request), None
        log.debug("ignoring an unexpected %r", request)
        return [], None

    async def sample(self, node: Resource, stream: Stream) -> Message | None:
        return await stream_data(node, stream.stream_id)

    async def events(self, node: Resource, payload: PsonValue) -> list[Message]:
        ids = [sid for sid, stream in node.streams.items() if not stream.interval_ms]
        if not ids:
            return []
        if payload is None:
            if node.kind in (Kind.NONE, Kind.RUN):
                return []
            ok, payload = await guarded(node, current_value(node))
            if not ok:
                return []
        return [Message(T.STREAM_DATA, sid, payload=payload) for sid in ids]

    def refusal(self, reply: Message) -> Message | None:
        if reply.type == T.OK:
            return Message(T.ERROR, reply.stream_id, payload={"error": "cannot encode the result"})
        return None

    def server_call(
        self, service: Service, stream_id: int, target: PsonValue, payload: PsonValue
    ) -> Message:
        return Message(T.RUN, stream_id, parameters=target, payload=payload, resource=int(service))

    def anonymous(self, service: Service) -> bool:
        return False


# -- answering server requests -------------------------------------------------------------------


def reply(request: Message, ok: bool, payload: PsonValue = None) -> list[Message]:
    """OK / ERROR to ``request``; none at all for stream id 0."""
    if request.stream_id == 0:
        return []
    return [Message(T.OK if ok else T.ERROR, request.stream_id, payload=payload)]


def find(root: Resource, resource: PsonValue) -> Resource | None:
    """The node a RESOURCE names: a path string ``"a/b"`` or a list of path strings."""
    if isinstance(resource, list) and resource and all(isinstance(p, str) for p in resource):
        resource = "/".join(str(p) for p in resource)
    if not isinstance(resource, str):
        return None
    try:
        return root.find(split_path(resource))
    except InvalidInput:
        return None


async def attempt(node: Resource, work: Awaitable[PsonValue]) -> tuple[bool, PsonValue]:
    """Await a callback: (True, result), or (False, {"error": text}) and a log line."""
    try:
        result = await work
    except Exception as exc:
        log.exception("resource %r failed", node.name)
        return False, {"error": str(exc) or type(exc).__name__}
    return True, result


async def current_value(node: Resource) -> PsonValue:
    """What a stream carries: an input's state, an output's value, an in/out's output."""
    if node.kind is Kind.INPUT:
        return await node.current_input()
    if node.kind is Kind.INPUT_OUTPUT and node.sample is None:
        return None
    return await node.execute(None)


async def io_description(node: Resource) -> PsonValue:
    if node.kind is Kind.OUTPUT:
        return {"out": await node.execute(None)}
    if node.kind is Kind.INPUT:
        return {"in": await node.current_input()}
    if node.kind is Kind.INPUT_OUTPUT:
        sample = node.sample
        return {"in": sample, "out": None if sample is None else await node.execute(sample)}
    return {}


def listing(root: Resource) -> dict[str, PsonValue]:
    """``{path: {"fn": kind}}`` for every resource with a kind, sorted by path (as IL sends)."""
    return {
        path: {"fn": int(node.kind)}
        for path, node in sorted(root.walk(), key=lambda item: item[0])
        if node.kind is not Kind.NONE
    }


async def run(root: Resource, request: Message) -> list[Message]:
    node = find(root, request.resource)
    if node is None:
        return reply(request, False)
    return reply(request, *await attempt(node, node.execute(request.payload)))


async def describe(root: Resource, request: Message) -> list[Message]:
    if request.resource is None:
        return reply(request, True, listing(root))
    node = find(root, request.resource)
    if node is None:
        return reply(request, False)
    return reply(request, *await attempt(node, io_description(node)))


async def stream_data(node: Resource, stream_id: int) -> Message | None:
    """STREAM_DATA with the current value; None for run / container resources or on failure."""
    if node.kind in (Kind.NONE, Kind.RUN):
        return None
    ok, value = await guarded(node, current_value(node))
    return Message(T.STREAM_DATA, stream_id, payload=value) if ok else None


def interval_ms(parameters: PsonValue) -> float:
    """The sampling interval of START_STREAM: ``{"interval": ms}`` or a bare number; 0 = none."""
    value = parameters.get("interval") if isinstance(parameters, dict) else parameters
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return value if value > 0 and math.isfinite(value) else 0


async def start_stream(root: Resource, request: Message) -> tuple[list[Message], Opened | None]:
    """Open a stream: ([OK, STREAM_DATA with the current value], opened)."""
    node = find(root, request.resource)
    if node is None:
        return reply(request, False), None
    sid = request.stream_id
    previous = root.find_stream(sid)
    if previous is not None:
        previous.close_stream(sid)
    stream = Stream(sid, interval_ms(request.parameters))
    node.open_stream(stream, exclusive=False)
    frames = reply(request, True)
    echo = await stream_data(node, sid)
    if echo is not None:
        frames.append(echo)
    return frames, Opened(node, stream)


def stop_stream(root: Resource, request: Message) -> list[Message]:
    node = root.find_stream(request.stream_id)
    if node is None:
        return reply(request, False)
    node.close_stream(request.stream_id)
    return reply(request, True)


async def stream_input(root: Resource, request: Message) -> list[Message]:
    """STREAM_DATA from the server: run the streamed input, echo STREAM_DATA with its state."""
    node = root.find_stream(request.stream_id)
    if node is None or node.kind not in (Kind.INPUT, Kind.INPUT_OUTPUT):
        log.debug("ignoring STREAM_DATA on stream %d", request.stream_id)
        return []
    ok, output = await guarded(node, node.execute(request.payload))
    if ok and node.kind is Kind.INPUT:
        ok, output = await guarded(node, node.current_input())
    return [Message(T.STREAM_DATA, request.stream_id, payload=output)] if ok else []
