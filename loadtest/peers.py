"""Real peers for load tests and integration tests: mosquitto, GStreamer's RTSP server, a service process.

Everything listens on 127.0.0.1 only and is stopped by whoever started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"


class PeerUnavailable(RuntimeError):
    """A system package the peer needs is missing (``make test`` installs them)."""


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


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def trackcast_cmd() -> list[str]:
    import sys

    exe = Path(sys.executable).with_name("trackcast")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("trackcast")
    return [found] if found else [sys.executable, "-m", "service.cli"]


class Mosquitto:
    """A real mosquitto broker; ``stop()``/``start()`` keep the port and (persistent) state."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        users: dict[str, str] | None = None,
        queue_qos0: bool = False,
    ) -> None:
        """``queue_qos0``: keep QoS 0 messages for persistent sessions while they are offline too."""
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise PeerUnavailable("mosquitto is not installed (make test installs it)")
        self.exe = exe
        self.port = port or free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {self.dir}/",
                 "max_queued_messages 100000", "set_tcp_nodelay true", "log_dest stderr"]  # fmt: skip
        if queue_qos0:
            lines.append("queue_qos0_messages true")
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
        wait_for(lambda: port_open(self.port), 10, "mosquitto to listen")
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
    """GStreamer's gst-rtsp-server (Debian) serving H.264 MP4 files at real-time pace; restartable."""

    def __init__(self, mounts: dict[str, Path], port: int | None = None, user: str | None = None,
                 password: str | None = None) -> None:  # fmt: skip
        if not Path(SYSTEM_PYTHON).exists():
            raise PeerUnavailable("system python3 with python3-gi is missing (make test installs it)")
        check = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                               capture_output=True)  # fmt: skip
        if check.returncode != 0:
            raise PeerUnavailable(
                "GStreamer RTSP server bindings missing (gir1.2-gst-rtsp-server-1.0; make test installs them)"
            )
        self.mounts = mounts
        self.port = port or free_port()
        self.user, self.password = user, password
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> RtspServer:
        args = [SYSTEM_PYTHON, str(ROOT / "loadtest" / "rtsp_server.py"), "--port", str(self.port)]
        if self.user:
            args += ["--user", self.user, "--password", self.password or ""]
        args += [f"/{m}={p}" for m, p in self.mounts.items()]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"RTSP server did not start: {line}")
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


class ServiceProc:
    """``trackcast serve --config`` as a real process, with its log kept."""

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
                raise RuntimeError(f"service exited with {self.proc.returncode}: {self.log()[-3000:]}")
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
                raise RuntimeError(f"service did not stop within {timeout}s: {self.log()[-3000:]}") from None
        return int(self.proc.returncode)

    def kill(self) -> None:
        """Make sure the process is gone (for ``finally`` blocks after a failed check)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


TRITON_VENV = ROOT / ".venv-triton"


class TritonServer:
    """NVIDIA Triton Inference Server (PyPI's nvidia-pytriton, in ``.venv-triton``) serving a model
    repository written by ``trackcast triton-repo``; see ``loadtest/inference_server.py``."""

    def __init__(self, repo: Path, workdir: Path, faults: bool = False, threads: int = 2, slow_s: float = 3.0,
                 venv: Path = TRITON_VENV, fake_ms: float | None = None) -> None:  # fmt: skip
        self.python = venv / "bin" / "python"
        if not self.python.exists():
            raise PeerUnavailable(
                f"no Triton venv at {venv} (make test builds it: make .venv-triton/.installed)"
            )
        self.repo, self.dir = repo, workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.faults, self.threads, self.slow_s, self.fake_ms = faults, threads, slow_s, fake_ms
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log_path = self.dir / "triton.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.models = [p.parent.name for p in sorted(repo.glob("*/config.pbtxt"))]
        if faults:
            self.models += [f"{m}-{k}" for m in list(self.models) for k in ("slow", "broken", "garbage")]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, ready_timeout: float = 120) -> TritonServer:
        libdir = subprocess.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                                capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        # Triton's Python backend stub loads libpython: the one this venv's interpreter was built with
        env = {
            **os.environ,
            "LD_LIBRARY_PATH": ":".join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")])),
        }
        args = [str(self.python), str(ROOT / "loadtest" / "inference_server.py"), "--repo", str(self.repo),
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--metrics-port", str(self.metrics_port), "--threads", str(self.threads),
                "--slow-s", str(self.slow_s), "--workspace", str(self.dir / "workspace")]  # fmt: skip
        if self.faults:
            args.append("--faults")
        if self.fake_ms is not None:
            args += ["--fake-ms", str(self.fake_ms)]
        shutil.rmtree(self.dir / "workspace", ignore_errors=True)  # a restart's Triton makes its own
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"Triton exited with {self.proc.returncode}: {self.log()[-3000:]}")
            for m in self.models:
                try:
                    with urllib.request.urlopen(f"{self.url}/v2/models/{m}/ready", timeout=2) as r:
                        if r.status != 200:
                            return False
                except OSError:
                    return False
            return True

        wait_for(ready, ready_timeout, f"Triton to load {self.models}", interval=0.5)
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole process group (tritonserver and its backend stubs);
        returns once the ports are free, so the server can start again on them."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            wait_for(lambda: not any(port_open(p) for p in (self.http_port, self.grpc_port, self.metrics_port)),
                     20, "Triton's ports to close")  # fmt: skip
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
