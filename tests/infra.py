"""Real peers for integration tests: mosquitto, GStreamer's RTSP server, the service as a process.

Every server listens on 127.0.0.1 on a free port and is stopped by the test that started it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, trackcast_cmd

SYSTEM_PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """A real mosquitto broker; ``stop()``/``start()`` keep the port and (persistent) state."""

    def __init__(self, workdir: Path, port: int | None = None, users: dict[str, str] | None = None) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.skip("mosquitto is not installed (make test installs it)")
        self.exe = exe
        self.port = port or free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.dir}/",
                 "max_queued_messages 100000", "log_dest stderr"]  # fmt: skip
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', which cannot write its state here
        if users:
            pw = self.dir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "mosquitto.log"

    def start(self) -> Mosquitto:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_for(lambda: _port_open(self.port), 10, "mosquitto to listen")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class RtspServer:
    """GStreamer's gst-rtsp-server (Debian) serving files at real-time pace; restartable."""

    def __init__(
        self,
        mounts: dict[str, Path],
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        if not Path(SYSTEM_PYTHON).exists():
            pytest.skip("system python3 with python3-gi is not available (make test installs it)")
        check = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                               capture_output=True)  # fmt: skip
        if check.returncode != 0:
            pytest.skip(
                "GStreamer RTSP server bindings missing (gir1.2-gst-rtsp-server-1.0; make test installs them)"
            )
        self.mounts = mounts
        self.port = port or free_port()
        self.user, self.password = user, password
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> RtspServer:
        args = [SYSTEM_PYTHON, str(ROOT / "tests" / "rtsp_server.py"), "--port", str(self.port)]
        if self.user:
            args += ["--user", self.user, "--password", self.password or ""]
        args += [f"/{m}={p}" for m, p in self.mounts.items()]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "ready" not in line:
            raise AssertionError(f"RTSP server did not start: {line}")
        out = self.proc.stdout

        def drain() -> None:  # keep the pipe drained; close it once the server is gone
            out.read()
            out.close()

        threading.Thread(target=drain, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # like a camera losing power
            self.proc.wait(10)
        self.proc = None

    def url(self, mount: str) -> str:
        cred = f"{self.user}:{self.password}@" if self.user else ""
        return f"rtsp://{cred}127.0.0.1:{self.port}/{mount}"


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


class ServiceProc:
    """``trackcast serve --config`` as a real process, with its log kept for assertions."""

    def __init__(self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = config.setdefault("http", {}).setdefault("port", free_port())
        config["http"].setdefault("host", "127.0.0.1")
        self.config_path = self.dir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = self.dir / "service.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.token: str | None = config["http"].get("token")

    def start(self, ready_timeout: float = 60) -> ServiceProc:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([*trackcast_cmd(), "serve", "--config", str(self.config_path)], cwd=ROOT,
                                         stdout=log, stderr=log, env=self.env)  # fmt: skip

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"service exited with {self.proc.returncode}: {self.log()}")
            try:
                return self.get("/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, ready_timeout, "the service to be ready")
        return self

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        tok = token if token is not None else self.token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                ctype = r.headers.get("Content-Type", "")
                return r.status, (json.loads(raw) if raw and "json" in ctype else raw.decode())
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode()

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def stream(self, sid: str) -> dict[str, Any]:
        return dict(self.get(f"/streams/{sid}")[1])

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"service did not stop within {timeout}s: {self.log()[-3000:]}"
                ) from None
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


import urllib.error  # noqa: E402  (used in request)
