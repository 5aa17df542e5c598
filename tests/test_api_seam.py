"""The one seam between the API and the devices (design.md 1; issue 10, item 5): every module of
``roost.api`` reaches devices through ``services.devices`` (roost/devices/calls.py), which goes
through the bus, so a second bus (NATS) needs no change above it. Read from the sources."""

from __future__ import annotations

import ast
from pathlib import Path

import roost.api

API = Path(roost.api.__file__).parent
# what holds or reaches this process's sessions: the API must not know them
FORBIDDEN_MODULES = {
    "roost.devices.registry",
    "roost.devices.gateway",
    "roost.devices.streams",
    "roost.devices.session",
    "roost.bus.local",
}
FORBIDDEN_ATTRIBUTES = {"registry", "gateway", "streams"}  # services.registry, gateway.streams
# the bus itself only for what is not a device's: revocations and server events, which go to
# every node
BUS_USES = {
    "announce",
    "watch_revocations",
    "unwatch_revocations",
    "publish",
    "subscribe_events",
    "unsubscribe_events",
}


def _sources() -> dict[str, ast.Module]:
    return {path.name: ast.parse(path.read_text(), str(path)) for path in sorted(API.glob("*.py"))}


def _faults(name: str, tree: ast.Module) -> list[str]:
    faults = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            modules = []
        faults += [f"{name}:{node.lineno} imports {m}" for m in modules if m in FORBIDDEN_MODULES]
        if not isinstance(node, ast.Attribute):
            continue
        if node.attr in FORBIDDEN_ATTRIBUTES:
            faults.append(f"{name}:{node.lineno} uses .{node.attr}")
        owner = node.value
        on_bus = (isinstance(owner, ast.Attribute) and owner.attr == "bus") or (
            isinstance(owner, ast.Name) and owner.id == "bus"
        )
        if on_bus and node.attr not in BUS_USES:
            faults.append(f"{name}:{node.lineno} asks the bus for {node.attr}")
    return faults


def test_the_api_reaches_devices_only_through_the_devices_service() -> None:
    sources = _sources()
    assert {"resources.py", "streams.py", "devices.py", "stats.py"} <= set(sources)
    faults = [fault for name, tree in sources.items() for fault in _faults(name, tree)]
    assert faults == []


def test_the_check_sees_what_it_forbids() -> None:
    """The rule is not vacuous: the ways the API used to reach devices are caught."""
    before = ast.parse(
        "from roost.devices.streams import Outbox, Watcher\n"
        "session = services.registry.get(key)\n"
        "hub = self.services.gateway.streams\n"
        "await services.bus.request(key, op, path, None, 1)\n"
        "bus = services.bus\n"
        "bus.watch_stats(key)\n"
        "await services.bus.announce(revocation)\n"
    )
    assert sorted(_faults("old.py", before)) == [
        "old.py:1 imports roost.devices.streams",
        "old.py:2 uses .registry",
        "old.py:3 uses .gateway",
        "old.py:3 uses .streams",
        "old.py:4 asks the bus for request",
        "old.py:6 asks the bus for watch_stats",
    ]
