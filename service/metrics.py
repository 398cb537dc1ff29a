"""Prometheus metrics of the service. The registry is passed in; a removed stream's series go with it.

Latency histograms share one bucket layout (milliseconds-scale, in seconds). Per-stage histograms
are labelled by stream so a slow camera or a slow stage is visible at once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
DWELL_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
ANALYTICS_EVENTS = ("zone_entered", "zone_exited", "loitering", "line_crossed")
STAGES = ("decode", "queue", "detect", "track", "publish")
DROP_CAUSES = ("superseded", "sampling", "late", "detector_error", "internal_error", "shutdown")


@dataclass(slots=True)
class StreamMetrics:
    """One stream's labelled series, looked up once (``labels()`` costs a lock and a dict lookup)."""

    received: Any
    processed: Any
    sampling: Any
    superseded: Any
    active: Any
    decode: Any
    queue: Any
    detect: Any
    track: Any
    publish: Any
    e2e: Any


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.frames_received = Counter(
            "trackcast_frames_received", "Frames decoded from the source", ["stream"], registry=r
        )
        self.frames_processed = Counter(
            "trackcast_frames_processed", "Frames detected and tracked, in order", ["stream"], registry=r
        )
        self.frames_dropped = Counter(
            "trackcast_frames_dropped",
            "Frames not tracked, by cause: superseded (a newer live frame replaced it), sampling (detect_fps), "
            "late (detection arrived after later frames were tracked), detector_error, shutdown",
            ["stream", "cause"],
            registry=r,
        )
        self.reconnects = Counter(
            "trackcast_stream_reconnects", "Source reconnect attempts", ["stream"], registry=r
        )
        self.stream_up = Gauge(
            "trackcast_stream_up", "1 while the source delivers frames", ["stream"], registry=r
        )
        self.active_tracks = Gauge(
            "trackcast_active_tracks", "Confirmed tracks in the last frame", ["stream"], registry=r
        )
        self.stage_seconds = Histogram(
            "trackcast_stage_seconds",
            "Time per frame in each stage: decode, queue (waiting for a batch), detect, track, publish",
            ["stream", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e_seconds = Histogram(
            "trackcast_end_to_end_seconds",
            "Capture (decode) to MQTT publish of a frame's tracks",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "trackcast_detector_batch_size",
            "Frames per detector call",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
            registry=r,
        )
        self.detector_errors = Counter(
            "trackcast_detector_errors", "Detector failures by error type", ["type"], registry=r
        )
        self.detector_inflight = Gauge(
            "trackcast_detector_inflight", "Detector batches in flight", registry=r
        )
        self.outbox_depth = Gauge(
            "trackcast_mqtt_outbox_depth", "Messages waiting for the broker", ["kind"], registry=r
        )
        self.mqtt_dropped = Counter(
            "trackcast_mqtt_dropped", "Messages dropped because the outbox was full", ["kind"], registry=r
        )
        self.mqtt_published = Counter("trackcast_mqtt_published", "Messages published", ["kind"], registry=r)
        self.mqtt_connected = Gauge("trackcast_mqtt_connected", "1 while connected to the broker", registry=r)
        self.track_events = Counter("trackcast_track_events", "Track events", ["stream", "event"], registry=r)
        self.internal_errors = Counter(
            "trackcast_internal_errors",
            "Core loops (batcher, mqtt, housekeeping) restarted after a bug",
            ["loop"],
            registry=r,
        )
        self.stream_errors = Counter(
            "trackcast_stream_errors",
            "Frames a stream could not process because of a bug (its tracker restarts; the stream goes on)",
            ["stream"],
            registry=r,
        )
        for loop in ("batcher", "mqtt", "housekeeping"):
            self.internal_errors.labels(loop)  # at zero from the start, for alerts
        self.zone_occupancy = Gauge(
            "trackcast_zone_occupancy", "Tracks inside an analytics zone", ["stream", "zone"], registry=r
        )
        self.line_crossings = Counter(
            "trackcast_line_crossings", "Tracks that crossed an analytics line", ["stream", "line", "direction"],
            registry=r,
        )  # fmt: skip
        self.zone_dwell = Histogram(
            "trackcast_zone_dwell_seconds", "Time a track stayed in a zone (observed when it exits)",
            ["stream", "zone"], buckets=DWELL_BUCKETS, registry=r,
        )  # fmt: skip
        # The analytics series each stream has (its zones and lines change at run time).
        self._analytics: dict[str, tuple[list[str], list[str]]] = {}

    def set_analytics(self, stream: str, zones: list[str], lines: list[str]) -> None:
        """A stream's analytics changed: its old zone and line series go, the new ones start at zero."""
        self.remove_analytics(stream)
        for z in zones:
            self.zone_occupancy.labels(stream, z).set(0)
            self.zone_dwell.labels(stream, z)
        for ln in lines:
            for d in ("in", "out"):
                self.line_crossings.labels(stream, ln, d)
        self._analytics[stream] = (zones, lines)
        for ev in ANALYTICS_EVENTS:
            self.track_events.labels(stream, ev)

    def remove_analytics(self, stream: str) -> None:
        zones, lines = self._analytics.pop(stream, ([], []))
        for z in zones:
            for m in (self.zone_occupancy, self.zone_dwell):
                with contextlib.suppress(KeyError):
                    m.remove(stream, z)
        for ln in lines:
            for d in ("in", "out"):
                with contextlib.suppress(KeyError):
                    self.line_crossings.remove(stream, ln, d)

    def add_stream(self, stream: str) -> None:
        """Create a stream's series at zero so they show up before the first frame."""
        self.frames_received.labels(stream)
        self.frames_processed.labels(stream)
        for cause in DROP_CAUSES:
            self.frames_dropped.labels(stream, cause)
        self.reconnects.labels(stream)
        self.stream_errors.labels(stream)
        self.stream_up.labels(stream).set(0)
        self.active_tracks.labels(stream).set(0)
        for ev in ("track_started", "track_ended"):
            self.track_events.labels(stream, ev)

    def children(self, stream: str) -> StreamMetrics:
        st = self.stage_seconds
        return StreamMetrics(
            self.frames_received.labels(stream), self.frames_processed.labels(stream),
            self.frames_dropped.labels(stream, "sampling"), self.frames_dropped.labels(stream, "superseded"),
            self.active_tracks.labels(stream), st.labels(stream, "decode"), st.labels(stream, "queue"),
            st.labels(stream, "detect"), st.labels(stream, "track"), st.labels(stream, "publish"),
            self.e2e_seconds.labels(stream),
        )  # fmt: skip

    def remove_stream(self, stream: str) -> None:
        """Forget every series of a removed stream."""
        for m in (self.frames_received, self.frames_processed, self.reconnects, self.stream_up, self.active_tracks,
                  self.e2e_seconds, self.stream_errors):  # fmt: skip
            with contextlib.suppress(KeyError):
                m.remove(stream)
        for cause in DROP_CAUSES:
            with contextlib.suppress(KeyError):
                self.frames_dropped.remove(stream, cause)
        for stage in STAGES:
            with contextlib.suppress(KeyError):
                self.stage_seconds.remove(stream, stage)
        for ev in ("track_started", "track_ended", *ANALYTICS_EVENTS):
            with contextlib.suppress(KeyError):
                self.track_events.remove(stream, ev)
        self.remove_analytics(stream)
