"""Service configuration: a YAML file, every key overridable by ``TRACKCAST_<SECTION>__<KEY>``.

Validated value objects (pydantic-settings, unknown keys rejected). Errors name the offending key
(``ConfigError``). Secrets (MQTT password, HTTP token, AWS keys, credentials inside stream URLs)
are ``SecretStr`` or redacted wherever a config is shown.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from detector_client.config import DetectorConfig, MotionDetectorConfig
from service.errors import ConfigError, redact_url
from service.rules.analytics import AnalyticsSpec

#: Stream ids and the instance name (in topics, metric labels, URLs): matched against the whole
#: string (``fullmatch``: a trailing newline is not "the end").
STREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]+\])"
_MQTT_URL = re.compile(rf"mqtts?://(?P<host>{_HOST})(?::(?P<port>\d{{1,5}}))?/?")
_ICE_URL = re.compile(r"(?:stuns?|turns?):[^\s]{1,500}")
_DAY_S = 86400.0


def _printable(v: str, what: str = "value") -> str:
    """No control characters (newlines, NUL, escapes) in names that end up in topics, logs or headers."""
    if any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise ValueError(f"{what} must not contain control characters (newline, tab, NUL, ...)")
    return v


class _Section(BaseModel):
    # Numbers must be finite: NaN or infinity in a config is a mistake, not a setting.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MqttConfig(_Section):
    url: str = Field(
        "mqtt://127.0.0.1:1883", description="broker URL: mqtt://host:port or mqtts://host:port (TLS)"
    )
    topic_prefix: str = Field("trackcast", description="topics are <prefix>/<stream>/tracks|events|status")
    username: str | None = Field(None, description="broker user name")
    password: SecretStr | None = Field(None, description="broker password (never logged)")
    client_id: str | None = Field(None, description="MQTT client id (default: trackcast-<instance>)")
    qos_tracks: Literal[0, 1, 2] = Field(0, description="QoS of per-frame tracks messages")
    qos_events: Literal[0, 1, 2] = Field(1, description="QoS of track events")
    qos_status: Literal[0, 1, 2] = Field(1, description="QoS of (retained) status messages")
    ca_file: Path | None = Field(None, description="CA bundle for mqtts:// (default: system CAs)")
    tls_insecure: bool = Field(False, description="skip TLS certificate verification (testing only)")
    keepalive_s: int = Field(30, ge=5, le=3600)
    outbox_events: int = Field(
        10000, ge=10, le=1_000_000, description="events queued while the broker is away"
    )
    outbox_tracks: int = Field(
        500, ge=1, le=1_000_000, description="per-frame tracks messages queued; oldest dropped first"
    )
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="cap of the reconnect backoff")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        m = _MQTT_URL.fullmatch(v)
        if m is None:
            raise ValueError("must look like mqtt://host:port or mqtts://host:port")
        if m["port"] is not None and not 1 <= int(m["port"]) <= 65535:
            raise ValueError(f"port {m['port']} is out of range (1-65535)")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "#+") or v.startswith("/") or v.endswith("/") or len(v) > 200:
            raise ValueError("must be a non-empty topic (at most 200 characters) without wildcards or "
                             "leading/trailing '/'")  # fmt: skip
        return _printable(v, "the topic prefix")

    @field_validator("username", "client_id")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        if v is not None and (not v or len(v) > 256):
            raise ValueError("must be 1-256 characters")
        return None if v is None else _printable(v)


class TrackerSettings(_Section):
    track_thresh: float = Field(0.5, gt=0, lt=1, description="high-score threshold")
    track_buffer: int = Field(30, ge=0, le=100_000, description="frames (at 30 fps) a lost track is kept")
    match_thresh: float = Field(0.8, gt=0, le=1, description="first association cost limit")
    mot20: bool = Field(False, description="no score fusion (crowds)")
    per_class: bool = Field(False, description="associate only within a class")


class HttpConfig(_Section):
    host: str = Field("127.0.0.1", description="listen address")
    port: int = Field(8080, ge=0, le=65535, description="listen port (0: any free port)")
    token: SecretStr | None = Field(
        None, description="bearer token required for everything but /healthz, /readyz"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not re.fullmatch(rf"{_HOST}|::", v):
            raise ValueError("must be a host name or an IP address")
        return v


class BatcherConfig(_Section):
    max_batch: int | None = Field(
        None, ge=1, description="frames per detector call (default: the detector's)"
    )
    max_wait_ms: float = Field(
        5.0,
        ge=0,
        le=10_000,
        description="a batch goes out this long after its oldest frame was ready (decoded; time spent waiting for a busy detector counts), full or not",
    )
    result_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a frame's detection older than this is given up (late)"
    )


class WebRtcConfig(_Section):
    ice_servers: list[str] = Field(
        default_factory=list,
        description="STUN/TURN URLs for WHIP sessions (default none: host candidates only)",
    )
    host_addresses: list[str] | None = Field(
        None,
        description="IP addresses to offer as ICE host candidates (default: every interface but loopback)",
    )

    @field_validator("ice_servers")
    @classmethod
    def _ice(cls, v: list[str]) -> list[str]:
        for url in v:
            if not _ICE_URL.fullmatch(url):
                raise ValueError(f"{url!r} is not a stun:, stuns:, turn: or turns: URL")
        return v

    @field_validator("host_addresses")
    @classmethod
    def _addresses(cls, v: list[str] | None) -> list[str] | None:
        import ipaddress

        for a in v or []:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address") from None
        return v


class StreamConfig(_Section):
    id: str = Field(..., description="stream id: letters, digits, _ . - (used in topics and metrics)")
    url: str = Field(
        ...,
        description="rtsp://, rtmp://, http(s)://, a file path or a ROS bag (.bag, ROS 2 folder); 'whip' for WebRTC publishers",
    )
    topic: str | None = Field(
        None,
        description="a ROS bag's image topic (url: a .bag file or ROS 2 bag folder; default: its only one)",
    )
    mode: Literal["live", "replay"] | None = Field(
        None,
        description="live: freshest frame wins; replay: every frame in order (default: replay for files and bags)",
    )
    realtime: bool = Field(True, description="replay files at their own fps (like a camera)")
    loop: bool = Field(False, description="replay files in a loop")
    detect_fps: float | None = Field(
        None, gt=0, le=1000, description="frames per second to process (default: every frame)"
    )
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport")
    decode_threading: Literal["slice", "frame", "auto", "none"] = Field(
        "slice",
        description="FFmpeg decoder threading: slice (default; no added latency), frame/auto (more throughput "
        "for one big stream, but frames come out a few frames later), none",
    )
    open_timeout_s: float = Field(10.0, gt=0, le=_DAY_S)
    read_timeout_s: float = Field(5.0, gt=0, le=_DAY_S)
    stall_timeout_s: float | None = Field(
        None, gt=0, le=_DAY_S, description="no frame for this long = stalled (default from fps)"
    )
    reconnect_min_s: float = Field(1.0, gt=0, le=3600)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    analytics: AnalyticsSpec | None = Field(
        None,
        description="zones, lines, calibration (README: Analytics); also GET/PUT /streams/{id}/analytics",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not STREAM_ID.fullmatch(v):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v or len(v) > 2048:
            raise ValueError("must be 1-2048 characters")
        return _printable(v, "a stream url")

    @property
    def is_file(self) -> bool:
        return ("://" not in self.url and self.url != "whip") or self.url.startswith("file://")

    @property
    def is_whip(self) -> bool:
        return self.url == "whip"

    @property
    def effective_mode(self) -> str:
        if self.mode:
            return self.mode
        return "replay" if self.is_file else "live"

    def safe_url(self) -> str:
        return redact_url(self.url)


class ClusterConfig(_Section):
    shards: int = Field(
        1, ge=1, le=1024, description="instances sharing the stream list (rendezvous hashing)"
    )
    shard: int | None = Field(
        None, ge=0, le=1023,
        description="this instance's shard (default: the StatefulSet ordinal, the hostname's -N suffix)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _shard(self) -> ClusterConfig:
        if self.shard is not None and self.shard >= self.shards:
            raise ValueError(f"shard {self.shard} is not below shards ({self.shards})")
        return self

    def resolve(self, hostname: str) -> int:
        """This instance's shard; ``ConfigError`` when it cannot be known."""
        from service.rules.sharding import ordinal

        if self.shard is not None:
            return self.shard
        if self.shards == 1:
            return 0
        n = ordinal(hostname)
        if n is None or n >= self.shards:
            raise ConfigError(
                f"cluster.shard: not set, and the hostname {hostname!r} has no StatefulSet ordinal below "
                f"{self.shards} (set TRACKCAST_CLUSTER__SHARD, e.g. from the pod-index label)"
            )
        return n


def _default_detector() -> MotionDetectorConfig:
    return MotionDetectorConfig()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACKCAST_", env_nested_delimiter="__", extra="forbid",
                                      allow_inf_nan=False)  # fmt: skip

    instance: str = Field(default_factory=lambda: socket.gethostname().split(".")[0] or "trackcast",
                          description="instance name (service status topic, MQTT client id)")  # fmt: skip
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    detector: DetectorConfig = Field(default_factory=_default_detector)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    http: HttpConfig = Field(default_factory=HttpConfig)
    batcher: BatcherConfig = Field(default_factory=BatcherConfig)
    webrtc: WebRtcConfig = Field(default_factory=WebRtcConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    streams: list[StreamConfig] = Field(default_factory=list)
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log verbosity")

    @field_validator("instance")
    @classmethod
    def _instance(cls, v: str) -> str:
        if not STREAM_ID.fullmatch(v):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-'")
        return v

    @model_validator(mode="after")
    def _unique_streams(self) -> Settings:
        seen: set[str] = set()
        for s in self.streams:
            if s.id in seen:
                raise ValueError(f"duplicate stream id {s.id!r}")
            seen.add(s.id)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables win over the file (init kwargs carry the file's content).
        return env_settings, init_settings


def _format_errors(exc: ValidationError, origin: str) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(
            str(x)
            for x in e["loc"]
            if not (isinstance(x, str) and x in ("onnx", "sagemaker", "motion", "fake"))
        )
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc or '(top level)'}: {msg}")
    return f"invalid config ({origin}): " + "; ".join(parts)


def load_settings(
    path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Read a YAML config (optional), apply env overrides; ``ConfigError`` names the bad key."""
    data: dict[str, Any] = {}
    origin = "environment"
    if path is not None:
        p = Path(path)
        origin = str(p)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config {p}: {exc.strerror or exc}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config {p} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {p}: the top level must be a mapping (mqtt:, detector:, streams: ...)")
        data = loaded
    if overrides:
        data = {**data, **overrides}
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from exc


def parse_stream(raw: Any) -> StreamConfig:
    """A stream from the HTTP API; ``ConfigError`` names the bad key."""
    try:
        return StreamConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, "stream")) from exc
