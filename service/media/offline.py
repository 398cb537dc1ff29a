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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from detector_client.base import Detector, InputSpec, PreparedFrame
from service.media.annotate import Annotator, Overlay
from service.media.video import ended_early, open_video, prepare_frame, to_bgr
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


class Frames:
    """A recording's frames for the offline loops: a video file (PyAV), or an image topic of a ROS bag.

    Iterating gives ``(index, prepared, bgr or None, t)`` in order: the frame letterboxed for the
    detector, the BGR image when ``want_image``, its time in seconds (a video's pts, a bag message's
    record time since the topic's first). ``decoded`` counts what came; ``expected`` is what the
    container says it holds (0: unknown). ``SourceError`` for anything wrong with the recording.
    """

    def __init__(self, video: str, spec: InputSpec, want_image: bool = False, max_frames: int | None = None,
                 topic: str | None = None) -> None:  # fmt: skip
        from service.errors import SourceError
        from service.media.bag import Bag, is_bag

        self.video, self.spec, self.want_image, self.max_frames = video, spec, want_image, max_frames
        self.decoded = 0
        self._bag: Bag | None = None
        self._container: Any = None
        if is_bag(video):
            self._bag = Bag(video)
            try:
                info = self._bag.image_topic(topic)
                first = self._bag.first_frame(info.topic)
            except BaseException:
                self._bag.close()
                raise
            self.topic = info.topic
            self.fps = info.rate_hz or 30.0
            self.height, self.width = first.image.shape[:2]
            self.expected = info.count
            return
        if topic is not None:
            raise SourceError(video, "--topic is for ROS bags; this is a video file")
        self._container = open_video(video)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self.width, self.height = stream.codec_context.width, stream.codec_context.height
        self.expected = stream.frames or 0
        self._stream = stream

    def __enter__(self) -> Frames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._bag is not None:
            self._bag.close()
        if self._container is not None:
            self._container.close()

    def __iter__(self) -> Iterator[tuple[int, PreparedFrame, np.ndarray | None, float | None]]:
        if self._bag is not None:
            t0: int | None = None
            for f in self._bag.frames(self.topic, self.max_frames):
                t0 = f.t_ns if t0 is None else t0
                self.decoded = f.index
                prepared = self.spec.prepare(f.image, stream="video", index=f.index)
                yield f.index, prepared, f.image if self.want_image else None, (f.t_ns - t0) / 1e9
            return
        import av

        from service.errors import SourceError

        # Frame times as the service's sources compute them (the same floats: the same analytics).
        tb = float(self._stream.time_base) if self._stream.time_base else None
        try:
            for frame in self._container.decode(self._stream):
                self.decoded += 1
                yield (
                    self.decoded,
                    prepare_frame(frame, self.spec, stream="video", index=self.decoded),
                    to_bgr(frame) if self.want_image else None,
                    None if frame.pts is None or not tb else frame.pts * tb,
                )
                if self.max_frames is not None and self.decoded >= self.max_frames:
                    return
        except av.error.FFmpegError as exc:
            raise SourceError(self.video, f"decode failed after {self.decoded} frames: {exc}") from exc

    def check_complete(self, note: str = "") -> None:
        """``SourceError`` if the recording ended before the frames its container announced."""
        from service.errors import SourceError

        if self.max_frames is None and ended_early(self.decoded, self.expected):
            raise SourceError(self.video, f"ended early: {self.decoded} of its {self.expected} frames decoded "
                                          f"(truncated or damaged){note}")  # fmt: skip


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
    topic: str | None = None,
) -> Summary:
    """Track every frame of ``video`` (a video file, or a ROS bag's image ``topic``); writes MOT rows
    to ``out_txt`` (and video/summary if asked).

    With ``analytics``: ``<out_txt stem>.analytics.csv`` (per frame and track: ground position,
    speed, distance, zones) and ``<out_txt stem>.events.jsonl`` (zone and line events, as the
    service publishes them), and the summary's ``tracks``, ``lines`` and ``zones``.
    """
    t_start = time.perf_counter()
    source = Frames(
        video, detector.spec, want_image=out_video is not None, max_frames=max_frames, topic=topic
    )
    summary = Summary(video=Path(video).name)
    try:
        fps = source.fps
        summary.fps, summary.width, summary.height = fps, source.width, source.height
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
        bar = tqdm(total=source.expected or None, unit="frame", disable=not (progress and sys.stderr.isatty()),
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

            for index, prepared, img, t in source:
                pending.append((prepared, img, t))
                if len(pending) >= detector.max_batch:
                    flush()
                bar.update(1)
                if on_frame is not None:
                    on_frame(index)
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
        summary.frames = source.decoded
    finally:
        source.close()
    summary.track_ids = len(lengths)
    summary.seconds = round(time.perf_counter() - t_start, 3)
    summary.processing_fps = round(summary.frames / max(summary.seconds, 1e-9), 2)
    top = sorted(lengths.items(), key=lambda kv: kv[1][0] - kv[1][1])[:10]
    summary.longest_tracks = [{"id": k, "first_frame": a, "last_frame": b} for k, (a, b) in top]
    summary.outputs["tracks"] = str(out_txt)
    if summary_path:
        summary.outputs["summary"] = str(summary_path)
        Path(summary_path).write_text(summary.to_json())
    source.check_complete(f"; the results of those frames were written to {out_txt}")
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
    video: str,
    detector: Detector,
    out_txt: str | Path,
    max_frames: int | None = None,
    topic: str | None = None,
) -> LoopStats:
    """Detect every frame of ``video`` (or a ROS bag's image ``topic``; batches of ``detector.max_batch``);
    write det.txt rows.

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

        with Frames(video, detector.spec, max_frames=max_frames, topic=topic) as source:
            for _index, prepared, _img, _t in source:
                batch.append(prepared)
                stats.frames += 1
                if len(batch) >= detector.max_batch:
                    flush()
            if batch:
                flush()
            source.check_complete()
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


@dataclass
class FollowSummary:
    video: str
    frames: int = 0
    by_source: dict[str, int] = field(
        default_factory=dict
    )  # frames whose box came from "track" / "sot" / none
    lost_at: int | None = None  # the first frame it was declared lost
    seconds: float = 0.0
    sot_ms: float = 0.0  # mean single-object tracker time a frame
    outputs: dict[str, str] = field(default_factory=dict)


def follow_video(
    video: str,
    box: tuple[float, float, float, float],
    out_jsonl: str | Path,
    detector: Detector | None = None,
    tracker_config: TrackerConfig | None = None,
    start_frame: int = 1,
    max_frames: int | None = None,
    sot: str = "kcf",
    topic: str | None = None,
    out_video: str | Path | None = None,
) -> FollowSummary:
    """Follow the object in ``box`` (x, y, w, h at ``start_frame``) through ``video``: one JSON line per
    frame from ``start_frame`` on (``{"frame", "box": [x1, y1, x2, y2] or null, "state", "source",
    "track_id"}``). With a ``detector`` the multi-object tracker runs too and re-acquires the object
    (``service.rules.follow``) with the ids ``trackcast track`` gives (it tracks from frame 1); without
    one, the single-object tracker alone follows it."""
    from detector_client.base import InputSpec
    from service.errors import SourceError
    from service.media import sot as sots
    from service.rules.follow import Follower

    t_start = time.perf_counter()
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise SourceError(video, f"--box {x:g},{y:g},{w:g},{h:g}: width and height must be positive")
    spec = detector.spec if detector is not None else InputSpec(height=32, width=32)
    source = Frames(video, spec, want_image=True, max_frames=max_frames, topic=topic)
    summary = FollowSummary(video=Path(video).name)
    single = sots.create(sot)
    follower = Follower((x, y, x + w, y + h))
    tracker = None
    if detector is not None:
        c = tracker_config or TrackerConfig()
        tracker = ByteTracker(
            TrackerConfig(c.track_thresh, c.track_buffer, c.match_thresh, c.mot20, source.fps, c.per_class)
        )
    writer = VideoWriter(out_video, source.width, source.height, source.fps) if out_video else None
    sot_s = 0.0
    pending: list[tuple[PreparedFrame, np.ndarray]] = []
    Path(out_jsonl).parent.mkdir(parents=True, exist_ok=True)
    try:
        if not (0 <= x < source.width and 0 <= y < source.height):
            raise SourceError(
                video, f"--box starts at {x:g},{y:g}, outside the {source.width}x{source.height} frame"
            )
        with open(out_jsonl, "w") as out:

            def flush() -> None:
                nonlocal sot_s
                dets = (
                    detector.detect_sync([p for p, _ in pending])
                    if detector is not None
                    else [None] * len(pending)
                )
                for (prep, img), d in zip(pending, dets, strict=True):
                    ids: list[int] = []
                    boxes: list[tuple[float, float, float, float]] = []
                    if tracker is not None and d is not None:
                        tracks = tracker.update(d.rows, frame_index=prep.index)
                        ids = tracks.ids.tolist()
                        boxes = [(b[0], b[1], b[2], b[3]) for b in tracks.xyxy.tolist()]
                    if prep.index < start_frame:  # tracked from frame 1: the ids of `trackcast track`
                        continue
                    t0 = time.perf_counter()
                    sot_box: tuple[float, float, float, float] | None = follower.box
                    if prep.index == start_frame:
                        single.init(img, follower.box)
                    else:
                        r = single.update(img)
                        sot_box = None if r is None else r[0]
                    step = follower.step(sot_box, ids, boxes)
                    if step.reseed is not None:
                        single.init(img, step.reseed)
                    sot_s += time.perf_counter() - t0
                    if step.state == "lost" and summary.lost_at is None:
                        summary.lost_at = prep.index
                    key = step.source or "none"
                    summary.by_source[key] = summary.by_source.get(key, 0) + 1
                    summary.frames += 1
                    out.write(json.dumps({"frame": prep.index, "box": None if step.box is None else [round(v, 2) for v in step.box],
                                          "state": step.state, "source": step.source, "track_id": step.track_id}) + "\n")  # fmt: skip
                    if writer is not None:
                        import cv2

                        shown = img.copy()
                        if step.box is not None:
                            b = [round(v) for v in step.box]
                            cv2.rectangle(
                                shown,
                                (b[0], b[1]),
                                (b[2], b[3]),
                                (0, 0, 255) if step.source == "sot" else (0, 200, 0),
                                3,
                            )
                        writer.write(shown)
                pending.clear()

            for index, prepared, img, _t in source:
                if index < start_frame and detector is None:
                    continue
                assert img is not None
                pending.append((prepared, img))
                if len(pending) >= (detector.max_batch if detector is not None else 1):
                    flush()
            if pending:
                flush()
        if summary.frames == 0:
            raise SourceError(video, f"has {source.decoded} frames: no frame {start_frame} to start from")
    finally:
        source.close()
        if writer is not None:
            writer.close()
            summary.outputs["video"] = str(out_video)
    summary.outputs["follow"] = str(out_jsonl)
    summary.seconds = round(time.perf_counter() - t_start, 3)
    summary.sot_ms = round(sot_s * 1000 / max(1, summary.frames), 2)
    return summary
