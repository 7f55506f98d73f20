from __future__ import annotations

from pathlib import Path

# A small valid site; broken cases are made from it by one textual change each.
BASE = """\
version: 1
site:
  site_id: school-1
  gateway_id: gw-1
zones:
  - id: kitchen
  - id: hall
buses:
  - name: rs485-1
    type: rtu
    port: /dev/ttyUSB0
    baudrate: 9600
    parity: N
    stopbits: 1
    devices:
      - name: kitchen-smoke
        profile: calectro-ug3-o-mb-r
        device_id: 3
        zone: kitchen
        poll_interval_s: 1
      - name: leakage
        profile: acrel-aim-r100
        device_id: 1
        zone: hall
  - name: tcp-1
    type: tcp
    host: 127.0.0.1
    port: 5020
    devices:
      - name: hall-smoke
        profile: calectro-ug3-o-mb-r
        device_id: 1
        zone: hall
  - name: panel
    type: panel
    port: /dev/ttyS0
    profile: generic-panel
    zone: hall
    points:
      "1/23": kitchen
cameras:
  - name: cam-hall
    zone: hall
    source: rtsp://user:pw@192.0.2.1/stream
    resolution: [640, 480]
    masks:
      - [[0, 0], [640, 0], [640, 40]]
uplink:
  host: 127.0.0.1
  username: gw
  password: hunter2-secret
storage:
  state_dir: state
logging:
  level: info
"""


def writer(tmp_path: Path):
    def _write(text: str | bytes, name: str = "site.yaml") -> Path:
        p = tmp_path / name
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)
        return p

    return _write
