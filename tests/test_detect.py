"""YOLOX on ONNX Runtime with the shared model: fixture parity, batching, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detector_client import (
    DetectorInputError,
    ModelLoadError,
    OnnxDetectorConfig,
    PostProcess,
    create_detector,
)
from detector_client.onnx_backend import OnnxYolox
from service.video import iter_frames
from tests.conftest import FIXTURES, run_trackcast
from tests.detmatch import match_fraction
from tracker.mot import read_mot

CLIPS = {
    "pedestrians_720p25": "pedestrians_720p25.mp4",
    "futsal_broadcast": "futsal_broadcast_720x1280p30.mp4",
}


@pytest.fixture(scope="module")
def model_path() -> Path:
    from tests.conftest import SHARED_DATA

    p = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
    if not p.is_file():
        pytest.skip(f"../shared is absent (looked for {p})")
    return p


@pytest.fixture(scope="module")
def core(model_path: Path) -> OnnxYolox:
    return OnnxYolox(model_path, postprocess=PostProcess(0.1, 0.45, (0,)))


@pytest.mark.shared
@pytest.mark.parametrize("seq", sorted(CLIPS))
def test_detect_cli_reproduces_fixture_detections(seq: str, model_path: Path, tmp_path: Path) -> None:
    """The fixtures follow ByteTrack's pipeline, which does not clip boxes to the frame: --no-clip."""
    video = model_path.parent.parent / "video" / CLIPS[seq]
    out = tmp_path / "det.txt"
    res = run_trackcast(
        "detect", str(video), "--model", str(model_path), "--classes", "0",
        "--score-thresh", "0.1", "--nms-thresh", "0.45", "--no-clip", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    ours, ref = read_mot(out), read_mot(FIXTURES / seq / "det.txt")
    assert all(len(line.split(",")) == 10 for line in out.read_text().split())
    matched, extra = match_fraction(ours, ref)
    assert matched >= 0.99, f"only {matched:.4f} of reference rows matched"
    assert extra <= 0.01, f"{extra:.4f} extra rows"


@pytest.mark.shared
def test_default_clipping_equals_the_fixture_clipped(model_path: Path, tmp_path: Path) -> None:
    seq = "pedestrians_720p25"
    out = tmp_path / "det.txt"
    res = run_trackcast(
        "detect", str(model_path.parent.parent / "video" / CLIPS[seq]), "--model", str(model_path),
        "--classes", "0", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    ours, ref = read_mot(out), read_mot(FIXTURES / seq / "det.txt")
    x1, y1 = ours[:, 2], ours[:, 3]
    assert (
        (x1 >= 0).all()
        and (y1 >= 0).all()
        and (x1 + ours[:, 4] <= 1280 + 1e-3).all()
        and (y1 + ours[:, 5] <= 720 + 1e-3).all()
    )
    clipped = ref.copy()
    x2 = np.clip(ref[:, 2] + ref[:, 4], 0, 1280)
    y2 = np.clip(ref[:, 3] + ref[:, 5], 0, 720)
    clipped[:, 2], clipped[:, 3] = np.clip(ref[:, 2], 0, 1280), np.clip(ref[:, 3], 0, 720)
    clipped[:, 4], clipped[:, 5] = x2 - clipped[:, 2], y2 - clipped[:, 3]
    assert (ref[:, 3] < -1).any(), "the fixture has boxes past the frame edge"
    matched, extra = match_fraction(ours, clipped)
    assert matched >= 0.99 and extra <= 0.01


def test_model_is_made_batchable_and_verified(core: OnnxYolox) -> None:
    assert core.batch_mode == "batched", core.batch_note
    assert "verified" in core.batch_note
    assert core.raw and core.num_classes == 80 and (core.height, core.width) == (416, 416)


@pytest.mark.shared
def test_batched_equals_per_frame(model_path: Path, core: OnnxYolox) -> None:
    video = model_path.parent.parent / "video" / CLIPS["futsal_broadcast"]
    frames = [core.spec.prepare(f.image, index=f.index) for f in iter_frames(str(video), max_frames=8)]
    per_frame = OnnxYolox(model_path, postprocess=core.postprocess, batching=False)
    assert per_frame.batch_mode == "per-frame"
    single = [per_frame.detect([f])[0] for f in frames]
    for bs in (2, 4, 8):
        batched = []
        for i in range(0, len(frames), bs):
            batched += core.detect(frames[i : i + bs])
        for a, b in zip(batched, single, strict=True):
            assert a.shape == b.shape and a.shape[0] > 0
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def test_io_binding_path_gives_the_same_detections(model_path: Path, core: OnnxYolox) -> None:
    bound = OnnxYolox(model_path, postprocess=core.postprocess, io_binding=True)
    rng = np.random.default_rng(4)
    img = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    f = core.spec.prepare(img)
    np.testing.assert_array_equal(bound.infer(f.image[None]), core.infer(f.image[None]))


def test_async_interface_runs_off_the_event_loop(model_path: Path) -> None:
    import asyncio
    import threading

    det = create_detector(OnnxDetectorConfig(model=model_path, classes=[0], max_batch=4))
    rng = np.random.default_rng(0)
    frames = [
        det.spec.prepare(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), stream=f"s{i % 2}", index=i)
        for i in range(6)
    ]

    async def main() -> tuple[list[np.ndarray], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        out = await det.detect(frames)
        t.cancel()
        return out, ticks

    main_thread = threading.get_ident()
    out, ticks = asyncio.run(main())
    assert len(out) == 6 and all(o.shape[1] == 6 for o in out)
    assert ticks > 1, "the event loop kept running during inference"
    assert threading.get_ident() == main_thread
    det.close()


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nope\.onnx: no such file"):
        OnnxYolox(tmp_path / "nope.onnx")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        OnnxYolox(bad)


def test_non_yolox_model_is_rejected(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    p = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(p))
    with pytest.raises(ModelLoadError, match="not a YOLOX model"):
        OnnxYolox(p)


def test_wrong_input_size_and_empty_frame(core: OnnxYolox) -> None:
    from detector_client.base import PreparedFrame

    wrong = PreparedFrame(np.zeros((320, 320, 3), np.uint8), 1.0, 320, 320, "cam", 3)
    with pytest.raises(DetectorInputError, match="takes 416x416"):
        core.detect([wrong])
    with pytest.raises(DetectorInputError, match="empty frame"):
        core.spec.prepare(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(DetectorInputError, match="HxWx3"):
        core.spec.prepare(np.zeros((10, 10), np.uint8))


def test_bytetrack_preprocessing_convention(model_path: Path) -> None:
    bt = OnnxYolox(model_path, preprocess="bytetrack")
    assert bt.spec.channels == "rgb" and bt.spec.normalize == "imagenet"
    img = np.full((1, 416, 416, 3), 114, np.uint8)
    x = bt.spec.to_tensor(img)
    np.testing.assert_allclose(
        x[0, :, 0, 0],
        (114 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
        rtol=1e-6,
    )


def test_detect_cli_errors(tmp_path: Path, model_path: Path) -> None:
    notvideo = tmp_path / "notes.mp4"
    notvideo.write_text("hello")
    res = run_trackcast("detect", str(notvideo), "--model", str(model_path), "--out", str(tmp_path / "d.txt"))
    assert res.returncode == 2 and "not a video" in res.stderr and "Traceback" not in res.stderr
    res = run_trackcast(
        "detect", str(notvideo), "--model", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "d.txt")
    )
    assert res.returncode == 2 and "none.onnx: no such file" in res.stderr


@pytest.mark.parametrize(("h", "w"), [(720, 1280), (1280, 720), (416, 416), (100, 37)])
def test_letterbox_puts_the_resized_frame_top_left_and_pads_the_rest(h: int, w: int) -> None:
    from detector_client.base import InputSpec

    rng = np.random.default_rng(h * w)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    p = InputSpec(416, 416).prepare(img)
    r = min(416 / h, 416 / w)
    nw, nh = int(w * r), int(h * r)
    assert p.ratio == r and (p.src_width, p.src_height) == (w, h)
    np.testing.assert_array_equal(
        p.image[:nh, :nw], cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    )
    assert (p.image[nh:] == 114).all() and (p.image[:nh, nw:] == 114).all()


def test_decoding_commands_keep_freed_frame_buffers() -> None:
    from service.video import keep_freed_frame_buffers

    # glibc (Debian): both mallopt calls are accepted
    assert keep_freed_frame_buffers() is True


@pytest.mark.shared
def test_bgr_conversion_matches_pyav_default(shared_data: Path) -> None:
    """`to_bgr` (one swscale thread) gives the same pixels as PyAV's default conversion."""
    import av

    from service.video import to_bgr

    for clip in ("pedestrians_720p25.mp4", "futsal_broadcast_720x1280p30.mp4"):
        with av.open(str(shared_data / "video" / clip)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                assert np.array_equal(to_bgr(frame), frame.to_ndarray(format="bgr24")), (clip, i)
                if i == 20:
                    break
