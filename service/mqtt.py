"""MQTT publisher (aiomqtt) with a bounded outbox that survives broker outages.

Two queues: events and statuses (bounded; the oldest is dropped, and counted, only when the whole
bound is used) and per-frame tracks (small bound; the oldest frame's message is dropped first, and
counted). Events and statuses always go out before tracks. A message leaves the outbox only once
the broker acknowledged it (QoS 1/2) or it was written (QoS 0), so after a reconnect everything
still queued is delivered: at-least-once for events within the bound (a message in flight when the
connection broke may arrive twice). Reconnects back off exponentially with jitter, 1 s to
``reconnect_max_s``. The service status topic is also the client's last will.

Per-frame tracks at QoS 0 (the default) are written through: handed straight to the connection's
paho client, without the task and the timed wait ``aiomqtt.Client.publish`` spends on each
message (at hundreds of frames per second that bookkeeping cost the event loop more than the
tracker). They leave the outbox when paho has written them; at most ``WINDOW`` are written and not
yet sent, and on a broken connection those go back to the outbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from service.config import MqttConfig
from service.metrics import Metrics

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PUBLISH_TIMEOUT_S = 10.0
WINDOW = 64  # messages sent but not yet acknowledged, per connection


@dataclass(slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: str  # tracks | events | status
    on_sent: Any = None  # callable(time.time()) after the broker took it


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


class Backoff:
    """Capped, jittered exponential backoff: ``next()`` gives the next delay; ``reset()`` after success."""

    def __init__(self, minimum: float = 1.0, maximum: float = 30.0, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        base = min(self.maximum, self.minimum * 2**self.attempt)
        self.attempt += 1
        delay: float = base / 2 + self._rng.uniform(0, base / 2)  # "equal jitter": never below half the step
        return delay

    def reset(self) -> None:
        self.attempt = 0


class Publisher:
    def __init__(self, cfg: MqttConfig, instance: str, metrics: Metrics) -> None:
        self.cfg = cfg
        self.instance = instance
        self.metrics = metrics
        self.prefix = cfg.topic_prefix
        self._events: deque[Message] = deque()
        self._tracks: deque[Message] = deque()
        self._unacked: list[Message] = []  # sent, not yet acknowledged, in send order
        self._written: dict[int, Message] = {}  # tracks handed to paho (write-through), by mid
        self._paho: Any = None  # the connection's paho client while tracks are written through
        self._failed: asyncio.Future[BaseException] | None = None  # ends that connection's drain loop
        self._starting = 0  # event sends made but not yet handed to the client (they go first)
        self._window_full = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.connected = asyncio.Event()
        self._stopping = False
        self._backoff = Backoff(1.0, cfg.reconnect_max_s)
        self.dropped = {"tracks": 0, "events": 0}
        u = urlsplit(cfg.url)
        self.host = u.hostname or "127.0.0.1"
        self.tls = u.scheme == "mqtts"
        self.port = u.port or (8883 if self.tls else 1883)
        self.service_topic = f"{self.prefix}/service/{instance}/status"
        # Per-message bookkeeping stays cheap: labelled children looked up once, the outbox depth
        # read when /metrics is scraped.
        self._published = {k: metrics.mqtt_published.labels(k) for k in ("tracks", "events", "status")}
        metrics.outbox_depth.labels("events").set_function(lambda: len(self._events) + len(self._unacked))
        metrics.outbox_depth.labels("tracks").set_function(lambda: len(self._tracks) + len(self._written))

    # ------------------------------------------------------------------ topics and payloads
    def topic(self, stream: str, kind: str) -> str:
        return f"{self.prefix}/{stream}/{kind}"

    def service_status(self, state: str, reason: str | None, streams: list[str] | None = None) -> bytes:
        body: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "instance": self.instance,
            "state": state,
            "reason": reason,
            "ts": time.time(),
        }
        if streams is not None:
            body["streams"] = streams
        return dumps(body)

    # ------------------------------------------------------------------ enqueue (never blocks)
    def publish_tracks(self, stream: str, payload: bytes, on_sent: Any = None) -> None:
        msg = Message(self.topic(stream, "tracks"), payload, self.cfg.qos_tracks, False, "tracks", on_sent)
        if (
            self._paho is not None
            and not self._tracks
            and not self._events
            and not self._starting
            and len(self._written) < WINDOW
        ):
            self._idle.clear()
            self._write_through(msg)  # nothing queued before it: straight out, no wake-up
            return
        if len(self._tracks) >= self.cfg.outbox_tracks:
            self._tracks.popleft()
            self.dropped["tracks"] += 1
            self.metrics.mqtt_dropped.labels("tracks").inc()
        self._tracks.append(msg)
        self._kick()

    def publish_event(self, stream: str, payload: bytes) -> None:
        self._push_event(Message(self.topic(stream, "events"), payload, self.cfg.qos_events, False, "events"))

    def publish_status(self, stream: str, payload: bytes) -> None:
        self._push_event(Message(self.topic(stream, "status"), payload, self.cfg.qos_status, True, "status"))

    def clear_status(self, stream: str) -> None:
        """Remove a removed stream's retained status (an empty retained message deletes it)."""
        self._push_event(Message(self.topic(stream, "status"), b"", self.cfg.qos_status, True, "status"))

    def _push_event(self, msg: Message) -> None:
        if len(self._events) >= self.cfg.outbox_events:
            self._events.popleft()
            self.dropped["events"] += 1
            self.metrics.mqtt_dropped.labels("events").inc()
        self._events.append(msg)
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    @property
    def depth(self) -> int:
        return len(self._events) + len(self._tracks) + len(self._unacked) + len(self._written)

    @property
    def writes_through(self) -> bool:
        """True while connected with QoS 0 tracks handed straight to the MQTT client."""
        return self._paho is not None

    # ------------------------------------------------------------------ write-through (QoS 0 tracks)
    def _write_through(self, msg: Message) -> None:
        info = self._paho.publish(msg.topic, msg.payload, 0, False)
        if info.rc != 0:  # the connection is gone: back to the outbox, and reconnect
            self._tracks.appendleft(msg)
            self._broken(f"publish refused ({info.rc})")
        elif info.is_published():  # written within publish() (paho does when it owns the loop)
            self._sent(msg)
        else:
            self._written[info.mid] = msg

    def _attach(self, client: Any, failed: asyncio.Future[BaseException]) -> None:
        """Write QoS 0 tracks through this connection's paho client, if aiomqtt exposes one.

        paho's publish and disconnect callbacks (aiomqtt's) are chained: a written message leaves
        the outbox, a lost connection fails the drain loop (``failed``) so the run loop reconnects.
        """
        import paho.mqtt.client as mqtt

        paho = getattr(client, "_client", None)
        if self.cfg.qos_tracks != 0 or not isinstance(paho, mqtt.Client):
            return  # tracks go through aiomqtt's publish like everything else
        on_publish_before, on_disconnect_before = paho.on_publish, paho.on_disconnect

        def on_publish(c: Any, userdata: Any, mid: int, *rest: Any) -> None:
            if on_publish_before is not None:
                on_publish_before(c, userdata, mid, *rest)
            if c is not self._paho:
                return  # a connection already given up: its messages went back to the outbox
            msg = self._written.pop(mid, None)
            if msg is not None:
                self._sent(msg)
                if self._window_full:
                    self._window_full = False
                    self._wake.set()

        def on_disconnect(c: Any, *args: Any) -> None:
            if on_disconnect_before is not None:
                on_disconnect_before(c, *args)
            if c is self._paho:
                self._broken("disconnected")

        paho.on_publish, paho.on_disconnect = on_publish, on_disconnect
        self._failed = failed
        self._paho = paho

    def _broken(self, reason: str) -> None:
        """The written-through connection failed: stop writing to it and end the drain loop."""
        import aiomqtt

        self._paho = None
        if self._failed is not None and not self._failed.done():
            self._failed.set_result(aiomqtt.MqttError(f"connection lost: {reason}"))

    def _detach(self) -> None:
        """The connection ended: what was written through but not sent goes back to the outbox."""
        self._paho = None
        self._failed = None
        for msg in reversed(self._written.values()):
            self._tracks.appendleft(msg)
        self._written.clear()
        while len(self._tracks) > self.cfg.outbox_tracks:
            self._tracks.popleft()
            self.dropped["tracks"] += 1
            self.metrics.mqtt_dropped.labels("tracks").inc()

    def _sent(self, msg: Message) -> None:
        self._published[msg.kind].inc()
        if msg.on_sent is not None:
            msg.on_sent(time.time())
        if not self._events and not self._tracks and not self._unacked and not self._written:
            self._idle.set()
            if self._stopping:
                self._wake.set()  # the drain loop returns once all is out

    # ------------------------------------------------------------------ the connection loop
    def _tls_params(self) -> Any:
        import aiomqtt

        if not self.tls:
            return None
        return aiomqtt.TLSParameters(
            ca_certs=str(self.cfg.ca_file) if self.cfg.ca_file else None,
            cert_reqs=ssl.CERT_NONE if self.cfg.tls_insecure else ssl.CERT_REQUIRED,
        )

    def _client(self) -> Any:
        import aiomqtt

        will = aiomqtt.Will(
            self.service_topic,
            self.service_status("offline", "connection lost"),
            qos=self.cfg.qos_status,
            retain=True,
        )
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.cfg.username,
            password=self.cfg.password.get_secret_value() if self.cfg.password else None,
            identifier=self.cfg.client_id or f"trackcast-{self.instance}",
            keepalive=self.cfg.keepalive_s,
            will=will,
            tls_params=self._tls_params(),
            tls_insecure=self.cfg.tls_insecure if self.tls else None,
            timeout=10,
            # Small messages go out at once: without this, Nagle's algorithm meets the broker's
            # delayed ACKs and holds per-frame messages back by up to ~40 ms.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        client.pending_calls_threshold = WINDOW + 1  # our window is the intended concurrency
        return client

    async def run(self, streams: Any = None) -> None:
        """Connect, drain the outbox, reconnect on failure; returns when ``stop`` is called and drained."""
        import aiomqtt

        while True:
            try:
                async with self._client() as client:
                    self._backoff.reset()
                    self.connected.set()
                    self.metrics.mqtt_connected.set(1)
                    log.info("MQTT connected to %s:%d", self.host, self.port)
                    online = self.service_status("online", None, streams() if streams else None)
                    await asyncio.wait_for(
                        client.publish(self.service_topic, online, qos=self.cfg.qos_status, retain=True),
                        PUBLISH_TIMEOUT_S,
                    )
                    await self._drain(client)
                    if self._stopping:
                        return
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                self._requeue_unacked()
                self.connected.clear()
                self.metrics.mqtt_connected.set(0)
                if self._stopping:
                    log.warning(
                        "MQTT: giving up on %d queued messages at shutdown (%s)",
                        self.depth,
                        type(exc).__name__,
                    )
                    return
                delay = self._backoff.next()
                log.warning("MQTT %s:%d unavailable (%s); retrying in %.1fs, %d queued", self.host, self.port,
                            _reason(exc), delay, self.depth)  # fmt: skip
                try:
                    await asyncio.wait_for(self._stop_requested(), delay)
                    return
                except TimeoutError:
                    pass
            finally:
                self.connected.clear()
                self.metrics.mqtt_connected.set(0)

    async def _stop_requested(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.05)

    async def _drain(self, client: Any) -> None:
        """Send queued messages, events before tracks: events (and tracks at QoS 1/2) as tasks, up
        to ``WINDOW`` unacknowledged at once; QoS 0 tracks written through (``_write_through``)."""
        window = asyncio.Semaphore(WINDOW)
        failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        tasks: set[asyncio.Task[None]] = set()

        async def send(msg: Message) -> None:
            self._starting -= 1
            try:
                await client.publish(
                    msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, timeout=PUBLISH_TIMEOUT_S
                )
            except Exception as exc:  # the connection is gone: the run loop reconnects and resends
                if not failed.done():
                    failed.set_result(exc)
                return
            finally:
                window.release()
            self._unacked.remove(msg)
            self._sent(msg)

        self._attach(client, failed)
        stalled_at = 0.0
        try:
            while True:
                if failed.done():
                    raise failed.result()
                if self._tracks and not self._events and self._paho is not None:
                    if self._starting:
                        await asyncio.sleep(0)  # the events just handed over go out first
                        continue
                    while self._tracks and len(self._written) < WINDOW:
                        self._write_through(self._tracks.popleft())
                    if self._tracks:  # the window is full: wait until paho has written some
                        if not self._window_full:  # (on_publish clears it when one is written)
                            self._window_full, stalled_at = True, time.monotonic()
                        left = stalled_at + PUBLISH_TIMEOUT_S - time.monotonic()
                        if left <= 0:
                            raise TimeoutError(f"no tracks message written in {PUBLISH_TIMEOUT_S:g}s")
                        await self._wait(failed, left)
                    continue
                if not self._events and not self._tracks:
                    if not self._unacked and not self._written:
                        self._idle.set()
                        if self._stopping:
                            return
                    await self._wait(failed)
                    continue
                await window.acquire()
                if failed.done():
                    window.release()
                    continue
                msg = self._events.popleft() if self._events else self._tracks.popleft()
                self._unacked.append(msg)
                self._starting += 1
                t = asyncio.create_task(send(msg))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        finally:
            self._detach()
            self._starting = 0
            self._window_full = False
            for t in tasks:
                t.cancel()

    async def _wait(self, failed: asyncio.Future[BaseException], timeout: float | None = None) -> None:
        """Until something is queued (``_kick``), written or sent, the connection failed, or ``timeout``."""
        self._wake.clear()
        waiter: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
        await asyncio.wait([waiter, failed], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    def _requeue_unacked(self) -> None:
        """After a broken connection: unacknowledged messages go back first, in their order."""
        for msg in reversed(self._unacked):
            (self._events if msg.kind != "tracks" else self._tracks).appendleft(msg)
        self._unacked.clear()

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (True) or ``timeout`` passes (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def stop(self, reason: str = "shutdown") -> None:
        """Queue the service's offline status and let ``run`` finish once the outbox is drained."""
        self._push_event(
            Message(
                self.service_topic,
                self.service_status("offline", reason),
                self.cfg.qos_status,
                True,
                "status",
            )
        )
        self._stopping = True
        self._wake.set()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
