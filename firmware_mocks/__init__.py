"""Simulated device firmware for tests, benchmarks and demos.

* ``SimDevice``: a Modbus device built from a profile file (``set_point``,
  ``set_condition``, raw register access, ``inject`` faults).
* ``SimRtuBus``: several devices behind one pseudo-terminal (the driver opens
  ``bus.path`` with pyserial as it would /dev/ttyUSB0), optional wire-time
  emulation, line faults (``vanish``/``reappear``, ``send_garbage``), an
  adapter's local echo (``echo=True``).
* ``SimTcpServer``: the same devices behind a Modbus TCP port.
* ``SimPanel``: a fire alarm panel printing event lines on a pty.
* ``python -m firmware_mocks run FILE.yaml``: a simulated bus from a small
  YAML file with scripted values over time (see firmware_mocks/examples/).
"""

from firmware_mocks.device import Fault, SimDevice, load_modbus_profile
from firmware_mocks.panel import SimPanel
from firmware_mocks.pty import PtyPort
from firmware_mocks.rtu import SimRtuBus
from firmware_mocks.tcp import SimTcpServer

__all__ = [
    "Fault",
    "PtyPort",
    "SimDevice",
    "SimPanel",
    "SimRtuBus",
    "SimTcpServer",
    "load_modbus_profile",
]
