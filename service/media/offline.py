"""Offline tracking of a recorded video: every frame, in order, constant memory.

``track_video`` decodes with PyAV, letterboxes each frame for the detector, detects in batches,
updates one tracker per video in frame order (the service's components, the same way it uses
them for a replay stream), and streams out MOT results, an optional annotated video (H.264,
encoded on the fly) and a summary. Memory does not grow with the video's length. Used by
``trackcast track``, the SageMaker async handler and the processing job.

``detect_video`` (``trackcast detect``) writes a video's detections as MOTChallenge det.txt rows;
``track_detections`` (``trackcast track-dets``) tracks a det.txt and writes MOT results.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from detector_client.base import Detector, PreparedFrame
from service.media.annotate import Annotator, Overlay
from service.media.video import ended_early, iter_prepared, open_video, prepare_frame, to_bgr
from service.rules.analytics import Analytics, AnalyticsSpec, Resolved, TrackTotals
from tracker import ByteTracker, TrackerConfig
from tracker.mot import format_tracks, iter_frames, read_mot, write_lines


@dataclass
class Summary:
    video: str
    frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    detections: int = 0
    track_rows: int = 0
    track_ids: int = 0
    seconds: float = 0.0
    processing_fps: float = 0.0
    longest_tracks: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    # with analytics: per track (id, class, seconds, distance_m, max_speed_mps, mean_speed_mps,
    # zones: zone id -> seconds inside), per line {"in": n, "out": n}, per zone {"entered": n}
    tracks: list[dict[str, Any]] | None = None
    lines: dict[str, dict[str, int]] | None = None
    zones: dict[str, dict[str, int]] | None = None
    calibration: dict[str, float] | None = None

    def to_json(self) -> str:
        d = dict(self.__dict__)
        if self.tracks is None:  # no analytics
            for k in ("tracks", "lines", "zones", "calibration"):
                d.pop(k)
        return json.dumps(d, indent=2)


class VideoWriter:
    """H.264 MP4 writer (PyAV), frames written as they come."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float) -> None:
        from fractions import Fraction

        import av

        self.container = av.open(str(path), mode="w")
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width = width - width % 2
        self.stream.height = height - height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"preset": "veryfast", "crf": "23"}

    def write(self, bgr: np.ndarray) -> None:
        import av

        img = bgr[: self.stream.height, : self.stream.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def track_video(
    video: str,
    detector: Detector,
    tracker_config: TrackerConfig | None,
    out_txt: str | Path,
    frame_rate: float | None = None,
    out_video: str | Path | None = None,
    summary_path: str | Path | None = None,
    max_frames: int | None = None,
    progress: bool = False,
    on_frame: Callable[[int], None] | None = None,
    analytics: AnalyticsSpec | None = None,
) -> Summary:
    """Track every frame of ``video``; writes MOT rows to ``out_txt`` (and video/summary if asked).

    With ``analytics``: ``<out_txt stem>.analytics.csv`` (per frame and track: ground position,
    speed, distance, zones) and ``<out_txt stem>.events.jsonl`` (zone and line events, as the
    service publishes them), and the summary's ``tracks``, ``lines`` and ``zones``.
    """
    import av

    from service.errors import SourceError

    t_start = time.perf_counter()
    container = open_video(video)
    summary = Summary(video=Path(video).name)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        # Frame times as the service's sources compute them (the same floats: the same analytics).
        tb = float(stream.time_base) if stream.time_base else None
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 30.0
        summary.fps, summary.width, summary.height = (
            fps,
            stream.codec_context.width,
            stream.codec_context.height,
        )
        c = tracker_config or TrackerConfig()
        # The tracker runs at the rate frames are tracked: the video's, unless told otherwise.
        rate_used = frame_rate or fps
        tracker = ByteTracker(
            TrackerConfig(c.track_thresh, c.track_buffer, c.match_thresh, c.mot20, rate_used, c.per_class)
        )
        writer = VideoWriter(out_video, summary.width, summary.height, fps) if out_video else None
        annotator = Annotator(class_names=detector.class_names) if writer else None
        engine: Analytics | None = None
        totals: list[TrackTotals] = []
        csv_out = events_out = None
        if analytics is not None:
            # ConfigError (a zone outside this video's frame, a bad calibration) before any work.
            engine = Analytics(
                Resolved.of(analytics, summary.width, summary.height), "video", time.time(), 1 / fps
            )
            base = Path(out_txt).with_suffix("")
            summary.outputs["analytics"], summary.outputs["events"] = (
                f"{base}.analytics.csv",
                f"{base}.events.jsonl",
            )
            csv_out = open(summary.outputs["analytics"], "w")  # noqa: SIM115 - closed below
            csv_out.write("frame,id,class,ground_x,ground_y,speed_mps,distance_m,zones\n")
            events_out = open(summary.outputs["events"], "w")  # noqa: SIM115 - closed below
        bar = tqdm(total=stream.frames or None, unit="frame", disable=not (progress and sys.stderr.isatty()),
                   file=sys.stderr, leave=False)  # fmt: skip
        lengths: dict[int, list[int]] = {}
        pending: list[tuple[PreparedFrame, np.ndarray | None, float | None]] = []
        Path(out_txt).parent.mkdir(parents=True, exist_ok=True)
        with open(out_txt, "w") as out:

            def flush() -> None:
                dets = detector.detect_sync([p for p, _, _ in pending])
                for (prep, img, t), d in zip(pending, dets, strict=True):
                    tracks = tracker.update(d.rows, frame_index=prep.index)
                    values = None
                    if engine is not None:
                        values = _analytics_frame(engine, prep.index, t, tracks, csv_out, events_out, totals)
                    summary.detections += len(d)
                    lines = format_tracks(prep.index, tracks)
                    for line in lines:
                        out.write(line + "\n")
                    summary.track_rows += len(lines)
                    for tid in tracks.ids.tolist():
                        span = lengths.setdefault(tid, [prep.index, prep.index])
                        span[1] = prep.index
                    if writer is not None and annotator is not None and img is not None:
                        writer.write(
                            annotator.draw(
                                img, tracks, None if engine is None else Overlay.of(engine), values
                            )
                        )
                pending.clear()

            index = 0
            try:
                for frame in container.decode(stream):
                    index += 1
                    pending.append(
                        (
                            prepare_frame(frame, detector.spec, stream="video", index=index),
                            to_bgr(frame) if writer else None,
                            None if frame.pts is None or not tb else frame.pts * tb,
                        )
                    )
                    if len(pending) >= detector.max_batch:
                        flush()
                    bar.update(1)
                    if on_frame is not None:
                        on_frame(index)
                    if max_frames is not None and index >= max_frames:
                        break
            except av.error.FFmpegError as exc:
                raise SourceError(video, f"decode failed after {index} frames: {exc}") from exc
            if pending:
                flush()
            if engine is not None:
                _analytics_end(engine, summary, events_out, totals)
        bar.close()
        for f in (csv_out, events_out):
            if f is not None:
                f.close()
        if writer is not None:
            writer.close()
            summary.outputs["video"] = str(out_video)
        summary.frames = index
        expected = stream.frames or 0
    finally:
        container.close()
    summary.track_ids = len(lengths)
    summary.seconds = round(time.perf_counter() - t_start, 3)
    summary.processing_fps = round(summary.frames / max(summary.seconds, 1e-9), 2)
    top = sorted(lengths.items(), key=lambda kv: kv[1][0] - kv[1][1])[:10]
    summary.longest_tracks = [{"id": k, "first_frame": a, "last_frame": b} for k, (a, b) in top]
    summary.outputs["tracks"] = str(out_txt)
    if summary_path:
        summary.outputs["summary"] = str(summary_path)
        Path(summary_path).write_text(summary.to_json())
    if max_frames is None and ended_early(index, expected):
        raise SourceError(video, f"ended early: {index} of its {expected} frames decoded (truncated or damaged); "
                                 f"the results of those frames were written to {out_txt}")  # fmt: skip
    return summary


def _analytics_frame(
    engine: Analytics, index: int, t: float | None, tracks: Any, csv_out: Any, events_out: Any,
    totals: list[TrackTotals],
) -> list[dict[str, Any]]:  # fmt: skip
    values, events, ended = engine.update(index, t, tracks.ids.tolist(), tracks.xyxy, tracks.classes.tolist(),
                                          tracks.ended_ids.tolist(), time.time())  # fmt: skip
    totals += ended
    for tid, c, v in zip(tracks.ids.tolist(), tracks.classes.tolist(), values, strict=True):
        g = v.get("ground")
        sp = v.get("speed")
        dist = v.get("distance")
        csv_out.write(f"{index},{tid},{c},{'' if g is None else g[0]},{'' if g is None else g[1]},"
                      f"{'' if sp is None else sp},{'' if dist is None else dist},{';'.join(v['zones'])}\n")  # fmt: skip
    for e in events:
        events_out.write(json.dumps(e, separators=(",", ":")) + "\n")
    return values


def _analytics_end(engine: Analytics, summary: Summary, events_out: Any, totals: list[TrackTotals]) -> None:
    """The end of the video: open visits exit (reason ``end of video``); totals into the summary."""
    events, ended = engine.end_all("end of video", time.time())
    for e in events:
        events_out.write(json.dumps(e, separators=(",", ":")) + "\n")
    totals += ended

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    summary.tracks = [
        {"id": t.id, "class": t.cls, "seconds": round(t.seconds, 3), "distance_m": r(t.distance_m),
         "max_speed_mps": r(t.max_speed_mps), "mean_speed_mps": r(t.mean_speed_mps),
         "zones": {z: round(s, 3) for z, s in t.zones.items()}}
        for t in sorted(totals, key=lambda t: t.id)
    ]  # fmt: skip
    state = engine.state(time.time())
    summary.lines = state["lines"]
    summary.zones = {z: {"entered": v["entered"]} for z, v in state["zones"].items()}
    summary.calibration = state["calibration"]


@dataclass
class LoopStats:
    frames: int = 0
    rows: int = 0
    seconds: float = 0.0
    invalid: int = 0  # detections dropped for NaN/inf values or non-positive size (track-dets)


def detect_video(
    video: str, detector: Detector, out_txt: str | Path, max_frames: int | None = None
) -> LoopStats:
    """Detect every frame of ``video`` (batches of ``detector.max_batch``); write det.txt rows.

    Raises ``SourceError`` (the video) or ``DetectorError`` (the model).
    """
    stats = LoopStats()
    t0 = time.perf_counter()
    out_path = Path(out_txt)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    batch: list[PreparedFrame] = []
    with out_path.open("w") as out:

        def flush() -> None:
            for f, d in zip(batch, detector.detect_sync(batch), strict=True):
                for x1, y1, x2, y2, s, c in d.rows.tolist():
                    out.write(  # the class in column 8 (MOT's "x" world coordinate, -1 in det.txt)
                        f"{f.index},-1,{x1:.4f},{y1:.4f},{x2 - x1:.4f},{y2 - y1:.4f},{s:.4f},{int(c)},-1,-1\n"
                    )
                    stats.rows += 1
            batch.clear()

        for prepared in iter_prepared(video, detector.spec, max_frames):
            batch.append(prepared)
            stats.frames += 1
            if len(batch) >= detector.max_batch:
                flush()
        if batch:
            flush()
    stats.seconds = time.perf_counter() - t0
    return stats


def track_detections(
    det_txt: str | Path, config: TrackerConfig, out_txt: str | Path, frames: int | None = None
) -> LoopStats:
    """Track a MOTChallenge det.txt frame by frame; write MOT results. Raises ``MotFormatError``."""
    det = read_mot(det_txt)
    tracker = ByteTracker(config)
    out_path = Path(out_txt)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    stats = LoopStats()
    t0 = time.perf_counter()
    with out_path.open("w") as out:
        for frame, dets in iter_frames(det, frames):
            lines = format_tracks(frame, tracker.update(dets, frame_index=frame))
            write_lines(out, lines)
            stats.rows += len(lines)
            stats.frames += 1
    stats.seconds = time.perf_counter() - t0
    stats.invalid = tracker.invalid_total
    return stats
