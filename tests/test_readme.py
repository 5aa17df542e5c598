"""The README's quick start, run as written against a real `roost serve`.

The blocks of its "Quick start" section are taken from the README itself, in order: the start
command (its ROOST_ADMIN_PASSWORD is the password the server gets), the log-in and device
commands, the Python device, and the calls that read and write it. Only the ports change: the
server listens on free ones, and the test writes them in place of 8080 and 25200.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def quick_start_blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    start = text.index("## Quick start")
    section = text[start : text.index("\n## ", start + 1)]
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(section)]


def wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "roost serve exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.fixture
def ports() -> dict[str, int]:
    return {"http": free_port(), "device": free_port(), "iotmp": free_port()}


@pytest.fixture
def served(tmp_path: Path, ports: dict[str, int]) -> Iterator[None]:
    (language, start), *_ = quick_start_blocks()
    assert language == "sh" and start.strip().endswith("make serve")
    assignment = re.fullmatch(r"ROOST_ADMIN_PASSWORD=(\S+) make serve", start.strip())
    assert assignment is not None, start
    roost = shutil.which("roost", path=str(Path(sys.executable).parent)) or "roost"
    env = {
        **os.environ,
        "ROOST_ADMIN_PASSWORD": assignment.group(1),
        "ROOST_DATA_DIR": str(tmp_path / "roost-data"),
        "ROOST_HTTP_PORT": str(ports["http"]),
        "ROOST_DEVICE_PORT": str(ports["device"]),
        "ROOST_IOTMP_PORT": str(ports["iotmp"]),
    }
    process = subprocess.Popen([roost, "serve"], env=env, text=True, stderr=subprocess.PIPE)
    try:
        wait_for_port(ports["http"], process)
        yield
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
        assert "Traceback" not in stderr


def with_ports(block: str, ports: dict[str, int]) -> str:
    return block.replace("127.0.0.1:8080", f"127.0.0.1:{ports['http']}").replace(
        "port=25200", f"port={ports['device']}"
    )


def test_the_quick_start_runs_as_written(
    served: None, ports: dict[str, int], tmp_path: Path
) -> None:
    blocks = quick_start_blocks()
    assert [language for language, _ in blocks] == ["sh", "sh", "python", "sh"]
    _, login, device, calls = (with_ports(block, ports) for _, block in blocks)
    (tmp_path / "device.py").write_text(device)
    devices_url = f"http://127.0.0.1:{ports['http']}/v1/users/admin/devices/dev1"
    script = f"""set -eu
{login}
echo
{sys.executable} device.py &
DEVICE=$!
trap 'kill $DEVICE' EXIT
for _ in $(seq 100); do
  curl -s -H "Authorization: Bearer $TOKEN" {devices_url} | grep -q '"connected": *true' && break
  sleep 0.1
done
echo "--- calls"
{calls}
"""
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    created, answers = result.stdout.split("--- calls\n")
    assert '"device":"dev1"' in created.replace(" ", "")
    temperature, relay = answers.split("}", 1)[0] + "}", answers.split("}", 1)[1]
    reading = re.fullmatch(r'\{"out":(\d+(\.\d+)?)\}', temperature.strip())
    assert reading is not None, answers
    assert 20 <= float(reading.group(1)) <= 25
    assert relay.strip() == '{"in":true}', answers
    assert "Traceback" not in result.stderr


def test_make_serve_installs_only_what_serving_needs(tmp_path: Path) -> None:
    planned = subprocess.run(
        ["make", "-n", "serve", f"VENV={tmp_path / 'venv'}"],
        cwd=README.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installs = [line for line in planned.splitlines() if "pip install" in line]
    assert any(line.rstrip().endswith("-e .") for line in installs), planned
    assert not any("[test]" in line for line in installs), planned
