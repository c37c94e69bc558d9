"""A small embedded MQTT broker (5.0 and 3.1.1) for ``isopress demo`` on machines without Mosquitto.

NOT a lab broker: no authentication, no ACL, no TLS, no persistence to disk, loopback only.
Labs run Mosquitto from ``deploy/mosquitto/`` (the tests do too). This exists so that the
demo's whole chain (virtual board -> agent -> MQTT -> subscriber) runs on a fresh machine
where ``apt-get install mosquitto`` is not possible.

What it does, because the agent and the demo rely on it: QoS 0 and 1 delivery (QoS 2
publishes are accepted with the full PUBREC/PUBREL/PUBCOMP exchange and forwarded at QoS
1; subscriptions are granted at most QoS 1), retained messages, last wills (on a lost
connection, a keepalive timeout, a session take-over or DISCONNECT 0x04), persistent
sessions in memory (MQTT 5 clean start off + session expiry, 3.1.1 clean session off)
with their QoS 1 messages queued while the client is away, ``+``/``#`` wildcards (``$``
topics not matched by a leading wildcard), the MQTT 5 subscription options No Local,
Retain As Published and Retain Handling, and every MQTT 5 PUBLISH property passed through
to MQTT 5 subscribers (response topic, correlation data, content type, user properties,
message expiry, which is counted down while a message waits). Will delay, topic aliases,
subscription identifiers, shared subscriptions and enhanced auth are not supported and
are announced as such in CONNACK where MQTT 5 allows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["MiniBroker"]

log = logging.getLogger("isopress.minibroker")

_CONNECT, _CONNACK, _PUBLISH, _PUBACK, _PUBREC, _PUBREL, _PUBCOMP = 1, 2, 3, 4, 5, 6, 7
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK, _PINGREQ, _PINGRESP, _DISCONNECT = 8, 9, 10, 11, 12, 13, 14
_MAX_PACKET = 1 << 20
_MAX_QUEUED = 100_000  # per offline session; the oldest goes first
_MAX_WRITE_BUFFER = 16 << 20  # a subscriber that far behind is disconnected

# MQTT 5 property ids and their value types
_BYTE, _U16, _U32, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _U32, 0x03: _STRING, 0x08: _STRING, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _U32, 0x12: _STRING, 0x13: _U16, 0x15: _STRING, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _U32, 0x19: _BYTE, 0x1A: _STRING, 0x1C: _STRING, 0x1F: _STRING, 0x21: _U16,
    0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32, 0x28: _BYTE,
    0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip
_MESSAGE_EXPIRY = 0x02
_SESSION_EXPIRY = 0x11
_ASSIGNED_CLIENT_ID = 0x12
_TOPIC_ALIAS = 0x23
_SUBSCRIPTION_ID = 0x0B


class _ProtocolError(Exception):
    """The client broke the protocol: the connection is closed (and its will published)."""


# -- encoding ----------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + _varint(len(body)) + body


class _Reader:
    """Reads the fields of one packet body; running past its end is a protocol error."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _ProtocolError("packet shorter than its fields")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack("!I", self.take(4))[0]
        return value

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise _ProtocolError("malformed variable byte integer")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        try:
            return self.binary().decode()
        except UnicodeDecodeError:
            raise _ProtocolError("string is not UTF-8") from None

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def properties(self) -> list[tuple[int, bytes]]:
        """MQTT 5 properties as (id, raw value bytes), in order."""
        end = self.varint() + self.pos
        if end > len(self.data):
            raise _ProtocolError("properties longer than the packet")
        props: list[tuple[int, bytes]] = []
        while self.pos < end:
            pid = self.varint()
            kind = _PROPERTY_TYPES.get(pid)
            start = self.pos
            if kind is None:
                raise _ProtocolError(f"unknown property 0x{pid:02x}")
            if kind == _BYTE:
                self.take(1)
            elif kind == _U16:
                self.take(2)
            elif kind == _U32:
                self.take(4)
            elif kind == _VARINT:
                self.varint()
            elif kind in (_STRING, _BINARY):
                self.binary()
            else:
                self.binary()
                self.binary()
            props.append((pid, self.data[start : self.pos]))
        if self.pos != end:
            raise _ProtocolError("properties overrun their length")
        return props


def _encode_properties(props: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(_varint(pid) + raw for pid, raw in props)
    return _varint(len(body)) + body


def _u32_property(props: list[tuple[int, bytes]], pid: int) -> int | None:
    for p, raw in props:
        if p == pid:
            value: int = struct.unpack("!I", raw)[0]
            return value
    return None


# -- topics -------------------------------------------------------------------------------
def _valid_filter(topic_filter: str) -> bool:
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _matches(topic_filter: str, topic: str) -> bool:
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels) or (f != "+" and f != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


# -- state --------------------------------------------------------------------------------
@dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: list[tuple[int, bytes]]
    created: float = field(default_factory=time.monotonic)

    def expired(self, now: float) -> bool:
        expiry = _u32_property(self.props, _MESSAGE_EXPIRY)
        return expiry is not None and now - self.created >= expiry

    def props_for_delivery(self, now: float) -> list[tuple[int, bytes]]:
        expiry = _u32_property(self.props, _MESSAGE_EXPIRY)
        if expiry is None:
            return self.props
        left = max(0, expiry - int(now - self.created))
        return [(p, struct.pack("!I", left) if p == _MESSAGE_EXPIRY else raw) for p, raw in self.props]


@dataclass(frozen=True, slots=True)
class _SubOptions:
    qos: int
    no_local: bool
    retain_as_published: bool
    retain_handling: int


@dataclass(slots=True)
class _Session:
    client_id: str
    subscriptions: dict[str, _SubOptions] = field(default_factory=dict)
    queue: deque[tuple[_Message, int, bool]] = field(default_factory=lambda: deque(maxlen=_MAX_QUEUED))
    inflight: dict[int, tuple[_Message, int, bool]] = field(default_factory=dict)
    next_packet_id: int = 1
    expiry_s: float = 0.0
    disconnected_at: float | None = None
    connection: _Connection | None = None

    def new_packet_id(self) -> int:
        for _ in range(65535):
            pid = self.next_packet_id
            self.next_packet_id = pid % 65535 + 1
            if pid not in self.inflight:
                return pid
        raise _ProtocolError("no free packet id (65535 messages in flight)")


class _Connection:
    """One client's TCP connection."""

    def __init__(
        self, broker: MiniBroker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.broker = broker
        self.reader = reader
        self.writer = writer
        self.version = 5
        self.session: _Session | None = None
        self.will: _Message | None = None
        self.keepalive_s = 0
        self.incoming_qos2: set[int] = set()
        self.closed = False

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self.writer.transport.get_write_buffer_size() > _MAX_WRITE_BUFFER:
            log.warning("client %s too slow: disconnected", self.session.client_id if self.session else "?")
            self.close()
            return
        self.writer.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()

    def deliver(self, message: _Message, qos: int, retain: bool) -> None:
        assert self.session is not None
        now = time.monotonic()
        if message.expired(now):
            return
        flags = (qos << 1) | (1 if retain else 0)
        body = _string(message.topic)
        if qos:
            pid = self.session.new_packet_id()
            self.session.inflight[pid] = (message, qos, retain)
            body += struct.pack("!H", pid)
        if self.version == 5:
            body += _encode_properties(message.props_for_delivery(now))
        self.send(_packet(_PUBLISH, flags, body + message.payload))

    async def run(self) -> None:
        try:
            await self._serve()
        except (_ProtocolError, asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            log.debug("connection ended: %r", exc)
        finally:
            self.broker.connection_lost(self)
            self.close()

    async def _read_packet(self) -> tuple[int, int, bytes]:
        timeout = self.keepalive_s * 1.5 if self.keepalive_s else None
        async with asyncio.timeout(timeout):
            first = (await self.reader.readexactly(1))[0]
            length, shift = 0, 0
            for _ in range(4):
                byte = (await self.reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            else:
                raise _ProtocolError("malformed remaining length")
            if length > _MAX_PACKET:
                raise _ProtocolError("packet too large")
            body = await self.reader.readexactly(length)
        return first >> 4, first & 0x0F, body

    async def _serve(self) -> None:
        async with asyncio.timeout(10):
            kind, _flags, body = await self._read_packet()
        if kind != _CONNECT:
            raise _ProtocolError("first packet is not CONNECT")
        self._connect(_Reader(body))
        while not self.closed:
            kind, flags, body = await self._read_packet()
            r = _Reader(body)
            if kind == _PUBLISH:
                self._publish(flags, r)
            elif kind == _PUBACK:
                assert self.session is not None
                self.session.inflight.pop(r.u16(), None)
                self.broker.drain_queue(self.session)
            elif kind == _PUBREL:
                pid = r.u16()
                self.incoming_qos2.discard(pid)
                self.send(_packet(_PUBCOMP, 0, struct.pack("!H", pid)))
            elif kind in (_PUBREC, _PUBCOMP):
                raise _ProtocolError("QoS 2 delivery is never offered by this broker")
            elif kind == _SUBSCRIBE:
                self._subscribe(r)
            elif kind == _UNSUBSCRIBE:
                self._unsubscribe(r)
            elif kind == _PINGREQ:
                self.send(_packet(_PINGRESP, 0, b""))
            elif kind == _DISCONNECT:
                reason = r.byte() if self.version == 5 and not r.done() else 0
                if self.version == 5 and not r.done():
                    expiry = _u32_property(r.properties(), _SESSION_EXPIRY)
                    if expiry is not None and self.session is not None:
                        self.session.expiry_s = expiry
                if reason != 0x04:  # 0x04: disconnect with will message
                    self.will = None
                self.close()
            else:
                raise _ProtocolError(f"unexpected packet type {kind}")

    def _connect(self, r: _Reader) -> None:
        if r.string() not in ("MQTT", "MQIsdp"):
            raise _ProtocolError("not MQTT")
        level = r.byte()
        if level not in (3, 4, 5):
            # 0x84 unsupported protocol version (answered in 3.1.1 form, which every version reads)
            self.send(_packet(_CONNACK, 0, b"\x00\x01"))
            raise _ProtocolError(f"protocol level {level}")
        self.version = 5 if level == 5 else 4
        flags = r.byte()
        self.keepalive_s = r.u16()
        props = r.properties() if self.version == 5 else []
        client_id = r.string()
        will: _Message | None = None
        if flags & 0x04:
            will_props = r.properties() if self.version == 5 else []
            will_topic = r.string()
            will_payload = r.binary()
            will = _Message(
                will_topic,
                will_payload,
                (flags >> 3) & 3,
                bool(flags & 0x20),
                _without_will_delay(will_props),
            )
        if flags & 0x80:
            r.string()  # user name: not checked (demo broker)
        if flags & 0x40:
            r.binary()
        clean = bool(flags & 0x02)
        assigned = not client_id
        if assigned:
            client_id = f"minibroker-{id(self):x}"
        if self.version == 5:
            expiry_s = float(_u32_property(props, _SESSION_EXPIRY) or 0)
        else:
            expiry_s = 0.0 if clean else float("inf")
        self.will = will
        present = self.broker.attach(self, client_id, clean, expiry_s)
        if self.version == 5:
            ack_props: list[tuple[int, bytes]] = [
                (0x25, b"\x01"),  # retain available
                (0x28, b"\x01"),  # wildcard subscriptions available
                (0x29, b"\x00"),  # subscription identifiers not available
                (0x2A, b"\x00"),  # shared subscriptions not available
            ]
            if assigned:
                ack_props.append((_ASSIGNED_CLIENT_ID, _string(client_id)))
            body = bytes([1 if present else 0, 0]) + _encode_properties(ack_props)
        else:
            body = bytes([1 if present else 0, 0])
        self.send(_packet(_CONNACK, 0, body))
        assert self.session is not None
        self.broker.resume(self.session)

    def _publish(self, flags: int, r: _Reader) -> None:
        qos = (flags >> 1) & 3
        if qos == 3:
            raise _ProtocolError("QoS 3")
        topic = r.string()
        pid = r.u16() if qos else 0
        props = r.properties() if self.version == 5 else []
        if any(p in (_TOPIC_ALIAS, _SUBSCRIPTION_ID) for p, _ in props):
            raise _ProtocolError("topic alias / subscription identifier in PUBLISH (not offered)")
        if not topic or "+" in topic or "#" in topic:
            raise _ProtocolError(f"bad topic name {topic!r}")
        message = _Message(topic, r.rest(), min(qos, 1), bool(flags & 0x01), props)
        if qos == 2:
            if pid in self.incoming_qos2:  # a re-sent QoS 2 message: already routed
                self.send(_packet(_PUBREC, 0, struct.pack("!H", pid)))
                return
            self.incoming_qos2.add(pid)
        self.broker.route(message, self.session)
        if qos == 1:
            self.send(_packet(_PUBACK, 0, struct.pack("!H", pid)))
        elif qos == 2:
            self.send(_packet(_PUBREC, 0, struct.pack("!H", pid)))

    def _subscribe(self, r: _Reader) -> None:
        assert self.session is not None
        pid = r.u16()
        if self.version == 5:
            r.properties()
        codes = bytearray()
        granted: list[tuple[str, _SubOptions]] = []
        while not r.done():
            topic_filter = r.string()
            options = r.byte()
            sub = _SubOptions(
                qos=min(options & 3, 1),
                no_local=bool(options & 0x04) and self.version == 5,
                retain_as_published=bool(options & 0x08) and self.version == 5,
                retain_handling=(options >> 4) & 3 if self.version == 5 else 0,
            )
            if not _valid_filter(topic_filter) or topic_filter.startswith("$share/"):
                codes.append(0x8F if self.version == 5 else 0x80)
                continue
            existed = topic_filter in self.session.subscriptions
            self.session.subscriptions[topic_filter] = sub
            codes.append(sub.qos)
            if sub.retain_handling == 0 or (sub.retain_handling == 1 and not existed):
                granted.append((topic_filter, sub))
        body = struct.pack("!H", pid) + (b"\x00" if self.version == 5 else b"") + bytes(codes)
        self.send(_packet(_SUBACK, 0, body))
        for topic_filter, sub in granted:
            self.broker.send_retained(self, topic_filter, sub)

    def _unsubscribe(self, r: _Reader) -> None:
        assert self.session is not None
        pid = r.u16()
        if self.version == 5:
            r.properties()
        codes = bytearray()
        while not r.done():
            existed = self.session.subscriptions.pop(r.string(), None) is not None
            codes.append(0x00 if existed else 0x11)
        body = struct.pack("!H", pid) + (b"\x00" + bytes(codes) if self.version == 5 else b"")
        self.send(_packet(_UNSUBACK, 0, body))


def _without_will_delay(props: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    return [(p, raw) for p, raw in props if p != 0x18]  # will delay interval: not supported


class MiniBroker:
    """``async with MiniBroker(port=0) as broker:`` listens on ``broker.host``:``broker.port``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, _Message] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> MiniBroker:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("embedded MQTT broker on %s:%d", self.host, self.port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for session in self._sessions.values():
            if session.connection is not None:
                session.connection.will = None
                session.connection.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await connection.run()
        finally:
            self._tasks.discard(task)

    # -- sessions ----------------------------------------------------------------------------
    def _expire_sessions(self, now: float) -> None:
        for cid, session in list(self._sessions.items()):
            gone_at = session.disconnected_at
            if session.connection is None and gone_at is not None and now - gone_at >= session.expiry_s:
                del self._sessions[cid]

    def attach(self, connection: _Connection, client_id: str, clean: bool, expiry_s: float) -> bool:
        """Bind a new connection to its session; returns MQTT's session-present flag."""
        self._expire_sessions(time.monotonic())
        old = self._sessions.get(client_id)
        if old is not None and old.connection is not None:  # take-over: the old connection goes
            previous = old.connection
            old.connection = None
            self._publish_will(previous)
            previous.close()
        if clean or old is None:
            session = _Session(client_id)
            self._sessions[client_id] = session
            present = False
        else:
            session = old
            present = True
        session.expiry_s = expiry_s
        session.connection = connection
        session.disconnected_at = None
        connection.session = session
        return present

    def resume(self, session: _Session) -> None:
        """After CONNACK: re-send what was in flight, then what queued while away."""
        connection = session.connection
        assert connection is not None
        for pid, (message, qos, retain) in list(session.inflight.items()):
            flags = 0x08 | (qos << 1) | (1 if retain else 0)
            body = _string(message.topic) + struct.pack("!H", pid)
            if connection.version == 5:
                body += _encode_properties(message.props_for_delivery(time.monotonic()))
            connection.send(_packet(_PUBLISH, flags, body + message.payload))
        self.drain_queue(session)

    def drain_queue(self, session: _Session) -> None:
        connection = session.connection
        while connection is not None and session.queue and len(session.inflight) < 1000:
            message, qos, retain = session.queue.popleft()
            connection.deliver(message, qos, retain)

    def connection_lost(self, connection: _Connection) -> None:
        session = connection.session
        if session is None or session.connection is not connection:
            return  # never attached, or taken over
        self._publish_will(connection)
        session.connection = None
        session.disconnected_at = time.monotonic()
        if session.expiry_s <= 0:
            self._sessions.pop(session.client_id, None)

    def _publish_will(self, connection: _Connection) -> None:
        will, connection.will = connection.will, None
        if will is not None:
            self.route(will, None)

    # -- routing -------------------------------------------------------------------------------
    def route(self, message: _Message, sender: _Session | None) -> None:
        if message.retain:
            if message.payload:
                self._retained[message.topic] = message
            else:
                self._retained.pop(message.topic, None)
        for session in list(self._sessions.values()):
            qos = -1
            keep_retain = False
            for topic_filter, sub in session.subscriptions.items():
                if sub.no_local and session is sender:
                    continue
                if _matches(topic_filter, message.topic):
                    qos = max(qos, min(message.qos, sub.qos))
                    keep_retain = keep_retain or sub.retain_as_published
            if qos < 0:
                continue
            retain = message.retain and keep_retain
            connection = session.connection
            # In order: a QoS 1 message waits behind the session's queue (offline, or more
            # than 1000 in flight); QoS 0 is for connected clients only.
            if connection is not None and (qos == 0 or (not session.queue and len(session.inflight) < 1000)):
                connection.deliver(message, qos, retain)
            elif qos == 1:
                session.queue.append((message, qos, retain))

    def send_retained(self, connection: _Connection, topic_filter: str, sub: _SubOptions) -> None:
        now = time.monotonic()
        for topic, message in list(self._retained.items()):
            if message.expired(now):
                del self._retained[topic]
            elif _matches(topic_filter, topic):
                connection.deliver(message, min(message.qos, sub.qos), True)
