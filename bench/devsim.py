"""A lean simulator of many devices in one process (the benchmark's devices).

Each simulated device is one asyncio Protocol on uvloop: it authenticates, ignores the server's
keep-alives, sends its own every KEEP_ALIVE_S and answers every request at once with a canned
success carrying a float, the way a thermometer would. Run as ``python -m bench.devsim HOST
PORT SOURCE USER PREFIX FIRST COUNT CREDENTIALS
[tls] [iotmp] [mqtt] [until-refused] [deadline=SECONDS] [retries=K]`` (legacy protocol unless
``iotmp``; ``mqtt`` opens idle MQTT 3.1.1 connections to a broker instead, client id PREFIX+i,
keep-alive 300 s). It prints one line ``ready N SECONDS`` when all N devices are authenticated (or
``failed ...``); with ``until-refused`` it starts no new connection after the first one refused
or failed (or past the deadline) and prints ``reached N SECONDS`` with the number that got in;
with ``retries=K`` a device refused tries K more connections first (each may reach another of the
server's workers: SO_REUSEPORT spreads connections, not devices). It then keeps them connected
until its standard input closes, and prints ``held N``: how many were still connected then.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import struct
import sys
import time
from functools import cache
from typing import Any

import uvloop

from roost.wire import iotmp, legacy
from roost.wire.iotmp import MessageType
from roost.wire.legacy import Message, Signal

VALUE = 23.5
MQTT_KEEP_ALIVE = 300
ANSWER_WAIT = 30.0  # seconds a device waits for its authentication's answer
HELD = [0]  # devices connected and authenticated now
# a device says it is alive this often, as Thinger's clients do: the server drops one silent for
# keepalive_timeout (150 s), and connecting tens of thousands may take longer than that
KEEP_ALIVE_S = 60.0
ADMITTED: list[SimulatedDevice] = []  # every device let in, for the keep-alives


@cache
def legacy_reply(stream_id: int) -> bytes:
    """The canned answer to a request (remembered: the simulator must stay cheap)."""
    return legacy.encode(Message(stream_id=stream_id, signal=Signal.REQUEST_OK, payload=VALUE))


@cache
def iotmp_reply(stream_id: int) -> bytes:
    return iotmp.encode(iotmp.Message(MessageType.OK, stream_id=stream_id, payload=VALUE))


class SimulatedDevice(asyncio.Protocol):
    """A legacy-protocol device."""

    def __init__(self, credentials: list[str], authenticated: asyncio.Future[bool]) -> None:
        self.credentials = credentials
        self.authenticated = authenticated
        self.decoder: Any = legacy.Decoder()
        self.transport: asyncio.Transport | None = None
        self.up = False  # authenticated and still connected

    def auth_frame(self) -> bytes:
        return legacy.encode(Message(signal=Signal.AUTH, resource=list(self.credentials)))

    def keep_alive(self, frame: Any) -> bool:
        return isinstance(frame, legacy.KeepAlive)

    def keep_alive_frame(self) -> bytes:
        return legacy.KEEP_ALIVE_BYTES

    def accepted(self, frame: Any) -> bool:
        return bool(frame.signal == Signal.REQUEST_OK)

    def reply(self, frame: Any) -> bytes | None:
        """The answer to a frame once authenticated; None when it needs none."""
        return legacy_reply(frame.stream_id) if frame.stream_id else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.auth_frame())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for frame in self.decoder.feed(data):
            if self.keep_alive(frame):
                continue
            if not self.authenticated.done():
                self.admitted(self.accepted(frame))
                continue
            answer = self.reply(frame)
            if answer is not None:
                self.transport.write(answer)

    def admitted(self, accepted: bool) -> None:
        self.authenticated.set_result(accepted)
        if accepted:
            self.up = True
            HELD[0] += 1
            ADMITTED.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up:
            self.up = False
            HELD[0] -= 1
        if not self.authenticated.done():
            self.authenticated.set_result(False)


class SimulatedIotmpDevice(SimulatedDevice):
    """An IOTMP device: CONNECT, then OK with the value to every RUN."""

    def __init__(self, credentials: list[str], authenticated: asyncio.Future[bool]) -> None:
        super().__init__(credentials, authenticated)
        self.decoder = iotmp.Decoder()

    def auth_frame(self) -> bytes:
        connect = iotmp.Message(MessageType.CONNECT, stream_id=1, payload=list(self.credentials))
        return iotmp.encode(connect)

    def keep_alive(self, frame: Any) -> bool:
        return bool(frame.type == MessageType.KEEP_ALIVE)

    def keep_alive_frame(self) -> bytes:
        return iotmp.encode(iotmp.KEEP_ALIVE)

    def accepted(self, frame: Any) -> bool:
        return bool(frame.type == MessageType.OK)

    def reply(self, frame: Any) -> bytes | None:
        if frame.type != MessageType.RUN or not frame.stream_id:
            return None
        return iotmp_reply(frame.stream_id)


def mqtt_connect(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, no will, no user name, MQTT_KEEP_ALIVE seconds."""
    name = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02" + struct.pack(">HH", MQTT_KEEP_ALIVE, len(name)) + name
    assert len(body) < 128  # one byte of remaining length
    return bytes([0x10, len(body)]) + body


class SimulatedMqttClient(SimulatedDevice):
    """An idle MQTT client: CONNECT, then nothing but reading (a CONNACK with code 0 admits)."""

    def auth_frame(self) -> bytes:
        return mqtt_connect(self.credentials[1])

    def keep_alive_frame(self) -> bytes:
        return b"\xc0\x00"  # PINGREQ

    def data_received(self, data: bytes) -> None:
        if not self.authenticated.done():
            self.admitted(data[:2] == b"\x20\x02" and data[3:4] == b"\x00")


async def connect_one(
    host: str,
    port: int,
    source: str,
    user: str,
    name: str,
    credentials: str,
    context: ssl.SSLContext | None,
    device: type[SimulatedDevice],
) -> tuple[bool, asyncio.Transport | None]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()
    for attempt in range(20):
        try:
            transport, _ = await loop.create_connection(
                lambda: device([user, name, credentials], done),
                host,
                port,
                local_addr=(source, 0),
                ssl=context,
                server_hostname=host if context else None,
            )
            break
        except OSError:  # accept backlog full during a storm: retry shortly
            await asyncio.sleep(0.05 * (attempt + 1))
    else:
        return False, None
    try:  # a server out of descriptors may leave a connection unanswered in its backlog
        return await asyncio.wait_for(done, ANSWER_WAIT), transport
    except TimeoutError:
        transport.close()
        return False, None


async def keep_alive() -> None:
    """Forever: each admitted device still up sends a keep-alive every KEEP_ALIVE_S, a slice of
    them each second."""
    turn = 0
    while True:
        await asyncio.sleep(1)
        if not ADMITTED:
            continue
        per_second = -(-len(ADMITTED) // int(KEEP_ALIVE_S))
        for device in ADMITTED[turn : turn + per_second]:
            if device.up and device.transport is not None:
                device.transport.write(device.keep_alive_frame())
        turn = turn + per_second if turn + per_second < len(ADMITTED) else 0


async def main(argv: list[str]) -> None:
    host, port, source, user, prefix, first, count, credentials = argv[:8]
    options = set(argv[8:])
    device: type[SimulatedDevice] = SimulatedDevice
    if "iotmp" in options:
        device = SimulatedIotmpDevice
    elif "mqtt" in options:
        device = SimulatedMqttClient
    until_refused = "until-refused" in options
    deadline, retries = float("inf"), 0
    for option in options:
        if option.startswith("deadline="):
            deadline = time.monotonic() + float(option.split("=", 1)[1])
        if option.startswith("retries="):
            retries = int(option.split("=", 1)[1])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # one descriptor per device
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    context = None
    if "tls" in options:  # the benchmark's server is self-signed: no verification
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    started = time.perf_counter()
    names = [f"{prefix}{i}" for i in range(int(first), int(first) + int(count))]
    # connections being set up at once per process: below the server's per-address cap (100)
    semaphore = asyncio.Semaphore(64)

    refused = False

    async def bounded(name: str) -> tuple[bool, asyncio.Transport | None]:
        nonlocal refused
        async with semaphore:
            if refused or time.monotonic() > deadline:
                return False, None
            for _ in range(1 + retries):  # each time a new connection, which may land elsewhere
                good, transport = await connect_one(
                    host, int(port), source, user, name, credentials, context, device
                )
                if good:
                    break
            if not good and until_refused:
                refused = True
            return good, transport

    beating = asyncio.get_running_loop().create_task(keep_alive())
    results = await asyncio.gather(*(bounded(n) for n in names))
    ok = sum(1 for good, _ in results if good)
    elapsed = time.perf_counter() - started
    if until_refused:
        print(f"reached {ok} {elapsed:.3f}", flush=True)
    elif ok == len(names):
        print(f"ready {ok} {elapsed:.3f}", flush=True)
    else:
        print(f"failed {len(names) - ok} of {len(names)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # hold the connections until told to stop
    print(f"held {HELD[0]}", flush=True)
    beating.cancel()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1:]))
