"""A lean simulator of many legacy-protocol devices in one process (the benchmark's devices).

Each simulated device is one asyncio Protocol on uvloop: it authenticates, answers keep-alives and
answers every request at once with a canned REQUEST_OK carrying a float, the way a thermometer
would. Run as ``python -m bench.devsim HOST PORT SOURCE USER PREFIX FIRST COUNT CREDENTIALS [tls]``;
it prints one line ``ready N SECONDS`` when all N devices are authenticated (or ``failed ...``),
then keeps them connected until its standard input closes.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from functools import cache

import uvloop

from roost.wire import legacy
from roost.wire.legacy import Message, Signal

AUTH_OK = legacy.encode(Message(signal=Signal.REQUEST_OK))


@cache
def reply(stream_id: int) -> bytes:
    """The canned answer to a request (remembered: the simulator must stay cheap)."""
    return legacy.encode(Message(stream_id=stream_id, signal=Signal.REQUEST_OK, payload=23.5))


class SimulatedDevice(asyncio.Protocol):
    def __init__(self, auth_frame: bytes, authenticated: asyncio.Future[bool]) -> None:
        self.auth_frame = auth_frame
        self.authenticated = authenticated
        self.decoder = legacy.Decoder()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.auth_frame)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for frame in self.decoder.feed(data):
            if isinstance(frame, legacy.KeepAlive):
                continue
            if not self.authenticated.done():
                self.authenticated.set_result(frame.signal == Signal.REQUEST_OK)
            elif frame.stream_id:
                self.transport.write(reply(frame.stream_id))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.authenticated.done():
            self.authenticated.set_result(False)


async def connect_one(
    host: str,
    port: int,
    source: str,
    user: str,
    name: str,
    credentials: str,
    context: ssl.SSLContext | None,
) -> tuple[bool, asyncio.Transport | None]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bool] = loop.create_future()
    auth = legacy.encode(Message(signal=Signal.AUTH, resource=[user, name, credentials]))
    for attempt in range(20):
        try:
            transport, _ = await loop.create_connection(
                lambda: SimulatedDevice(auth, done),
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
    return await done, transport  # type: ignore[return-value]


async def main(argv: list[str]) -> None:
    host, port, source, user, prefix, first, count, credentials = argv[:8]
    context = None
    if argv[8:] == ["tls"]:  # the benchmark's server is self-signed: no verification
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    started = time.perf_counter()
    names = [f"{prefix}{i}" for i in range(int(first), int(first) + int(count))]
    # connections being set up at once per process: below the server's per-address cap (100)
    semaphore = asyncio.Semaphore(64)

    async def bounded(name: str) -> tuple[bool, asyncio.Transport | None]:
        async with semaphore:
            return await connect_one(host, int(port), source, user, name, credentials, context)

    results = await asyncio.gather(*(bounded(n) for n in names))
    ok = sum(1 for good, _ in results if good)
    elapsed = time.perf_counter() - started
    if ok == len(names):
        print(f"ready {ok} {elapsed:.3f}", flush=True)
    else:
        print(f"failed {len(names) - ok} of {len(names)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # hold the connections until told to stop


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1:]))
