"""The peer side of the service benchmark: Roboflow inference's ``InferencePipeline`` on the same clips.

Run by ``loadtest.bench_service --peer PYTHON`` with the peer's own virtual environment (``make
bench`` makes ``.venv-peer`` with ``inference-cpu``: its dependencies, torch among them, do not
belong in trackcast's), from the repository root so that it uses trackcast's fake detector logic:

    .venv-peer/bin/python -m loadtest.bench_peer --port P --seconds 10 [--live] CLIP...

The closest open-source multi-stream pipeline, doing what the service does per frame: decode
(its own video sources, one thread each), a batch of the sources' frames to
``on_video_frame`` (trackcast's ``FakeDetector``: the same fixed latency per batch, the same
boxes), ByteTrack per source (supervision's, the peer's own tracker), then a sink that publishes a
JSON tracks message per frame to MQTT (paho-mqtt), like trackcast's. Prints one JSON line:
frames processed over the measured seconds (after a warm-up); with ``--live`` the pipeline is
paced by its own ``max_fps`` (25) and the caller reads the messages' times back from MQTT. Its
``frame_timestamp`` is not the wall clock for files, so a frame's "capture" time is when it
reaches ``on_video_frame``: its decode and queueing are not counted (in the peer's favour).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("clips", nargs="+")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--boxes", type=int, default=10)
    p.add_argument("--live", action="store_true", help="paced at 25 frames/s per source (max_fps)")
    args = p.parse_args()
    if len(args.clips) < 2:  # with one source InferencePipeline calls the sink with a frame, not a list
        p.error("give at least 2 clips (the comparison is multi-stream)")

    import numpy as np
    import paho.mqtt.client as mqtt
    import supervision as sv
    from inference import InferencePipeline

    from detector_client.base import PreparedFrame
    from detector_client.fake import FakeDetector

    det = FakeDetector(latency_ms=args.latency_ms, boxes=args.boxes, max_batch=len(args.clips))
    trackers: dict[int, Any] = {}
    client = mqtt.Client(client_id=f"peer-{time.monotonic_ns()}")
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    counts: dict[str, float] = {"frames": 0, "last": 0.0}
    lock = threading.Lock()
    measuring = threading.Event()
    blank = np.zeros((1, 1, 3), np.uint8)

    def on_video_frame(frames: list[Any]) -> list[Any]:
        # Its frame_timestamp is not the wall clock for files: the time the frames reach this
        # step stands for their capture (their decode and queueing not counted: in its favour).
        arrived = time.time()
        t0 = time.perf_counter()
        dets = det.detect_sync(
            [
                PreparedFrame(blank, 1.0, f.image.shape[1], f.image.shape[0], str(f.source_id), f.frame_id)
                for f in frames
            ]
        )
        dt = time.perf_counter() - t0
        out = []
        for f, d in zip(frames, dets, strict=True):
            # supervision's own ByteTrack (deprecated in favour of the separate `trackers` package,
            # still in the version inference 1.8.3 pins; not in the version trackcast's bench extra has)
            tr: Any = trackers.get(f.source_id)
            if tr is None:
                tr = trackers[f.source_id] = sv.ByteTrack(frame_rate=25)  # type: ignore[attr-defined,unused-ignore]
            tracked = tr.update_with_detections(
                sv.Detections(xyxy=d.xyxy.copy(), confidence=d.scores.copy(), class_id=d.classes.copy())
            )
            out.append((tracked, dt, arrived))
        return out

    def on_prediction(predictions: list[Any], frames: list[Any]) -> None:
        for pred, f in zip(predictions, frames, strict=True):
            if pred is None or f is None:
                continue
            tracked, dt, arrived = pred
            body = {
                "stream": f"p{f.source_id}", "frame": f.frame_id, "capture_ts": arrived,
                "size": [f.image.shape[1], f.image.shape[0]], "latency_ms": {"detect": dt * 1000},
                "tracks": [{"id": int(i), "box": [round(float(v), 2) for v in b], "score": round(float(s), 4)}
                           for i, b, s in zip(tracked.tracker_id, tracked.xyxy, tracked.confidence, strict=True)],
            }  # fmt: skip
            client.publish(f"bench-peer/p{f.source_id}/tracks", json.dumps(body), qos=0)
            if measuring.is_set():
                with lock:
                    counts["frames"] += 1
                    counts["last"] = time.perf_counter()

    pipeline = InferencePipeline.init_with_custom_logic(
        video_reference=list(args.clips),
        on_video_frame=on_video_frame,
        on_prediction=on_prediction,
        max_fps=25 if args.live else None,
    )
    pipeline.start(use_main_thread=False)
    time.sleep(2.0)  # warm-up (its sources open and fill their buffers)
    measuring.set()
    t0 = time.perf_counter()
    time.sleep(args.seconds)
    with lock:
        n, last = counts["frames"], counts["last"]
    # Its file sources cannot loop: if they ended within the window, the rate is up to the last frame.
    elapsed = (last if time.perf_counter() - last > 0.5 else time.perf_counter()) - t0
    measuring.clear()
    pipeline.terminate()
    pipeline.join()
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"frames": n, "seconds": elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
