"""GB/T 26875.3-2011: the alarm transmission protocol of urban fire remote-monitoring
centres, spoken by the gateway as a "user information transmission device".

* ``codec``: the frame (``@@`` ... ``##``), both directions, with its checksum;
  strict parsing that raises ``FrameError`` for anything malformed.
* ``objects``: the application data unit and its information objects.
* ``mapping``: firegate decisions as information objects.
* ``client``: the TCP client part that drains the outbox to the centre.
* ``serials``: serial numbers that survive reconnects and restarts.
* ``sink``: every decision into both outboxes (MQTT's and this uplink's),
  through a hand-off journal that survives a kill -9.

See docs/gb26875.md for the layout, the sources compared and what we chose.
"""
