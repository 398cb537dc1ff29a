"""The MQTT publisher against a real mosquitto: QoS 0 tracks written through, events first, outages.

Messages are written straight to the connection (paho-mqtt driven from the event loop); these tests check
what a subscriber sees: every message, in order, events not overtaken, nothing lost across a
broker restart within the outbox bound, and the drops counted beyond it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from service.config import MqttConfig
from service.metrics import Metrics
from service.mqtt import WINDOW, Publisher, dumps
from tests.infra import Collector, Mosquitto, wait_for


def _count(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def _connected(pub: Publisher, timeout: float = 20.0) -> None:
    await asyncio.wait_for(pub.connected.wait(), timeout)
    t0 = time.monotonic()
    while not pub.writes_through and time.monotonic() < t0 + 5:  # the outbox drain starts after connecting
        await asyncio.sleep(0.01)


def test_tracks_are_written_through_in_order_and_events_are_not_overtaken(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port, topics="pub/#")
    metrics = Metrics()
    sent: list[int] = []

    async def main() -> tuple[bool, bool]:
        pub = Publisher(MqttConfig(url=broker.url, topic_prefix="pub"), "t", metrics)
        runner = asyncio.create_task(pub.run())
        await _connected(pub)
        through = pub.writes_through
        for i in range(300):
            if i % 50 == 25:
                pub.publish_event("cam", dumps({"event": "track_started", "before": i}))
            pub.publish_tracks("cam", dumps({"frame": i}), on_sent=lambda ts, i=i: sent.append(i))
            if i % 10 == 9:
                await asyncio.sleep(0)  # frames come in bursts (a detector batch at a time)
        flushed = await pub.flush(10)
        pub.stop()
        await asyncio.wait_for(runner, 10)
        return through, flushed

    try:
        through, flushed = asyncio.run(main())
        wait_for(
            lambda: len(sub.of("/tracks", "cam")) >= 300 and len(sub.of("/events", "cam")) >= 6,
            10,
            "messages",
        )
        with sub._lock:
            order = [(t.rsplit("/", 1)[1], b) for t, b, _ in sub.messages if t.startswith("pub/cam/")]
    finally:
        sub.close()
        broker.stop()
    assert through, "messages should be written straight to the socket while connected"
    assert flushed
    assert [b["frame"] for kind, b in order if kind == "tracks"] == list(range(300))
    assert sorted(sent) == list(range(300)) and len(sent) == 300  # each message reported sent once
    assert _count(metrics, "trackcast_mqtt_published_total", kind="tracks") == 300
    # An event queued before a frame's tracks reaches the subscriber before them.
    for pos, (kind, body) in enumerate(order):
        if kind == "events":
            frames_before = [b["frame"] for k, b in order[:pos] if k == "tracks"]
            assert frames_before == list(range(body["before"])), body


def test_tracks_wait_out_a_broker_restart_within_the_outbox_and_drops_beyond_are_counted(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path / "broker", queue_qos0=True).start()
    # A persistent session that queues QoS 0 too: it misses nothing while the broker restarts.
    sub = Collector(broker.port, topics="pub/#", client_id="audit", persistent=True)
    metrics = Metrics()
    cfg = MqttConfig(url=broker.url, topic_prefix="pub", outbox_tracks=40, reconnect_max_s=1)

    async def main() -> dict[str, Any]:
        pub = Publisher(cfg, "t", metrics)
        runner = asyncio.create_task(pub.run())
        await _connected(pub)
        for i in range(20):
            pub.publish_tracks("cam", dumps({"frame": i}))
        assert await pub.flush(10)
        t0 = time.monotonic()  # QoS 0 flushed = written: let the broker pass them on before it stops
        while len(sub.of("/tracks", "cam")) < 20 and time.monotonic() < t0 + 10:
            await asyncio.sleep(0.02)
        broker.stop()
        t0 = time.monotonic()
        while pub.connected.is_set() and time.monotonic() < t0 + 10:
            await asyncio.sleep(0.05)
        down = {"noticed": not pub.connected.is_set(), "through": pub.writes_through}
        for i in range(20, 120):  # 100 frames while the broker is down: the outbox keeps the last 40
            pub.publish_tracks("cam", dumps({"frame": i}))
            await asyncio.sleep(0)
        down["depth"] = pub.depth
        down["dropped"] = pub.dropped["tracks"]
        broker.start()
        await _connected(pub)
        down["flushed"] = await pub.flush(20)
        pub.stop()
        await asyncio.wait_for(runner, 10)
        return down

    try:
        down = asyncio.run(main())
        wait_for(
            lambda: sub.of("/tracks", "cam") and sub.of("/tracks", "cam")[-1]["frame"] == 119,
            20,
            "the last frame",
        )
        frames = [b["frame"] for b in sub.of("/tracks", "cam")]
    finally:
        sub.close()
        broker.stop()
    assert down["noticed"] and not down["through"]
    assert down["depth"] == 40 and down["dropped"] == 60
    assert down["flushed"]
    assert frames == list(range(20)) + list(range(80, 120))
    assert _count(metrics, "trackcast_mqtt_dropped_total", kind="tracks") == 60
    assert _count(metrics, "trackcast_mqtt_published_total", kind="tracks") == 60


def test_a_stalled_broker_fills_the_window_and_nothing_is_lost_or_reconnected(tmp_path: Path) -> None:
    """A broker that stops reading (paused, not gone): once the socket buffers are full paho keeps
    the written-through messages, the rest wait in the outbox, and all of them go out, in order,
    when it reads again; a stall shorter than the publish timeout is not taken for a lost link."""
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port, topics="pub/#")
    metrics = Metrics()
    big = "x" * 60_000  # a few hundred of these are more than the loopback socket buffers hold
    assert broker.proc is not None

    async def main() -> dict[str, Any]:
        pub = Publisher(MqttConfig(url=broker.url, topic_prefix="pub", outbox_tracks=500), "t", metrics)
        runner = asyncio.create_task(pub.run())
        await _connected(pub)
        broker.proc.send_signal(signal.SIGSTOP)
        for i in range(400):
            pub.publish_tracks("cam", dumps({"frame": i, "pad": big}))
            await asyncio.sleep(0.005)  # 2 s of frames arriving while the broker does not read
        seen = {"depth": pub.depth, "through": pub.writes_through}
        broker.proc.send_signal(signal.SIGCONT)
        seen["flushed"] = await pub.flush(30)
        seen["dropped"] = _count(metrics, "trackcast_mqtt_dropped_total", kind="tracks")
        pub.stop()
        await asyncio.wait_for(runner, 10)
        return seen

    try:
        seen = asyncio.run(main())
        wait_for(lambda: len(sub.of("/tracks", "cam")) >= 400, 30, "every frame")
        frames = [b["frame"] for b in sub.of("/tracks", "cam")]
    finally:
        if broker.proc is not None:
            broker.proc.send_signal(signal.SIGCONT)
        sub.close()
        broker.stop()
    assert seen["depth"] > WINDOW, "messages waited in the outbox while the broker was not reading"
    assert seen["through"], "a short stall is not a lost connection"
    assert seen["flushed"] and seen["dropped"] == 0
    assert frames == list(range(400))
