"""ROS bags (written by rosbags' own writers) as a source: decoding, `track`/`detect` on a bag, `bag list`,
`bag extract` (resumable, local and S3), and `serve` replaying a bag frame for frame."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from service.errors import SourceError
from service.media.bag import Bag
from tests.bags import write_bag
from tests.conftest import AWS_REGION, SHARED_DATA, aws_client, run_trackcast
from tests.infra import Collector, Mosquitto, ServiceProc, wait_for

MODEL = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
PED = SHARED_DATA / "video" / "pedestrians_720p25.mp4"
N = 24  # frames of the plaza clip in the bags


def scene(h: int = 96, w: int = 128, shift: int = 0) -> np.ndarray:
    """A smooth colourful frame (demosaicing and JPEG keep it close), moving with ``shift``."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 2 + shift) % 256, (yy * 2) % 256, ((xx + yy) + 3 * shift) % 256], -1).astype(
        np.uint8
    )
    cv2.circle(img, (40 + shift, 50), 20, (20, 200, 60), -1)
    return cv2.GaussianBlur(img, (5, 5), 0)


@pytest.fixture(scope="module")
def plaza() -> list[np.ndarray]:
    if not PED.is_file():
        pytest.skip(f"../shared is absent (looked for {PED})")
    from service.media.video import iter_frames

    return [f.image for f in iter_frames(str(PED), N)]


@pytest.mark.parametrize("ros", [1, 2])
def test_every_encoding_decodes_to_the_frame_that_was_recorded(tmp_path: Path, ros: int) -> None:
    frames = [scene(shift=3 * i) for i in range(4)]
    for enc in (
        "bgr8",
        "rgb8",
        "mono8",
        "bayer_rggb8",
        "bayer_bggr8",
        "bayer_gbrg8",
        "bayer_grbg8",
        "jpeg",
        "png",
    ):
        path = write_bag(
            tmp_path / f"{enc}{'.bag' if ros == 1 else ''}", frames, ros=ros, encoding=enc, fps=10
        )
        with Bag(str(path)) as bag:
            info = bag.image_topic(None)  # the camera, not the /status topic beside it
            assert (info.topic, info.count, info.rate_hz) == ("/camera/image", 4, 10.0)
            got = list(bag.frames(info.topic))
        assert [f.index for f in got] == [1, 2, 3, 4]
        assert [f.t_ns - got[0].t_ns for f in got] == [0, 100_000_000, 200_000_000, 300_000_000], enc
        assert all(f.stamp_ns == f.t_ns for f in got), "the header stamp is read"
        for f, want in zip(got, frames, strict=True):
            assert f.image.shape == want.shape and f.image.dtype == np.uint8
            if enc in ("bgr8", "rgb8", "png"):
                assert np.array_equal(f.image, want), enc
            elif enc == "mono8":
                assert np.array_equal(
                    f.image, cv2.cvtColor(cv2.cvtColor(want, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
                )
            elif enc == "jpeg":
                _ok, buf = cv2.imencode(".jpg", want)
                assert np.array_equal(f.image, cv2.imdecode(buf, cv2.IMREAD_COLOR))
            else:  # demosaiced: close to the scene, colours in the right channels
                err = np.abs(f.image.astype(int) - want.astype(int)).mean(axis=(0, 1))
                assert err.max() < 6, f"{enc}: mean error per channel {err}"


def test_a_bag_of_the_clip_tracks_exactly_as_the_clip(plaza: list[np.ndarray], tmp_path: Path) -> None:
    """ROS 1 raw bgr8, ROS 2 raw rgb8 and ROS 2 PNG bags of the first frames of the plaza clip give
    the very rows `trackcast track` gives on the clip (whole-frame BGR letterbox: --letterbox exact)."""
    from detector_client import create_detector
    from detector_client.config import OnnxDetectorConfig
    from service.media.offline import detect_video, track_video

    clip_out = tmp_path / "clip.txt"
    res = run_trackcast("track", str(PED), "--model", str(MODEL), "--max-frames", str(N), "--letterbox", "exact",
                        "--out", str(clip_out), "--no-progress")  # fmt: skip
    assert res.returncode == 0, res.stderr
    want = clip_out.read_text()
    assert want.count("\n") > 10 * N, "people are tracked"
    b1 = write_bag(tmp_path / "plaza.bag", plaza, ros=1, encoding="bgr8", fps=25)
    res = run_trackcast("track", str(b1), "--topic", "/camera/image", "--model", str(MODEL),
                        "--out", str(tmp_path / "b1.txt"), "--no-progress")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "b1.txt").read_text() == want, "ROS 1 bgr8 bag"
    det = create_detector(OnnxDetectorConfig(model=str(MODEL), max_batch=4))
    try:
        for enc in ("rgb8", "png"):
            bag = write_bag(tmp_path / f"plaza2-{enc}", plaza, ros=2, encoding=enc, fps=25)
            summary = track_video(str(bag), det, None, tmp_path / f"{enc}.txt")
            assert (tmp_path / f"{enc}.txt").read_text() == want, f"ROS 2 {enc} bag"
            assert (summary.frames, summary.width, summary.height, summary.fps) == (N, 1280, 720, 25.0)
        # detect takes a bag too: one row per detection of the same frames
        stats = detect_video(str(b1), det, tmp_path / "det.txt", topic="/camera/image")
    finally:
        det.close()
    frames = {int(line.split(",")[0]) for line in (tmp_path / "det.txt").read_text().splitlines()}
    assert stats.frames == N and frames == set(range(1, N + 1))


def test_bag_list_and_a_resumable_extract_local_and_s3(moto_url: str, aws_env: None, tmp_path: Path) -> None:
    frames = [scene(shift=i) for i in range(6)]
    bag = write_bag(tmp_path / "cam.bag", frames, ros=1, encoding="jpeg", fps=20)
    res = run_trackcast("bag", "list", str(bag), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    topics = {t["topic"]: t for t in info["topics"]}
    assert info["ros"] == 1 and abs(info["duration_s"] - 0.25) < 0.001
    assert topics["/camera/image"] == {"topic": "/camera/image", "type": "sensor_msgs/msg/CompressedImage",
                                       "count": 6, "rate_hz": 20.0, "image": True}  # fmt: skip
    assert topics["/status"]["count"] == 2 and not topics["/status"]["image"]
    out = tmp_path / "frames"
    res = run_trackcast("bag", "extract", str(bag), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["written"] == 6
    names = sorted(p.name for p in out.glob("frame_*"))
    assert names == [f"frame_{i:06d}.jpg" for i in range(1, 7)]
    with Bag(str(bag)) as b:  # JPEG bytes are kept as they were recorded, not re-encoded
        assert (out / names[2]).read_bytes() == next(
            f for f in b.raw_frames("/camera/image") if f.index == 3
        ).encoded
    index = [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in index] == [1, 2, 3, 4, 5, 6]
    assert index[1]["t_ns"] - index[0]["t_ns"] == 50_000_000 and index[0]["topic"] == "/camera/image"
    (out / names[1]).unlink()  # an interrupted run: resume writes only what is missing
    (out / "frames.jsonl").unlink()
    res = run_trackcast("bag", "extract", str(bag), "--out", str(out))
    summary = json.loads(res.stdout)
    assert (summary["written"], summary["already_there"]) == (1, 5) and (out / "frames.jsonl").is_file()
    # to S3, raw frames as PNG
    s3 = aws_client("s3", moto_url)
    s3.create_bucket(Bucket="drives", CreateBucketConfiguration={"LocationConstraint": AWS_REGION})
    raw = write_bag(tmp_path / "raw", frames[:3], ros=2, encoding="rgb8")
    res = run_trackcast("bag", "extract", str(raw), "--out", "s3://drives/run1", "--endpoint-url", moto_url,
                        "--region", AWS_REGION)  # fmt: skip
    assert res.returncode == 0, res.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="drives")["Contents"])
    assert keys == [
        "run1/frame_000001.png",
        "run1/frame_000002.png",
        "run1/frame_000003.png",
        "run1/frames.jsonl",
    ]
    png = s3.get_object(Bucket="drives", Key="run1/frame_000002.png")["Body"].read()
    assert np.array_equal(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), frames[1])


def test_bad_bags_give_clear_errors(tmp_path: Path) -> None:
    no_images = write_bag(tmp_path / "noimg.bag", [], ros=1)  # only the connections, no camera messages
    # a bag with only a non-image topic
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    with Writer(tmp_path / "imu", version=9) as w:
        c = w.add_connection("/imu", "std_msgs/msg/String", typestore=store)
        w.write(
            c, 1, store.serialize_cdr(store.types["std_msgs/msg/String"](data="x"), "std_msgs/msg/String")
        )
    two = tmp_path / "two"
    write_bag(two, [scene()], ros=2)
    cases = {
        "missing.bag": (str(tmp_path / "missing.bag"), None, "no such file or folder"),
        "imu": (str(tmp_path / "imu"), None, "has no sensor_msgs/Image or CompressedImage topic (topics: /imu (std_msgs/msg/String))"),
        "empty topic": (str(no_images), None, "topic /camera/image has no messages"),
        "wrong topic": (str(two), "/lidar", "has no topic '/lidar' (image topics: /camera/image)"),
        "not an image topic": (str(two), "/status", "topic /status is std_msgs/msg/String, not sensor_msgs/Image"),
    }  # fmt: skip
    for name, (path, topic, message) in cases.items():
        with pytest.raises(SourceError) as err, Bag(path) as bag:
            bag.image_topic(topic)
        assert message in str(err.value), name
    corrupt = tmp_path / "corrupt.bag"
    corrupt.write_bytes(write_bag(tmp_path / "ok.bag", [scene()] * 3, ros=1).read_bytes()[:2000])
    res = run_trackcast("track", str(corrupt), "--model", str(MODEL), "--out", str(tmp_path / "x.txt"))
    assert res.returncode == 2 and f"{corrupt}: not a readable ROS bag" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    res = run_trackcast("bag", "list", str(tmp_path))
    assert res.returncode == 2 and "not a ROS bag" in res.stderr
    # an encoding that is not a camera frame, and data shorter than the image
    bad = tmp_path / "bad.bag"
    from rosbags.rosbag1 import Writer as W1

    s1 = get_typestore(Stores.ROS1_NOETIC)
    T = s1.types
    with W1(bad) as w:
        hdr = T["std_msgs/msg/Header"](
            seq=0, stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id=""
        )
        for topic, enc, n in (("/depth", "32FC1", 16), ("/short", "bgr8", 10)):
            c = w.add_connection(topic, "sensor_msgs/msg/Image", typestore=s1)
            msg = T["sensor_msgs/msg/Image"](header=hdr, height=2, width=2, encoding=enc, is_bigendian=0, step=n // 2,
                                             data=np.zeros(n, np.uint8))  # fmt: skip
            w.write(c, 1, s1.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    with Bag(str(bad)) as bag:
        with pytest.raises(SourceError, match=r"topic /depth, message 1: encoding '32FC1' is not supported"):
            list(bag.frames("/depth"))
        with pytest.raises(
            SourceError, match=r"topic /short, message 1: bgr8 2x2 needs 6 bytes a row, but step is 5"
        ):
            list(bag.frames("/short"))
        with pytest.raises(
            SourceError, match=r"has 2 image topics \(/depth, /short\): choose one with --topic"
        ):
            bag.image_topic(None)


def test_serve_replays_a_bag_frame_for_frame_and_a_broken_bag_ends_only_its_stream(
    plaza: list[np.ndarray], tmp_path: Path
) -> None:
    from detector_client import create_detector
    from detector_client.config import OnnxDetectorConfig
    from service.media.offline import track_video
    from tracker.mot import read_mot

    bag = write_bag(tmp_path / "plaza", plaza, ros=2, encoding="png", fps=25)
    det = create_detector(OnnxDetectorConfig(model=str(MODEL), classes=[0], max_batch=4))
    try:
        track_video(str(bag), det, None, tmp_path / "offline.txt")
    finally:
        det.close()
    offline: dict[int, dict[int, list[float]]] = {}
    for r in read_mot(tmp_path / "offline.txt"):
        offline.setdefault(int(r[0]), {})[int(r[1])] = [r[2], r[3], r[2] + r[4], r[3] + r[5]]
    broken = tmp_path / "broken.bag"
    broken.write_bytes(b"#ROSBAG V2.0\n" + b"\0" * 100)
    broker = Mosquitto(tmp_path / "broker").start()
    sub = Collector(broker.port)
    svc = ServiceProc(tmp_path / "svc", {
        "instance": "bags", "mqtt": {"url": broker.url},
        "detector": {"kind": "onnx", "model": str(MODEL), "classes": [0], "max_batch": 4},
        "streams": [{"id": "drive", "url": str(bag), "topic": "/camera/image", "realtime": False},
                    {"id": "broken", "url": str(broken)}],
    })  # fmt: skip
    try:
        svc.start()
        wait_for(lambda: svc.stream("drive")["state"] == "offline", 120, "the bag replay to finish")
        wait_for(lambda: svc.stream("broken")["state"] == "offline", 30, "the broken bag to be reported")
        assert "not a readable ROS bag" in (svc.stream("broken")["reason"] or "")
        assert svc.stream("drive")["reason"] == "end of bag"
        assert svc.stop() == 0
    finally:
        svc.kill()
        sub.close()
        broker.stop()
    from tests.test_service import assert_same_tracks

    assert_same_tracks(sub.of("/tracks", "drive"), offline, N)
    # frame times are the bag's record timestamps (25 fps), from the first frame
    assert [m["pts"] for m in sub.of("/tracks", "drive")][:4] == [0.0, 0.04, 0.08, 0.12]
    assert sub.of("/tracks", "drive")[0]["size"] == [1280, 720]
