"""The legacy Thinger protocol of a Python device (protocol.md 2.5-2.8).

It behaves like the official client: AUTH with ``[user, device, credentials]`` and authenticated
iff the first reply is REQUEST_OK; a keep-alive right after auth and then every interval, the
connection dropped when the previous one went unanswered; requests addressed by a resource path
(a list of names, ``[..., "api"]`` to describe); one stream per resource with ``{"out": ..}`` /
``{"in": ..}`` samples and events; device -> server messages by signal flag with the identifier
in field 3. The connection itself is run by :mod:`roost.device.client`.
"""

from __future__ import annotations

from roost.device.resources import Kind, Opened, Resource, Stream, guarded
from roost.errors import InvalidInput
from roost.wire import legacy
from roost.wire.iotmp import Service
from roost.wire.legacy import KEEP_ALIVE, Frame, KeepAlive, Message, Signal
from roost.wire.pson import PsonValue

_SIGNALS: dict[Service, Signal] = {
    Service.READ_DEVICE_PROPERTY: Signal.GET_PROPERTY,
    Service.SET_DEVICE_PROPERTY: Signal.SET_PROPERTY,
    Service.CALL_DEVICE: Signal.CALL_DEVICE,
    Service.CALL_ENDPOINT: Signal.CALL_ENDPOINT,
    Service.WRITE_BUCKET: Signal.BUCKET_DATA,
}


class LegacyDialect:
    """The legacy protocol for :class:`roost.device.client.Link`."""

    default_port = 25200
    keepalive: Frame = KEEP_ALIVE
    keepalive_at_auth = True
    keepalive_needs_answer = True
    sample_at_start = True
    start_stream_kind = int(Signal.START_STREAM)

    def decoder(self) -> legacy.Decoder:
        return legacy.Decoder()

    def encode(self, frame: Frame) -> bytes:
        return legacy.encode(frame)

    def authenticate(self, user: str, device: str, credentials: str, stream_id: int) -> Frame:
        return Message(signal=Signal.AUTH, resource=[user, device, credentials])

    def accepted(self, reply: Frame) -> bool:
        return isinstance(reply, Message) and reply.signal == Signal.REQUEST_OK

    def is_keepalive(self, frame: Frame) -> bool:
        return isinstance(frame, KeepAlive)

    def is_disconnect(self, frame: Frame) -> bool:
        return False  # the legacy protocol has no DISCONNECT: the server closes the socket

    def kind(self, frame: Frame) -> int:
        return frame.signal if isinstance(frame, Message) else 0

    def reply(self, frame: Frame) -> tuple[int, bool, PsonValue] | None:
        if isinstance(frame, Message) and frame.signal in (
            Signal.REQUEST_OK,
            Signal.REQUEST_ERROR,
        ):
            return frame.stream_id, frame.signal == Signal.REQUEST_OK, frame.payload
        return None

    async def answer(self, root: Resource, request: Frame) -> tuple[list[Frame], Opened | None]:
        if not isinstance(request, Message):
            return [], None
        if request.signal == Signal.START_STREAM:
            return await start_stream(root, request)
        if request.signal == Signal.STOP_STREAM:
            return stop_stream(root, request), None
        return await answer_request(root, request), None

    async def sample(self, node: Resource, stream: Stream) -> Frame | None:
        return await stream_message(node, stream, Signal.STREAM_SAMPLE)

    async def events(self, node: Resource, payload: PsonValue) -> list[Frame]:
        stream = node.stream
        if stream is None:
            return []
        if payload is not None:
            return [Message(stream.stream_id, Signal.STREAM_EVENT, payload=payload)]
        event = await stream_message(node, stream, Signal.STREAM_EVENT)
        return [] if event is None else [event]

    def refusal(self, reply: Frame) -> Frame | None:
        if isinstance(reply, Message) and reply.signal == Signal.REQUEST_OK:
            return Message(reply.stream_id, Signal.REQUEST_ERROR)
        return None

    def server_call(
        self, service: Service, stream_id: int, target: PsonValue, payload: PsonValue
    ) -> Frame:
        signal = _SIGNALS.get(service)
        if signal is None:
            raise InvalidInput(f"the legacy protocol has no {service.name}")
        if service is Service.CALL_DEVICE and isinstance(target, list) and len(target) == 2:
            device, resource = target
            return Message(stream_id, signal, device, [resource], payload)
        return Message(stream_id, signal, target, payload=payload)

    def anonymous(self, service: Service) -> bool:
        return service is Service.READ_DEVICE_PROPERTY  # GET_PROPERTY goes with stream id 0


# -- answering server requests -------------------------------------------------------------------


def reply(request: Message, ok: bool, payload: PsonValue = None) -> list[Frame]:
    """The reply to ``request``; none at all for stream id 0 (executed, never answered)."""
    if request.stream_id == 0:
        return []
    signal = Signal.REQUEST_OK if ok else Signal.REQUEST_ERROR
    return [Message(request.stream_id, signal, payload=payload)]


def find(root: Resource, resource: PsonValue) -> Resource | None:
    """The node a request's resource path names; None if missing or not a list of strings."""
    if not isinstance(resource, list) or not resource:
        return None
    return root.find(resource)


async def stream_message(node: Resource, stream: Stream, signal: Signal) -> Message | None:
    """A STREAM_EVENT / STREAM_SAMPLE with the api-io form; None if the callback failed."""
    ok, payload = await guarded(node, node.api_io())
    return Message(stream.stream_id, signal, payload=payload) if ok else None


async def answer_request(root: Resource, request: Message) -> list[Frame]:
    """Run (or describe) the resource of a request: the reply, then, after a write into a
    streamed input, the STREAM_EVENT carrying the new input."""
    path = request.resource
    if isinstance(path, list) and path and path[-1] == "api":
        if len(path) == 1:
            return reply(request, True, root.api_listing())
        node = find(root, path[:-1])
        if node is None:
            return reply(request, False)
        return reply(request, *await guarded(node, node.api_io()))
    node = find(root, path)
    if node is None:
        return reply(request, False)
    ok, output = await guarded(node, node.execute(request.payload))
    frames = reply(request, ok, output)
    written = request.payload is not None and node.kind in (Kind.INPUT, Kind.INPUT_OUTPUT)
    stream = node.stream
    if ok and written and stream is not None:
        ok, event = await guarded(node, node.api_io(request.payload, output))
        if ok:
            frames.append(Message(stream.stream_id, Signal.STREAM_EVENT, payload=event))
    return frames


async def start_stream(root: Resource, request: Message) -> tuple[list[Frame], Opened | None]:
    """Open (or replace) the stream on the requested resource: ([OK, first event], opened).

    The payload is the sampling interval in ms; the client samples when it is > 0.
    """
    node = find(root, request.resource)
    if node is None:
        return reply(request, False), None
    interval = request.payload
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
        interval = 0
    stream = Stream(request.stream_id, interval)
    node.open_stream(stream, exclusive=True)
    frames = reply(request, True)
    if node.kind in (Kind.INPUT, Kind.INPUT_OUTPUT):
        event = await stream_message(node, stream, Signal.STREAM_EVENT)
        if event is not None:
            frames.append(event)
    return frames, Opened(node, stream)


def stop_stream(root: Resource, request: Message) -> list[Frame]:
    """Close the stream on the requested resource (found by path; the id is only echoed)."""
    node = find(root, request.resource)
    if node is None:
        return reply(request, False)
    node.close_own_streams()
    return reply(request, True)
