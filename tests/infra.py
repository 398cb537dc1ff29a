"""Real peers for integration tests: mosquitto, GStreamer's RTSP server, the service as a process.

Every server listens on 127.0.0.1 on a free port and is stopped by the test that started it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import pytest

from loadtest import peers
from loadtest.peers import free_port, wait_for

__all__ = ["Collector", "Mosquitto", "RtspServer", "ServiceProc", "TritonServer", "free_port", "wait_for"]


class Mosquitto(peers.Mosquitto):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except peers.PeerUnavailable as exc:
            pytest.skip(str(exc))


class RtspServer(peers.RtspServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except peers.PeerUnavailable as exc:
            pytest.skip(str(exc))


class TritonServer(peers.TritonServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except peers.PeerUnavailable as exc:
            pytest.skip(str(exc))


class Collector:
    """Subscribes to topics with paho-mqtt and keeps every message (topic, payload dict, receipt time)."""

    def __init__(self, port: int, topics: str = "trackcast/#", client_id: str | None = None, persistent: bool = False,
                 username: str | None = None, password: str | None = None) -> None:  # fmt: skip
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, Any, float]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{os.getpid()}-{time.monotonic_ns()}",
            clean_session=not persistent,
        )  # fmt: skip
        if username:
            self.client.username_pw_set(username, password)
        self.topics = topics
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(self.topics, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload) if msg.payload else None
        except ValueError:
            body = msg.payload
        with self._lock:
            self.messages.append((msg.topic, body, time.time()))

    def of(self, suffix: str, stream: str | None = None) -> list[Any]:
        with self._lock:
            msgs = list(self.messages)
        return [b for t, b, _ in msgs if t.endswith(suffix) and (stream is None or t.split("/")[1] == stream)]

    def timed(self, suffix: str, stream: str) -> list[tuple[Any, float]]:
        with self._lock:
            msgs = list(self.messages)
        return [(b, ts) for t, b, ts in msgs if t.endswith(suffix) and t.split("/")[1] == stream]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


ServiceProc = peers.ServiceProc
