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
from detector_client.base import Detections
from detector_client.onnx_backend import OnnxModel
from service.media.video import iter_frames
from tests.conftest import FIXTURES, run_trackcast
from tests.detmatch import iou_agreement, match_fraction
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
def core(model_path: Path) -> OnnxModel:
    return OnnxModel(model_path, postprocess=PostProcess(0.1, 0.45, (0,)))


@pytest.mark.shared
@pytest.mark.parametrize("seq", sorted(CLIPS))
def test_detect_cli_reproduces_fixture_detections(seq: str, model_path: Path, tmp_path: Path) -> None:
    """The fixtures follow ByteTrack's pipeline, which does not clip boxes to the frame: --no-clip."""
    video = model_path.parent.parent / "video" / CLIPS[seq]
    out = tmp_path / "det.txt"
    res = run_trackcast(
        "detect", str(video), "--model", str(model_path), "--classes", "0",
        "--score-thresh", "0.1", "--nms-thresh", "0.45", "--no-clip", "--letterbox", "exact", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    ours, ref = read_mot(out), read_mot(FIXTURES / seq / "det.txt")
    assert all(len(line.split(",")) == 10 for line in out.read_text().split())
    matched, extra = match_fraction(ours, ref)
    assert matched >= 0.99, f"only {matched:.4f} of reference rows matched"
    assert extra <= 0.01, f"{extra:.4f} extra rows"


@pytest.mark.shared
@pytest.mark.parametrize("seq", sorted(CLIPS))
def test_fast_letterbox_detections_agree_with_the_reference(
    seq: str, model_path: Path, tmp_path: Path
) -> None:
    """The default letterbox (scaled from the YUV planes) is not ByteTrack's pixel for pixel, so its
    detections move a little: nearly every confident reference box is found again, in place."""
    out = tmp_path / "det.txt"
    res = run_trackcast(
        "detect", str(model_path.parent.parent / "video" / CLIPS[seq]), "--model", str(model_path),
        "--classes", "0", "--score-thresh", "0.1", "--nms-thresh", "0.45", "--no-clip", "--out", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    ours, ref = read_mot(out), read_mot(FIXTURES / seq / "det.txt")
    # measured: 0.988-0.992 both ways (pedestrians, futsal); a wrong colour matrix or a shifted
    # sampling grid drops this well below
    assert iou_agreement(ours, ref, min_score=0.5, iou=0.9, score=0.05) >= 0.97
    assert iou_agreement(ref, ours, min_score=0.5, iou=0.9, score=0.05) >= 0.97
    assert abs(len(ours) - len(ref)) <= 0.05 * len(ref)


@pytest.mark.shared
def test_default_clipping_equals_the_fixture_clipped(model_path: Path, tmp_path: Path) -> None:
    seq = "pedestrians_720p25"
    out = tmp_path / "det.txt"
    res = run_trackcast(
        "detect", str(model_path.parent.parent / "video" / CLIPS[seq]), "--model", str(model_path),
        "--classes", "0", "--letterbox", "exact", "--out", str(out),
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


def test_model_is_made_batchable_and_verified(core: OnnxModel) -> None:
    assert core.batch_mode == "batched", core.batch_note
    assert "verified" in core.batch_note
    assert core.raw and core.num_classes == 80 and (core.height, core.width) == (416, 416)


@pytest.mark.shared
def test_batched_equals_per_frame(model_path: Path, core: OnnxModel) -> None:
    video = model_path.parent.parent / "video" / CLIPS["futsal_broadcast"]
    frames = [core.spec.prepare(f.image, index=f.index) for f in iter_frames(str(video), max_frames=8)]
    per_frame = OnnxModel(model_path, postprocess=core.postprocess, batching=False)
    assert per_frame.batch_mode == "per-frame"
    single = [per_frame.detect([f])[0] for f in frames]
    for bs in (2, 4, 8):
        batched = []
        for i in range(0, len(frames), bs):
            batched += core.detect(frames[i : i + bs])
        for a, b in zip(batched, single, strict=True):
            assert a.shape == b.shape and a.shape[0] > 0
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def test_io_binding_path_gives_the_same_detections(model_path: Path, core: OnnxModel) -> None:
    bound = OnnxModel(model_path, postprocess=core.postprocess, io_binding=True)
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
    assert len(out) == 6 and all(isinstance(o, Detections) and o.rows.shape[1] == 6 for o in out)
    assert ticks > 1, "the event loop kept running during inference"
    assert threading.get_ident() == main_thread
    det.close()


def test_missing_model_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"nope\.onnx: no such file"):
        OnnxModel(tmp_path / "nope.onnx")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        OnnxModel(bad)


def test_non_yolox_model_is_rejected(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    p = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(p))
    with pytest.raises(ModelLoadError, match=r"relu\.onnx: output 'y' has shape \[1, 3, 64, 64\]; expected"):
        OnnxModel(p)


def test_wrong_input_size_and_empty_frame(core: OnnxModel) -> None:
    from detector_client.base import PreparedFrame

    wrong = PreparedFrame(np.zeros((320, 320, 3), np.uint8), 1.0, 320, 320, "cam", 3)
    with pytest.raises(DetectorInputError, match="takes 416x416"):
        core.detect([wrong])
    with pytest.raises(DetectorInputError, match="empty frame"):
        core.spec.prepare(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(DetectorInputError, match="HxWx3"):
        core.spec.prepare(np.zeros((10, 10), np.uint8))


def test_bytetrack_preprocessing_convention(model_path: Path) -> None:
    bt = OnnxModel(model_path, preprocess="bytetrack")
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
    from service.media.video import keep_freed_frame_buffers

    # glibc (Debian): both mallopt calls are accepted
    assert keep_freed_frame_buffers() is True


@pytest.mark.shared
def test_bgr_conversion_matches_pyav_default(shared_data: Path) -> None:
    """`to_bgr` (one swscale thread) gives the same pixels as PyAV's default conversion."""
    import av

    from service.media.video import to_bgr

    for clip in ("pedestrians_720p25.mp4", "futsal_broadcast_720x1280p30.mp4"):
        with av.open(str(shared_data / "video" / clip)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                assert np.array_equal(to_bgr(frame), frame.to_ndarray(format="bgr24")), (clip, i)
                if i == 20:
                    break


def _yuv_frame(
    h: int, w: int, fmt: str = "yuv420p", colorspace: int = 2, color_range: int = 1, seed: int = 0
):  # type: ignore[no-untyped-def]
    """A smooth, colourful 4:2:0 frame (gradients and blobs), tagged like a decoder would tag it."""
    import av

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.5, 2.0, 6)
    y = 120 + 90 * np.sin(xx / (70 * c[0]) + yy / (90 * c[1]))
    u = 128 + 100 * np.sin(xx / (110 * c[2]) - yy / (120 * c[3]))
    v = 128 + 100 * np.cos(xx / (140 * c[4]) + yy / (80 * c[5]))
    lo, hi = (16, 235) if (color_range != 2 and fmt == "yuv420p") else (0, 255)
    ch, cw = (h + 1) // 2, (w + 1) // 2
    frame = av.VideoFrame(w, h, fmt)
    for plane, arr in zip(frame.planes, (y, u[::2, ::2][:ch, :cw], v[::2, ::2][:ch, :cw]), strict=True):
        data = np.zeros((plane.height, plane.line_size), np.uint8)
        data[: arr.shape[0], : arr.shape[1]] = np.clip(arr, lo, hi).astype(np.uint8)
        plane.update(data.tobytes())
    frame.colorspace = colorspace
    frame.color_range = color_range
    return frame


@pytest.mark.parametrize(
    ("fmt", "colorspace", "color_range"),
    [
        ("yuv420p", 2, 0),  # untagged: BT.601, limited range (as swscale reads it)
        ("yuv420p", 1, 1),  # BT.709 limited (HD video)
        ("yuv420p", 6, 1),  # BT.601 limited (SD video)
        ("yuv420p", 1, 2),  # BT.709 full range
        ("yuv420p", 9, 1),  # BT.2020
        ("yuv420p", 7, 1),  # SMPTE 240M
        ("yuvj420p", 5, 0),  # JPEG-style full range (MJPEG cameras)
    ],
)
def test_fast_letterbox_reads_colour_tags_like_swscale(fmt: str, colorspace: int, color_range: int) -> None:
    """Letterboxing from the planes gives the colours PyAV's own BGR conversion gives for that frame."""
    from detector_client.base import InputSpec
    from service.media.video import prepare_frame, to_bgr

    spec = InputSpec(416, 416)
    frame = _yuv_frame(720, 1280, fmt, colorspace, color_range)
    fast = prepare_frame(frame, spec, stream="s", index=3)
    ref = spec.prepare(to_bgr(frame))
    assert (fast.src_width, fast.src_height, fast.stream, fast.index) == (1280, 720, "s", 3)
    assert fast.ratio == ref.ratio
    d = np.abs(fast.image.astype(np.int16) - ref.image)
    # the smooth picture leaves rounding (measured: max 5-6, mean 0.7-0.8); the wrong matrix
    # (601 <-> 709 <-> 2020) or range is off by 17-48 at most and 3.5-7.5 on average
    assert d.max() <= 7 and d.mean() < 1.0, (d.max(), d.mean())
    assert (fast.image[234:] == 114).all()


@pytest.mark.parametrize(("h", "w"), [(75, 101), (1080, 1920), (1280, 720), (416, 416)])
def test_fast_letterbox_geometry_matches_the_bgr_letterbox(h: int, w: int) -> None:
    from detector_client.base import InputSpec
    from service.media.video import prepare_frame, to_bgr

    spec = InputSpec(416, 416)
    frame = _yuv_frame(h, w, seed=h)
    fast, ref = prepare_frame(frame, spec), spec.prepare(to_bgr(frame))
    r, nw, nh = spec.fit(w, h)
    assert fast.ratio == ref.ratio == r and fast.image.shape == (416, 416, 3)
    assert (fast.image[nh:] == 114).all() and (fast.image[:nh, nw:] == 114).all()
    d = np.abs(fast.image.astype(np.int16) - ref.image)
    # small odd sizes: the edge rows and columns round a little differently
    assert d.mean() < 1.0 and d.max() <= 8, (d.max(), d.mean())
    rgb = prepare_frame(frame, InputSpec(416, 416, channels="rgb"))
    np.testing.assert_array_equal(rgb.image, fast.image[:, :, ::-1])


def test_exact_letterbox_and_other_pixel_formats_go_through_bgr() -> None:
    import av

    from detector_client.base import InputSpec
    from service.media.video import prepare_frame, to_bgr

    frame = _yuv_frame(360, 640)
    exact = InputSpec(416, 416, letterbox="exact")
    np.testing.assert_array_equal(prepare_frame(frame, exact).image, exact.prepare(to_bgr(frame)).image)
    rgb = av.VideoFrame.from_ndarray(
        np.random.default_rng(1).integers(0, 255, (90, 160, 3), np.uint8), "rgb24"
    )
    fast = InputSpec(416, 416)
    np.testing.assert_array_equal(prepare_frame(rgb, fast).image, fast.prepare(to_bgr(rgb)).image)


@pytest.mark.shared
def test_fast_letterbox_on_the_shared_clips_stays_close_to_the_bgr_one(shared_data: Path) -> None:
    import av

    from detector_client.base import InputSpec
    from service.media.video import prepare_frame, to_bgr

    spec = InputSpec(416, 416)
    for clip in ("pedestrians_720p25.mp4", "futsal_broadcast_720x1280p30.mp4"):
        with av.open(str(shared_data / "video" / clip)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i % 25 == 0:
                    fast = prepare_frame(frame, spec).image.astype(np.int16)
                    d = np.abs(fast - spec.prepare(to_bgr(frame)).image)
                    # measured: mean 0.3-0.7, 99th percentile 2-3 (sharp colour edges differ more)
                    assert d.mean() < 1.0 and np.percentile(d, 99) <= 5, (clip, i, d.mean())
                if i == 100:
                    break


def test_yuv_letterbox_rejects_planes_that_do_not_fit() -> None:
    from detector_client.base import InputSpec

    spec = InputSpec(416, 416)
    y = np.zeros((64, 96), np.uint8)
    with pytest.raises(DetectorInputError, match="4:2:0"):
        spec.prepare_yuv420(y, np.zeros((32, 40), np.uint8), np.zeros((32, 40), np.uint8))
    with pytest.raises(DetectorInputError, match="plane u"):
        spec.prepare_yuv420(y, np.zeros((32, 48), np.float32), np.zeros((32, 48), np.uint8))
    with pytest.raises(DetectorInputError, match="unknown YCbCr matrix"):
        spec.prepare_yuv420(y, np.zeros((32, 48), np.uint8), np.zeros((32, 48), np.uint8), matrix="xyz")


def test_letterbox_setting_reaches_the_detector_spec() -> None:
    from pydantic import TypeAdapter, ValidationError

    from detector_client import DetectorConfig

    adapter = TypeAdapter(DetectorConfig)
    fast = create_detector(adapter.validate_python({"kind": "fake"}))
    exact = create_detector(adapter.validate_python({"kind": "fake", "letterbox": "exact"}))
    assert (fast.spec.letterbox, exact.spec.letterbox) == ("fast", "exact")
    assert (exact.spec.height, exact.spec.width) == (416, 416)
    with pytest.raises(ValidationError, match="letterbox"):
        adapter.validate_python({"kind": "fake", "letterbox": "quick"})
