"""Motion backend on rendered frames: boxes where players move, scores usable by the tracker."""

from __future__ import annotations

import numpy as np

from detector_client import MotionDetectorConfig, create_detector
from service.media.synthetic import Scene, pitch, render
from tracker import ByteTracker, TrackerConfig


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def test_motion_boxes_follow_moving_players_and_feed_the_tracker() -> None:
    det = create_detector(MotionDetectorConfig())
    scene = Scene(players=6, seed=3)
    bg = pitch(scene.width, scene.height)
    tracker = ByteTracker(TrackerConfig(frame_rate=25))
    recalls, precisions, strong = [], [], []
    for f in range(1, 151):
        ids, boxes = scene.step()
        frame = det.spec.prepare(render(bg, ids, boxes), stream="cam", index=f)
        [d] = det.detect_sync([frame])
        tracks = tracker.update(d.rows, frame_index=f)
        if f > 30 and len(d):
            iou = _iou(boxes, d.xyxy)
            recalls.append((iou.max(axis=1) > 0.5).mean())
            precisions.append((iou.max(axis=0) > 0.3).mean())
            strong.append(
                float(np.mean(d.scores[iou.max(axis=0) > 0.5])) if (iou.max(axis=0) > 0.5).any() else 0.0
            )
    assert np.mean(recalls) > 0.7, np.mean(recalls)
    assert np.mean(precisions) > 0.8, np.mean(precisions)
    assert np.mean(strong) > 0.6, "a solid player-sized blob scores above track_thresh + 0.1"
    assert len(tracks) >= 4


def test_static_scene_has_no_detections_and_streams_are_independent() -> None:
    det = create_detector(MotionDetectorConfig())
    bg = pitch(640, 360)
    scene = Scene(width=640, height=360, players=3, seed=1)
    moving_found = 0
    for f in range(60):
        [still] = det.detect_sync([det.spec.prepare(bg, stream="empty", index=f)])
        assert len(still) == 0
        ids, boxes = scene.step()
        [moving] = det.detect_sync([det.spec.prepare(render(bg, ids, boxes), stream="busy", index=f)])
        moving_found += len(moving) > 0
    assert moving_found > 40


def test_detect_cli_motion_backend(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import cv2

    from tests.conftest import run_trackcast
    from tracker.mot import read_mot

    scene = Scene(width=640, height=360, players=4, seed=2)
    bg = pitch(640, 360)
    video = tmp_path / "scene.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 360))
    for _ in range(50):
        ids, boxes = scene.step()
        writer.write(render(bg, ids, boxes))
    writer.release()
    out = tmp_path / "det.txt"
    res = run_trackcast("detect", str(video), "--detector", "motion", "--out", str(out))
    assert res.returncode == 0, res.stderr
    det = read_mot(out)
    assert len(det) > 100 and det[:, 0].min() > 5  # nothing during the background warm-up
