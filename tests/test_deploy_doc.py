"""docs/deploy.md's three nodes on PostgreSQL and NATS, run as written.

The commands are taken from the document itself: its `export`s (the two settings every node gets),
the three `roost serve` lines with their flags, and the key files its copy loop gives nodes 2 and
3. What changes: the database and NATS are the test's (a fresh schema, a nats-server of the
test), `/var/lib/roost` is a temporary dir, each port the document names is a free one, and
`sudo -u roost -E /opt/roost/bin/roost` is this interpreter's `roost`. Then what the document
promises is checked: a token from node 1 works on the others, and a device connected to node 1
answers calls made on node 3. The systemd env file is read by the settings loader: every name in
it is a setting, with a value it accepts.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ports import free_port

from roost.config import env_name, load_settings, setting_names
from roost.device import Device

from conftest import ADMIN, ADMIN_PASSWORD, bearer, create_device, login
from nats_server import NatsServer, nats_server  # noqa: F401
from served_node import ServedNode, stop_all

DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
DOC_DATA = "/var/lib/roost"
PORT_FLAGS = ("--http-port", "--device-port", "--iotmp-port")


def blocks(title: str) -> list[tuple[str, str]]:
    """The fenced blocks of the section ``title``: (language, text)."""
    text = DOC.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else None]
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(section)]


def lines(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines left out."""
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]


class DocNode(ServedNode):
    """A node started from one of the document's `roost serve` lines, with its flags."""

    def __init__(self, line: str, root: Path, ports: dict[str, int], env: dict[str, str]) -> None:
        words = shlex.split(line.removesuffix("&"))
        args = words[words.index("serve") :]
        assert words[words.index("serve") - 1].endswith("/roost"), line
        for i, word in enumerate(args[:-1]):
            if word == "--data-dir":
                assert args[i + 1].startswith(DOC_DATA + "/"), line
                args[i + 1] = str(root / args[i + 1].removeprefix(DOC_DATA + "/"))
            elif word in PORT_FLAGS:  # the document's port: a free one in its place
                args[i + 1] = str(ports.setdefault(args[i + 1], free_port()))
        flags = dict(zip(args[1::2], args[2::2], strict=True))
        self.data_dir = Path(flags["--data-dir"])
        self.device_port = int(flags["--device-port"])
        name = self.data_dir.name
        super().__init__(name, args, env, root / f"{name}.log", int(flags["--http-port"]))


@pytest.fixture
async def three_nodes(
    tmp_path: Path,
    postgres_url: str,
    nats_server: NatsServer,  # noqa: F811
) -> AsyncIterator[list[DocNode]]:
    (_, setup), (_, first), (_, others), *_ = blocks("Three nodes with PostgreSQL and NATS")
    assert "apt-get install" in setup
    exports = dict(line.split()[1].split("=", 1) for line in lines(first) if "export " in line)
    ours = {"ROOST_DATABASE_URL": postgres_url, "ROOST_NATS_URL": nats_server.url}
    assert set(exports) == set(ours), exports
    env = {**os.environ, **ours, "ROOST_ADMIN_PASSWORD": ADMIN_PASSWORD}
    ports: dict[str, int] = {}
    root = tmp_path / "roost"
    root.mkdir()
    nodes: list[DocNode] = []
    try:
        (serve,) = [line for line in lines(first) if " serve " in line]
        nodes.append(DocNode(serve, root, ports, env))
        await nodes[0].ready()  # "once it listens, give the other nodes a copy of its keys"
        keys = re.findall(rf"{DOC_DATA}/node1/(\S+)", others)
        assert sorted(keys) == ["jwt.key", "pepper.key"], others
        for line in (line for line in lines(others) if " serve " in line):
            words = shlex.split(line)
            node_dir = root / Path(words[words.index("--data-dir") + 1]).name
            node_dir.mkdir(mode=0o700)
            for key in keys:
                shutil.copy(nodes[0].data_dir / key, node_dir / key)
                (node_dir / key).chmod(0o600)
            nodes.append(DocNode(line, root, ports, env))
        assert len(nodes) == 3 and len(ports) == 9
        for node in nodes[1:]:
            await node.ready()
        yield nodes
    finally:
        await stop_all(nodes, signal.SIGTERM)  # as systemd stops them


async def test_a_device_on_node_1_answers_calls_made_on_node_3(three_nodes: list[DocNode]) -> None:
    """The document's promise: "Log in on any node and use the token on any other; a device
    connected to node 1 answers calls made on node 3" (docs/deploy.md)."""
    one, two, three = three_nodes
    token = await login(one.http)
    await create_device(two.http, token)  # node 1's token, on node 2
    url = f"/v2/users/{ADMIN}/devices/dev1/double"

    async def double_on(node: DocNode) -> httpx.Response:
        return await node.http.post(url, json={"in": 4}, headers=bearer(token))

    assert (await double_on(three)).status_code == 404  # offline
    device = Device(user=ADMIN, device="dev1", credentials="secret1", port=one.device_port)
    device.input_output("double", lambda value: 2 * (value or 0))
    await device.start()
    try:
        await device.wait_connected(10)
        deadline = time.monotonic() + 10
        while (answer := await double_on(three)).status_code == 404:  # the claim in transit
            assert time.monotonic() < deadline, "node 3 never reached the device"
            await asyncio.sleep(0.05)
        assert answer.status_code == 200 and answer.json() == {"out": 8}
    finally:
        await device.stop()


def test_the_systemd_env_file_holds_settings_the_loader_takes() -> None:
    (block,) = [text for _, text in blocks("systemd") if "ROOST_" in text and "[Unit]" not in text]
    env = dict(line.split("=", 1) for line in lines(block))
    known = {env_name(name) for name in setting_names()}
    assert set(env) <= known, set(env) - known
    settings = load_settings(env=env)
    assert settings.workers == int(env["ROOST_WORKERS"])
    assert settings.database_url == env["ROOST_DATABASE_URL"]
    assert settings.nats_url == env["ROOST_NATS_URL"]
    assert settings.host == env["ROOST_HOST"]
