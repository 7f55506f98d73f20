"""Field buses: the gateway's ears.

* ``drivers.bus.BusWorker``: one Part per Modbus bus (RTU serial line or TCP
  host): polls its devices per their profiles, emits ``Reading`` and
  ``StateChange`` observations, runs ``Command``s (detector reset).
* ``drivers.panel.PanelReader``: one Part per fire alarm panel printer port.
* ``drivers.link``: the transaction layer (RTU over pyserial, Modbus TCP over
  asyncio streams); ``drivers.frames``: framing, CRC, wire-time model;
  ``drivers.codec``: read planning and decoding from a profile;
  ``drivers.scan``: ``firegate scan``; ``drivers.profile``: the profile schema.

Why an own transaction layer instead of pymodbus's client: see drivers/link.py
and bench/bus_throughput.py (pymodbus is used there as the baseline).
"""
