"""MQTT publisher: the outbox rule (``service.rules.outbox``) driven over paho-mqtt on the event loop.

paho-mqtt 2 is used through its public socket API, the way it documents for external event loops:
``connect`` (in a thread: it resolves and opens the TCP/TLS connection), then the connection's
socket is watched with ``loop.add_reader`` (``loop_read``) and, while paho has bytes it could not
write at once, ``loop.add_writer`` (``loop_write``); ``loop_misc`` runs every second for keepalive
pings. ``publish`` writes straight to the socket when it can, so a tracks message costs no task,
no timer and no wake-up. Each connection gets a new paho client, so nothing of a broken
connection's state survives it but what the outbox keeps.

What goes out, in which order, what is kept across outages and what is dropped is the outbox's
rule: statuses (the latest per topic, never dropped), then events, then tracks; at most
``WINDOW`` messages written and not yet done (written at QoS 0, acknowledged at QoS 1/2), those go back to the outbox when the connection is lost, the
oldest beyond the bounds are dropped and counted. A connection whose window stays full for
``PUBLISH_TIMEOUT_S`` is given up and made again. Reconnects back off (1 s to
``reconnect_max_s``, jittered). The service status topic is the client's last will.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from detector_client.backoff import Backoff
from service.config import MqttConfig
from service.messages import SCHEMA_VERSION, ServiceStatus, dumps
from service.metrics import Metrics
from service.rules.outbox import Message, Outbox

__all__ = ["PUBLISH_TIMEOUT_S", "SCHEMA_VERSION", "WINDOW", "MqttUnavailable", "Publisher", "dumps"]

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
TICK_S = 1.0
WINDOW = 64  # messages written and not yet done, per connection


class MqttUnavailable(Exception):
    """The broker cannot be reached, refused the connection, or the connection broke."""


class _Connection:
    """One paho client and its socket on the event loop."""

    def __init__(self, client: paho.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.sock: Any = None
        self.writing = False
        # Written and not yet done, by mid: paho marks each MQTTMessageInfo published (QoS 0: all
        # written; QoS 1/2: acknowledged), read back after each socket event. No on_publish
        # callback: with one set, paho builds a reason code and properties object for every
        # QoS 0 message (measured: publish 21-42 us without, 82-140 us with).
        self.pending: dict[int, paho.MQTTMessageInfo] = {}
        self.connack: asyncio.Future[Any] = loop.create_future()
        self.lost: asyncio.Future[str] = loop.create_future()

    def fail(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)
        if not self.connack.done():
            self.connack.set_exception(MqttUnavailable(reason))

    def unwatch(self) -> None:
        if self.sock is not None:
            self.loop.remove_reader(self.sock)
            self.loop.remove_writer(self.sock)
            self.sock = None
        self.writing = False


class Publisher:
    def __init__(self, cfg: MqttConfig, instance: str, metrics: Metrics) -> None:
        self.cfg = cfg
        self.instance = instance
        self.metrics = metrics
        self.prefix = cfg.topic_prefix
        self.outbox = Outbox(cfg.outbox_events, cfg.outbox_tracks, WINDOW)
        self._conn: _Connection | None = None  # set while connected (CONNACK received)
        self._idle = asyncio.Event()
        self._idle.set()
        self._stop = asyncio.Event()
        self.connected = asyncio.Event()
        self._stopping = False
        self._backoff = Backoff(1.0, cfg.reconnect_max_s)
        u = urlsplit(cfg.url)
        self.host = u.hostname or "127.0.0.1"
        self.tls = u.scheme == "mqtts"
        self.port = u.port or (8883 if self.tls else 1883)
        self.service_topic = f"{self.prefix}/service/{instance}/status"
        # Per-message bookkeeping stays cheap: labelled children looked up once, the outbox depth
        # read when /metrics is scraped.
        self._published = {k: metrics.mqtt_published.labels(k) for k in ("tracks", "events", "status")}
        self._dropped = {k: metrics.mqtt_dropped.labels(k) for k in ("tracks", "events")}
        metrics.outbox_depth.labels("events").set_function(lambda: self.outbox.depth("events"))
        metrics.outbox_depth.labels("tracks").set_function(lambda: self.outbox.depth("tracks"))

    # ------------------------------------------------------------------ topics and payloads
    def topic(self, stream: str, kind: str) -> str:
        return f"{self.prefix}/{stream}/{kind}"

    def service_status(self, state: str, reason: str | None, streams: list[str] | None = None) -> bytes:
        body: ServiceStatus = {"v": SCHEMA_VERSION, "instance": self.instance, "state": state,  # type: ignore[typeddict-item]
                               "reason": reason, "ts": time.time()}  # fmt: skip
        if streams is not None:
            body["streams"] = streams
        return dumps(body)

    # ------------------------------------------------------------------ enqueue (never blocks)
    def publish_tracks(
        self, stream: str, payload: bytes, on_sent: Callable[[float], None] | None = None
    ) -> None:
        self._push(
            Message(self.topic(stream, "tracks"), payload, self.cfg.qos_tracks, False, "tracks", on_sent)
        )

    def publish_follow(self, stream: str, payload: bytes) -> None:
        """A followed object's box in one frame: per-frame data, queued and dropped like tracks."""
        self._push(Message(self.topic(stream, "follow"), payload, self.cfg.qos_tracks, False, "tracks"))

    def publish_event(self, stream: str, payload: bytes) -> None:
        self._push(Message(self.topic(stream, "events"), payload, self.cfg.qos_events, False, "events"))

    def publish_status(self, stream: str, payload: bytes) -> None:
        self._push(Message(self.topic(stream, "status"), payload, self.cfg.qos_status, True, "status"))

    def clear_status(self, stream: str) -> None:
        """Remove a removed stream's retained status (an empty retained message deletes it)."""
        self._push(Message(self.topic(stream, "status"), b"", self.cfg.qos_status, True, "status"))
        self.clear_analytics(stream)

    def publish_analytics(self, stream: str, payload: bytes) -> None:
        """A stream's retained analytics state (kept like a status: the latest per topic, never dropped)."""
        self._push(Message(self.topic(stream, "analytics"), payload, self.cfg.qos_status, True, "status"))

    def clear_analytics(self, stream: str) -> None:
        self._push(Message(self.topic(stream, "analytics"), b"", self.cfg.qos_status, True, "status"))

    def _push(self, msg: Message) -> None:
        dropped = self.outbox.push(msg)
        if dropped is not None:
            self._dropped["tracks" if dropped.kind == "tracks" else "events"].inc()
        self._idle.clear()
        if self._conn is not None:
            self._flush(self._conn)

    @property
    def depth(self) -> int:
        return self.outbox.depth()

    @property
    def dropped(self) -> dict[str, int]:
        return self.outbox.dropped

    @property
    def writes_through(self) -> bool:
        """True while connected: messages are written to the socket as they are published."""
        return self._conn is not None

    # ------------------------------------------------------------------ writing (event loop)
    def _flush(self, conn: _Connection) -> None:
        """Write what the outbox gives, until it is empty or its window is full."""
        ob, client = self.outbox, conn.client
        if conn.pending:
            self._collect(conn)
        while (msg := ob.next()) is not None:
            info = client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
            if conn.pending:
                # publish() also writes what paho held back: earlier messages may be out now (the
                # window must open for them, or a backlog would wait for a socket event that never comes).
                self._collect(conn)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                ob.refused(msg)
                conn.fail(f"publish refused ({paho.error_string(info.rc)})")
                return
            if info.is_published():
                self._done(msg)  # QoS 0 written within publish()
            else:
                ob.written(msg, info.mid, time.monotonic())
                conn.pending[info.mid] = info
        self._watch_writes(conn)

    def _collect(self, conn: _Connection) -> None:
        """Settle the written messages paho now reports published (written out, or acknowledged)."""
        done = [mid for mid, info in conn.pending.items() if info.is_published()]
        now = time.monotonic()
        for mid in done:
            del conn.pending[mid]
            msg = self.outbox.done(mid, now) if conn is self._conn else None
            if msg is not None:
                self._done(msg)

    def _watch_writes(self, conn: _Connection) -> None:
        want = conn.client.want_write()
        if want != conn.writing and conn.sock is not None:
            if want:
                conn.loop.add_writer(conn.sock, self._writable, conn)
            else:
                conn.loop.remove_writer(conn.sock)
            conn.writing = want

    def _readable(self, conn: _Connection) -> None:
        client = conn.client
        rc = client.loop_read()
        sock = conn.sock
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and isinstance(sock, ssl.SSLSocket) and sock.pending():
            rc = client.loop_read()  # TLS: records already decrypted wait in the SSL buffer
        self._after_io(conn, rc)

    def _writable(self, conn: _Connection) -> None:
        self._after_io(conn, conn.client.loop_write())

    def _after_io(self, conn: _Connection, rc: int) -> None:
        if conn.pending:
            self._collect(conn)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            conn.fail(paho.error_string(rc))
        elif conn is self._conn:
            self._flush(conn)  # acknowledgements may have opened the window
        else:
            self._watch_writes(conn)

    def _done(self, msg: Message) -> None:
        self._published[msg.kind].inc()
        if msg.on_sent is not None:
            msg.on_sent(time.time())
        if self.outbox.idle:
            self._idle.set()
            if self._stopping:
                self._stop.set()

    # ------------------------------------------------------------------ the connection
    def _new_client(self) -> paho.Client:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id or f"trackcast-{self.instance}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        if self.cfg.username:
            password = self.cfg.password.get_secret_value() if self.cfg.password else None
            client.username_pw_set(self.cfg.username, password)
        client.will_set(self.service_topic, self.service_status("offline", "connection lost"),
                        qos=self.cfg.qos_status, retain=True)  # fmt: skip
        if self.tls:
            ctx = ssl.create_default_context(cafile=str(self.cfg.ca_file) if self.cfg.ca_file else None)
            if self.cfg.tls_insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            client.tls_set_context(ctx)
        client.connect_timeout = CONNECT_TIMEOUT_S
        return client

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self._new_client(), loop)
        client = conn.client

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                conn.fail(f"broker refused the connection: {reason}")
            elif not conn.connack.done():
                conn.connack.set_result(None)

        def on_disconnect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            conn.fail(f"disconnected ({reason})")

        def on_socket_close(c: Any, userdata: Any, sock: Any) -> None:
            conn.unwatch()  # before paho closes it: the loop must not watch a closed descriptor

        try:
            rc = await asyncio.to_thread(client.connect, self.host, self.port, self.cfg.keepalive_s)
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS handshake, bad host name
            raise MqttUnavailable(_reason(exc)) from exc
        sock = client.socket()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, socket.socket):  # SSLSocket is one
            if sock is not None:
                sock.close()
            raise MqttUnavailable(paho.error_string(rc) if rc else "no connection after connecting")
        # Callbacks only now: from here on paho is driven from this loop alone (connect ran in a thread).
        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        client.on_socket_close = on_socket_close
        # Small messages go out at once: without this, Nagle's algorithm meets the broker's
        # delayed ACKs and holds per-frame messages back by up to ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock = sock
        loop.add_reader(sock, self._readable, conn)
        self._watch_writes(conn)  # the CONNECT packet, if it was not all written
        try:
            await asyncio.wait_for(asyncio.shield(conn.connack), CONNECT_TIMEOUT_S)
        except BaseException:
            self._close(conn)
            raise
        return conn

    def _close(self, conn: _Connection, graceful: bool = False) -> None:
        if not conn.connack.done():
            conn.connack.cancel()  # nobody waits for it any more
        if graceful and conn.sock is not None:
            conn.client.disconnect()  # DISCONNECT: the broker drops the last will
            conn.client.loop_write()
        conn.unwatch()
        sock = conn.client.socket()
        if sock is not None:
            sock.close()

    async def run(
        self, streams: Callable[[], list[str]] | None = None, statuses: Callable[[], None] | None = None
    ) -> None:
        """Connect, write the outbox, reconnect on failure; returns once ``stop`` was called and
        the outbox is drained (or the broker is gone at shutdown). ``statuses`` is called on each
        connection to queue every stream's current status again: retained state, so a broker that
        lost its store (restarted without persistence, a fail-over) has it again at once."""
        while True:
            try:
                conn = await self._connect()
            except (MqttUnavailable, TimeoutError) as exc:
                if await self._retry_later(_reason(exc)):
                    return
                continue
            self._backoff.reset()
            self.connected.set()
            self.metrics.mqtt_connected.set(1)
            log.info("MQTT connected to %s:%d", self.host, self.port)
            online = self.service_status("online", None, streams() if streams else None)
            self.outbox.refused(Message(self.service_topic, online, self.cfg.qos_status, True, "status"))
            if statuses is not None and not self._stopping:
                statuses()
            self._idle.clear()
            self._conn = conn
            reason: str | None = None
            try:
                self._flush(conn)
                reason = await self._serve(conn)
            finally:
                self._conn = None
                self.connected.clear()
                self.metrics.mqtt_connected.set(0)
                for dropped in self.outbox.connection_lost():
                    self._dropped["tracks" if dropped.kind == "tracks" else "events"].inc()
                self._close(conn, graceful=reason is None)
            if reason is None:
                return
            if await self._retry_later(reason):
                return

    async def _serve(self, conn: _Connection) -> str | None:
        """While connected: keepalive ticks and the stall check. Returns why the connection was
        lost, or None once stopping and everything is out."""
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                if self._stopping and self.outbox.idle:
                    return None
                waits: list[asyncio.Future[Any]] = [conn.lost, stop]
                await asyncio.wait(waits, timeout=TICK_S, return_when=asyncio.FIRST_COMPLETED)
                if conn.lost.done():
                    return conn.lost.result()
                if conn.client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return conn.lost.result() if conn.lost.done() else "keepalive timed out"
                self._flush(conn)  # settles what paho wrote meanwhile, writes what the window allows
                if self.outbox.stalled(time.monotonic(), PUBLISH_TIMEOUT_S):
                    return f"nothing written or acknowledged in {PUBLISH_TIMEOUT_S:g}s"
        finally:
            stop.cancel()

    async def _retry_later(self, reason: str) -> bool:
        """Log and wait out the backoff; True when the publisher should give up (stopping)."""
        if self._stopping:
            log.warning("MQTT: giving up on %d queued messages at shutdown (%s)", self.depth, reason)
            return True
        delay = self._backoff.next()
        log.warning("MQTT %s:%d unavailable (%s); retrying in %.1fs, %d queued", self.host, self.port,
                    reason, delay, self.depth)  # fmt: skip
        try:
            await asyncio.wait_for(self._stop.wait(), delay)
            return True
        except TimeoutError:
            return False

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (True) or ``timeout`` passes (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def stop(self, reason: str = "shutdown") -> None:
        """Queue the service's offline status and let ``run`` finish once the outbox is drained."""
        self._stopping = True
        self._push(Message(self.service_topic, self.service_status("offline", reason), self.cfg.qos_status,
                           True, "status"))  # fmt: skip
        if self._conn is None or self.outbox.idle:
            self._stop.set()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
