"""The host agent: the service a lab installs beside the press.

Small asyncio components, each an async context manager that owns its tasks:

- :mod:`.model`: the data the serial session hands over (samples, events, board info);
- :mod:`.config`: the TOML configuration;
- :mod:`.spool`: the SQLite store-and-forward outbox;
- :mod:`.mqtt`: the MQTT 5 link (status, state, telemetry, events, run summaries, commands);
- :mod:`.commands`: command validation and hand-over to the board (:class:`.board.BoardPort`);
- :mod:`.service`: the assembly of all of them.
"""
