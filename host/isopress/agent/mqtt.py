"""The agent's MQTT 5 link: keeps a persistent session up and moves the spool to the broker.

One async context manager, :class:`MqttLink`, owns one task that connects, and reconnects
with capped jittered backoff for as long as the agent runs. While connected it

- publishes ``status`` = ``online`` (retained; the last will says ``offline``),
- publishes the latest ``state`` (retained) whenever it changes,
- drains the spool in order: telemetry rows batched (at most one batch per
  ``batch_period_ms`` unless a full batch is waiting), events and run summaries one by
  one, at QoS 1; rows are deleted only after the broker's PUBACK for them arrived
  (``tests/agent/test_mqtt_link.py`` proves it by freezing the broker), and a PUBACK
  that takes ``publish_timeout_s`` ends the connection,
- hands incoming commands out through :meth:`MqttLink.commands` (``async for``).

The session is persistent (clean start off, session expiry set), so commands sent while
the agent was away are delivered when it comes back; the command handler rejects the
stale ones by age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, cast

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.types import PahoSocket
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from .backoff import Backoff
from .config import AgentConfig
from .payloads import CommandReply, telemetry_batch, with_historical
from .spool import STREAM_EVENT, STREAM_TELEMETRY, Spool, SpooledRow
from .topics import PressTopics, parse_command_topic

__all__ = ["IncomingCommand", "MqttLink", "MqttStats"]

log = logging.getLogger("isopress.agent.mqtt")

STATUS_ONLINE = b"online"
STATUS_OFFLINE = b"offline"
_COMMAND_QUEUE = 64  # commands waiting for the handler; more are answered "busy"
_PUBLISH_QOS1 = 0x32  # a PUBLISH packet's first byte at QoS 1 (| 1: retained)
_PUBACK = 0x40  # a PUBACK packet's first byte


@dataclass(frozen=True, slots=True)
class IncomingCommand:
    """A message on ``cmd/<operator>/<verb>``, as received."""

    operator: str
    verb: str
    payload: bytes
    retain: bool
    response_topic: str | None
    correlation_data: bytes | None
    expiry_s: int | None  # remaining MQTT 5 message expiry when it arrived
    received_monotonic: float
    received_at: datetime

    def expired(self, now_monotonic: float) -> bool:
        """True when the MQTT 5 message expiry passed while the command waited here."""
        return self.expiry_s is not None and now_monotonic > self.received_monotonic + self.expiry_s


@dataclass(slots=True)
class MqttStats:
    """Counters for diagnostics and benchmarks."""

    connects: int = 0
    telemetry_messages: int = 0
    samples_published: int = 0
    historical_samples: int = 0
    other_messages: int = 0
    commands_received: int = 0
    last_error: str = ""


class MqttLink:
    """The broker connection. ``async with MqttLink(config, spool) as link: ...``."""

    def __init__(self, config: AgentConfig, spool: Spool) -> None:
        self.config = config
        self.topics = PressTopics(config.agent.press_id)
        self.spool = spool
        self.stats = MqttStats()
        self.connected = asyncio.Event()
        self._commands: asyncio.Queue[IncomingCommand] = asyncio.Queue(maxsize=_COMMAND_QUEUE)
        self._state_body: str | None = None
        self._state_changed = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._unacked: tuple[float, bytes] | None = None  # the drain's publish: since when, topic
        self._task_group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._backoff = Backoff(
            config.broker.reconnect.initial_s,
            config.broker.reconnect.max_s,
            config.broker.reconnect.multiplier,
        )

    # -- component life cycle ------------------------------------------------------------
    async def __aenter__(self) -> MqttLink:
        self._task_group = asyncio.TaskGroup()
        await self._task_group.__aenter__()
        self._runner = self._task_group.create_task(self._run(), name="mqtt-link")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        client = self._client
        if client is not None:
            # A clean disconnect does not fire the last will: say offline ourselves. Not
            # only once fully connected: a stop between the retained "online" and the
            # end of the subscription would otherwise leave "online" standing. (If the
            # connection is not up yet, the publish fails and nothing was said.)
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(self.topics.status, STATUS_OFFLINE, qos=1, retain=True, timeout=2.0)
        if self._runner is not None:
            self._runner.cancel()
        assert self._task_group is not None
        await self._task_group.__aexit__(exc_type, exc, tb)

    @property
    def runner(self) -> asyncio.Task[None] | None:
        """The connection task (done only if it failed: it reconnects forever otherwise)."""
        return self._runner

    # -- what the rest of the agent calls --------------------------------------------------
    def set_state(self, body: str) -> None:
        """The latest state JSON; published (retained) now if connected, else on connect."""
        if body != self._state_body:
            self._state_body = body
            self._state_changed.set()

    async def commands(self) -> AsyncIterator[IncomingCommand]:
        """Commands as they arrive (survives reconnects)."""
        while True:
            yield await self._commands.get()

    async def reply(self, command: IncomingCommand, body: str) -> bool:
        """Publish a reply to the command's response topic (with its correlation data).

        Only a response topic under ``reply/<operator>`` is used; any other is replaced by
        that one (:meth:`~.topics.PressTopics.reply_topic`).

        Best effort: returns False when the broker is unreachable (the reply is logged
        by the caller either way).
        """
        topic = self.topics.reply_topic(command.operator, command.response_topic)
        if command.response_topic is not None and topic != command.response_topic:
            log.warning("response topic %r is not under %s: replying there", command.response_topic, topic)
        props = _properties(PacketTypes.PUBLISH)
        if command.correlation_data is not None:
            props.CorrelationData = command.correlation_data
        props.ContentType = "application/json"
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await client.publish(topic, body.encode(), qos=1, properties=props, timeout=5.0)
        except aiomqtt.MqttError as exc:
            log.warning("reply to %s not delivered: %s", topic, exc)
            return False
        return True

    # -- the connection loop ------------------------------------------------------------
    def _new_client(self) -> _DirectWriteClient:
        broker = self.config.broker
        connect = _properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = broker.session_expiry_s
        tls = (
            aiomqtt.TLSParameters(
                ca_certs=str(broker.tls.ca_file),
                certfile=str(broker.tls.cert_file) if broker.tls.cert_file else None,
                keyfile=str(broker.tls.key_file) if broker.tls.key_file else None,
            )
            if broker.tls is not None
            else None
        )
        return _DirectWriteClient(
            broker.host,
            broker.port,
            identifier=self.config.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=connect,
            will=aiomqtt.Will(self.topics.status, STATUS_OFFLINE, qos=1, retain=True),
            keepalive=broker.keepalive_s,
            timeout=broker.connect_timeout_s,
            username=broker.username,
            password=broker.password(),
            tls_params=tls,
            max_queued_incoming_messages=4 * _COMMAND_QUEUE,
        )

    async def _run(self) -> None:
        while True:
            failure: BaseException | None = None
            connected_at = time.monotonic()
            try:
                await self._session()
            except* (TimeoutError, aiomqtt.MqttError, OSError) as group:
                failure = group.exceptions[0]
            finally:
                self.connected.clear()
                self._client = None
            if self.connected_long_enough(connected_at):
                self._backoff.reset()
            delay = self._backoff.next_delay_s()
            self.stats.last_error = str(failure)
            log.warning(
                "broker %s:%s: %s; reconnecting in %.1f s",
                self.config.broker.host,
                self.config.broker.port,
                failure,
                delay,
            )
            await asyncio.sleep(delay)

    def connected_long_enough(self, connected_at: float) -> bool:
        """A connection that lasted a keepalive period proves the broker is back."""
        return time.monotonic() - connected_at >= self.config.broker.keepalive_s

    async def _session(self) -> None:
        self._unacked = None
        async with self._new_client() as client:
            self._client = client
            self.stats.connects += 1
            # Everything already in the spool is backlog: replayed, flagged historical.
            replay_upto = self.spool.last_row_id()
            await client.publish(self.topics.status, STATUS_ONLINE, qos=1, retain=True)
            await client.subscribe(
                self.topics.command_filter, options=SubscribeOptions(qos=1, retainAsPublished=True)
            )
            self.connected.set()
            log.info(
                "connected to %s:%s as %s",
                self.config.broker.host,
                self.config.broker.port,
                self.config.client_id,
            )
            if self._state_body is not None:
                self._state_changed.set()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._receive(client))
                tasks.create_task(self._drain(client, replay_upto))
                tasks.create_task(self._watch_pubacks())
                tasks.create_task(self._publish_state(client))

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            parsed = parse_command_topic(self.topics, str(message.topic))
            if parsed is None:
                continue
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            props = message.properties
            response_topic = getattr(props, "ResponseTopic", None) if props is not None else None
            correlation = getattr(props, "CorrelationData", None) if props is not None else None
            expiry = getattr(props, "MessageExpiryInterval", None) if props is not None else None
            command = IncomingCommand(
                operator=parsed[0],
                verb=parsed[1],
                payload=payload,
                retain=bool(message.retain),
                response_topic=response_topic,
                correlation_data=correlation,
                expiry_s=expiry,
                received_monotonic=time.monotonic(),
                received_at=datetime.now(UTC),
            )
            self.stats.commands_received += 1
            try:
                self._commands.put_nowait(command)
            except asyncio.QueueFull:
                log.warning(
                    "command queue full: %s/%s from %s dropped",
                    command.operator,
                    command.verb,
                    command.operator,
                )
                busy = CommandReply(
                    verb=command.verb,
                    operator=command.operator,
                    accepted=False,
                    error=f"the agent has {_COMMAND_QUEUE} commands waiting; retry later",
                    problems=[],
                    state="unknown",
                    board=None,
                    received_at=command.received_at,
                )
                await self.reply(command, busy.model_dump_json())

    async def _publish_state(self, client: aiomqtt.Client) -> None:
        while True:
            await self._state_changed.wait()
            self._state_changed.clear()
            body = self._state_body
            if body is not None:
                await client.publish(
                    self.topics.state,
                    body.encode(),
                    qos=1,
                    retain=True,
                    timeout=self.config.broker.publish_timeout_s,
                )

    async def _drain(self, client: _DirectWriteClient, replay_upto: int) -> None:
        period_s = self.config.telemetry.batch_period_ms / 1000.0
        max_batch = self.config.telemetry.max_batch
        telemetry_topic = self.topics.telemetry.encode()
        gathered_at = -1e9
        while True:
            # At most one telemetry batch per period unless a full batch waits (replay).
            # The period counts from when the newest row of the last batch was spooled,
            # not from its publish: the serial session reads the port once per period, and
            # batches then go right after each read instead of settling at some phase
            # behind it. So the next read's rows usually arrive a period or more after
            # the last batch's: the append wakes this task, which publishes at once (one
            # wake-up per batch, no timer). Rows that come sooner wait out the rest of the
            # period, asleep: those arriving meanwhile do not wake this task one by one.
            await self.spool.wait_for_rows()
            wait_s = gathered_at + period_s - time.monotonic()
            if wait_s > 0 and self.spool.rows < max_batch:
                await asyncio.sleep(wait_s)
            gathered_at = self.spool.appended_at
            rows = self.spool.oldest(max_batch)
            for group in _group_rows(rows):
                first = group[0]
                if first.stream == STREAM_TELEMETRY:
                    bodies = [with_historical(r.body, r.historical or r.row_id <= replay_upto) for r in group]
                    payload = telemetry_batch(self.config.agent.press_id, bodies)
                    await self._publish(client, telemetry_topic, payload.encode())
                    self.stats.telemetry_messages += 1
                    self.stats.samples_published += len(group)
                    self.stats.historical_samples += sum(
                        1 for r in group if r.historical or r.row_id <= replay_upto
                    )
                else:
                    body = first.body  # run summaries are published as written
                    if first.stream == STREAM_EVENT:
                        body = with_historical(body, first.historical or first.row_id <= replay_upto)
                    await self._publish(client, first.topic.encode(), body.encode(), retain=first.retain)
                    self.stats.other_messages += 1
                # The broker acknowledged (PUBACK). Only now forget the rows.
                self.spool.acknowledge(group)

    async def _publish(
        self, client: _DirectWriteClient, topic: bytes, payload: bytes, *, retain: bool = False
    ) -> None:
        """QoS 1 publish that returns once the broker's PUBACK arrived (the drain's, one at a time).

        The deadline (``broker.publish_timeout_s``) is kept by :meth:`_watch_pubacks`, one
        timer for the session rather than an ``asyncio.timeout`` (a timer handle in the
        loop's heap, set and cancelled) per message.
        """
        acked = client.publish_acked(topic, payload, retain=retain)
        self._unacked = (time.monotonic(), topic)
        try:
            await acked
        finally:
            self._unacked = None

    async def _watch_pubacks(self) -> None:
        """End the session once the drain's publish waited ``publish_timeout_s`` for its PUBACK.

        Wakes at the waiting publish's deadline, or a timeout after a look that found none
        waiting (a publish started since then has its deadline later still).
        """
        timeout_s = self.config.broker.publish_timeout_s
        while True:
            unacked = self._unacked
            now = time.monotonic()
            if unacked is None:
                await asyncio.sleep(timeout_s)
            elif now - unacked[0] >= timeout_s:
                raise aiomqtt.MqttError(f"no PUBACK for {unacked[1].decode()} within {timeout_s:g} s")
            else:
                await asyncio.sleep(unacked[0] + timeout_s - now)


class _DirectWriteClient(aiomqtt.Client):
    """aiomqtt's client, writing a queued packet at once when asked on the event loop's thread.

    aiomqtt answers paho's "I have data to write" with ``call_soon_threadsafe(add_writer)``:
    per publish a wake-up byte through the loop's self-pipe, two epoll changes and a
    writable callback, all to send a packet that the socket would take at once (about a
    sixth of the agent's CPU at 100 Hz). Here, on the loop's thread, the packet is written
    in the call (what paho itself does without an external loop); only what the socket did
    not take waits for the writer callback, as before. Called from another thread (paho's
    connect runs in an executor) or inside a paho callback, aiomqtt's way is kept.

    :meth:`publish_acked` is the spool drain's QoS 1 publish without paho's and aiomqtt's
    per-message bookkeeping (on the loop's thread only).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_thread = threading.get_ident()
        self._writer_registered = False
        self._client.__class__ = _AckedPahoClient
        self._acked: dict[int, asyncio.Future[None]] = {}
        cast(_AckedPahoClient, self._client).acked_waiters = self._acked

    def publish_acked(self, topic: bytes, payload: bytes, *, retain: bool = False) -> asyncio.Future[None]:
        """Write a QoS 1 PUBLISH now; the future is done when the broker's PUBACK for it arrives.

        What aiomqtt's ``publish(qos=1)`` does for the spool, at a fraction of the cost: the
        packet is built here and written to the socket, or queued with paho's own writer
        when paho has packets waiting (in order with them, a partial write finished by the
        writable callback, the keepalive timer told either way), and its PUBACK goes
        straight to the future (:class:`_AckedPahoClient`).
        Skipped: paho's message object (a ``threading.Condition`` each), its
        ``_out_messages`` entry (only to re-send on a reconnect of the same paho client,
        which the link never does: a new connection is a new client, and the spool re-sends
        what was not acknowledged), the PUBACK's reason code and properties objects
        (aiomqtt ignores them too), aiomqtt's event and ``wait_for``. No properties; the
        topic is one of the press's own (no wildcards).
        """
        paho_client = self._client
        if paho_client._sock is None:  # not connected (any more)
            raise aiomqtt.MqttCodeError(paho.MQTT_ERR_NO_CONN, "Could not publish message")
        mid = paho_client._mid_generate()
        # Variable header: topic, packet id, an empty property list; then the payload.
        remaining = len(topic) + len(payload) + 5
        packet = bytearray((_PUBLISH_QOS1 | retain,))
        while remaining > 0x7F:  # the remaining length as a variable byte integer
            packet.append((remaining & 0x7F) | 0x80)
            remaining >>= 7
        packet.append(remaining)
        packet += len(topic).to_bytes(2, "big")
        packet += topic
        packet += mid.to_bytes(2, "big")
        packet.append(0)
        packet += payload
        acked: asyncio.Future[None] = self._loop.create_future()
        self._acked[mid] = acked
        sock = paho_client._sock
        if paho_client._out_packet or type(sock) is not socket.socket:
            paho_client._packet_queue(paho.PUBLISH, packet, mid, 1)  # behind paho's packets
            return acked
        # Nothing of paho's waits to be written: straight to the socket (paho's queue and
        # writer would take a dozen calls to get there); only what it does not take queues.
        try:
            sent = sock.send(packet)
        except BlockingIOError:
            sent = 0
        except OSError:  # paho's writer meets the error again and ends the connection
            paho_client._packet_queue(paho.PUBLISH, packet, mid, 1)
            return acked
        with paho_client._msgtime_mutex:
            paho_client._last_msg_out = time.monotonic()  # paho's keepalive
        if sent < len(packet):
            paho_client._packet_queue(paho.PUBLISH, packet[sent:], mid, 1)
        return acked

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: PahoSocket) -> None:
        # paho's _in_callback_mutex is held while it runs a callback: writing from there could
        # re-enter it (QoS 0 completion), so that case goes the asynchronous way.
        in_callback: Any = client._in_callback_mutex
        if threading.get_ident() != self._loop_thread or not in_callback.acquire(False):
            self._writer_registered = True
            super()._on_socket_register_write(client, userdata, sock)
            return
        in_callback.release()
        try:
            client.loop_write()
        except Exception as exc:  # as aiomqtt's writer callback: a broken connection
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)
            return
        if client.want_write():  # the socket took part of it: the rest when writable
            self._writer_registered = True
            super()._on_socket_register_write(client, userdata, sock)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: PahoSocket) -> None:
        if self._writer_registered:
            self._writer_registered = False
            super()._on_socket_unregister_write(client, userdata, sock)


class _AckedPahoClient(paho.Client):
    """paho's client, handing the PUBACK of a :meth:`_DirectWriteClient.publish_acked` to its future.

    Any other PUBACK (aiomqtt's own publishes: status, state, replies) goes to paho as
    before. As with aiomqtt's publish, a PUBACK is the acknowledgement whatever its reason
    code. aiomqtt's paho client is switched to this class once made.
    """

    acked_waiters: dict[int, asyncio.Future[None]]

    def _packet_read(self) -> MQTTErrorCode:
        # A PUBACK of ours that is whole in the socket (success, no properties: 4 bytes, what
        # a broker sends nearly always) is taken in one peek and one read; paho would read
        # it in three (command byte, remaining length, the rest) and then decode it. Anything
        # else (another packet, a part of one, a TLS socket) is paho's.
        sock = self._sock
        if self._in_packet["command"] == 0 and self.acked_waiters and type(sock) is socket.socket:
            try:
                head = sock.recv(4, socket.MSG_PEEK)
            except OSError:
                head = b""  # paho's read below sees the error again and handles it
            if len(head) == 4 and head[0] == _PUBACK and head[1] == 2:
                acked = self.acked_waiters.pop((head[2] << 8) | head[3], None)
                if acked is not None:
                    sock.recv(4)
                    with self._msgtime_mutex:
                        self._last_bytes_received = time.monotonic()  # paho's keepalive
                    if not acked.done():
                        acked.set_result(None)
                    return paho.MQTT_ERR_SUCCESS
        return super()._packet_read()

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd == "PUBACK" and len(packet) >= 2:
            acked = self.acked_waiters.pop((packet[0] << 8) | packet[1], None)
            if acked is not None:
                if not acked.done():
                    acked.set_result(None)
                return paho.MQTT_ERR_SUCCESS
        return super()._handle_pubackcomp(cmd)


def _group_rows(rows: list[SpooledRow]) -> list[list[SpooledRow]]:
    """Consecutive telemetry rows form one batch; every other row is its own message."""
    groups: list[list[SpooledRow]] = []
    for row in rows:
        if row.stream == STREAM_TELEMETRY and groups and groups[-1][0].stream == STREAM_TELEMETRY:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _properties(packet_type: int) -> Properties:
    """MQTT 5 properties for one packet type (paho's constructor is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]
