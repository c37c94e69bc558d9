"""The host agent: the service a lab installs beside the press.

Small asyncio components, each an async context manager that owns its tasks:

- :mod:`.model`: the data the serial session hands over (samples, events, board info,
  link loss, session checkpoints and notices) and the board's command results;
- :mod:`.board`: :class:`~.board.BoardPort`, the commands the serial session executes;
- :mod:`.serial_link`: the byte pipe (a pyserial URL on the event loop);
- :mod:`.session`: :class:`~.session.SerialSession`, the protocol over the link (handshake,
  heartbeats, commands, backfill, reboots), with :mod:`.board_clock` (board time to UTC)
  and :mod:`.checkpoint` (what survives an agent restart);
- :mod:`.config`: the TOML configuration (``isopress config check``);
- :mod:`.recipe`: recipes, their canonical hash, the check against the device profile;
- :mod:`.spool`: the SQLite store-and-forward outbox;
- :mod:`.payloads`, :mod:`.topics`, :mod:`.schemas`: the MQTT interface (docs/mqtt.md);
- :mod:`.mqtt`: the MQTT 5 link (status, state, telemetry, events, run summaries, commands);
- :mod:`.commands`: command validation and hand-over to the board;
- :mod:`.press`: what the agent knows about the press now (the retained state);
- :mod:`.service`: the assembly (:class:`~.service.Agent`); :mod:`.main`: ``isopress agent``;
- :mod:`.fake_board`: a FAKE board for tests and manual runs (``isopress agent --fake-board``).
"""
