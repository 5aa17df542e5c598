"""A Python device SDK: resources answered over the device protocols (legacy or IOTMP), for
tests, benchmarks, simulators and users who want a device written in Python.

>>> dev = Device(user="alice", device="dev1", credentials="secret1")
>>> dev.output("temperature", lambda: 23.5)  # doctest: +ELLIPSIS
Resource('temperature', OUTPUT)
"""

from roost.device.client import Device
from roost.device.resources import Kind, Resource

__all__ = ["Device", "Kind", "Resource"]
