"""``trackcast eval-det``: COCO detection metrics, checked against pycocotools called directly."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA, run_trackcast
from training.detection_eval import EvalError, category_of, load_dets, load_gt, parse_class_map

FIX = SHARED_DATA / "fixtures" / "bytetrack_reference" / "pedestrians_720p25"
MOT17 = SHARED_DATA / "mot17"
MODEL = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
needs_shared = pytest.mark.skipif(not FIX.is_dir(), reason=f"../shared is absent (looked for {FIX})")


def direct_cocoeval(gt: dict, dets: list[dict]) -> list[float]:  # type: ignore[type-arg]
    """pycocotools on its own: the numbers eval-det must reproduce."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = gt
        c.createIndex()
        ev = COCOeval(c, c.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


def mot_rows(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", ndmin=2)


# ---------------------------------------------------------------------- unit
@pytest.mark.unit
def test_mot17_ground_truth_scores_pedestrians_and_ignores_distractors(tmp_path: Path) -> None:
    gt_txt = tmp_path / "gt.txt"
    gt_txt.write_text(
        "1,1,10,10,20,40,1,1,1\n"  # pedestrian
        "1,2,100,10,20,40,0,1,1\n"  # pedestrian, consider 0: crowd
        "1,3,200,10,20,40,1,7,1\n"  # static person: crowd
        "1,4,300,10,50,30,0,3,1\n"  # car: left out
        "2,1,12,10,20,40,1,1,1\n"
    )
    gt = load_gt(gt_txt)
    anns = gt.coco["annotations"]
    assert [(a["bbox"][0], a["iscrowd"]) for a in anns] == [(10, 0), (100, 1), (200, 1), (12, 0)]
    assert gt.categories == {1: "pedestrian"} and len(gt.coco["images"]) == 2


@pytest.mark.unit
def test_classes_json_makes_every_class_a_category(tmp_path: Path) -> None:
    seq = tmp_path / "s1"
    (seq / "gt").mkdir(parents=True)
    (seq / "gt" / "gt.txt").write_text("1,1,10,10,20,40,1,1,1\n1,2,50,10,20,20,1,2,1\n")
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=s1\nseqLength=3\nimWidth=100\nimHeight=100\n")
    (tmp_path / "classes.json").write_text('{"1": "player", "2": "ball"}')
    gt = load_gt(tmp_path)  # a folder of sequences
    assert gt.categories == {1: "player", 2: "ball"} and len(gt.coco["images"]) == 3
    # det classes: MOT's class + 1 convention, or by name
    assert category_of(gt, [0, 1, 5], None, None)[0] == {0: 1, 1: 2}
    assert category_of(gt, [0, 1], None, ["ball", "player"])[0] == {0: 2, 1: 1}
    assert category_of(gt, [0], {0: 2}, None)[0] == {0: 2}
    with pytest.raises(EvalError, match=r"--class-map: \[9\] are not ground-truth categories"):
        category_of(gt, [0], {0: 9}, None)
    dets = tmp_path / "dets"
    dets.mkdir()
    (dets / "s1.txt").write_text("1,-1,10,10,20,40,0.9,0,-1,-1\n4,-1,1,1,2,2,0.5,0,-1,-1\n")
    with pytest.raises(EvalError, match=r"s1\.txt: frame 4 has no ground-truth image"):
        load_dets(gt, dets)


@pytest.mark.unit
def test_bad_inputs_say_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="no such file or folder"):
        load_gt(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(EvalError, match=r"bad\.json: not a readable JSON"):
        load_gt(tmp_path / "bad.json")
    (tmp_path / "x.json").write_text('{"images": []}')
    with pytest.raises(EvalError, match="a COCO file needs annotations, categories"):
        load_gt(tmp_path / "x.json")
    (tmp_path / "gt.txt").write_text("1,1,10,10,20\n")
    with pytest.raises(EvalError, match=r"--gt .*gt\.txt"):
        load_gt(tmp_path / "gt.txt")
    with pytest.raises(EvalError, match="expected MODEL_CLASS:GT_CATEGORY"):
        parse_class_map(["0-1"])


# ---------------------------------------------------------------------- against pycocotools
@pytest.mark.integration
@needs_shared
def test_matches_pycocotools_on_the_shared_clip(tmp_path: Path) -> None:
    """Detections of the shared clip against the reference tracker's boxes as ground truth."""
    res = run_trackcast(
        "eval-det", "--gt", str(FIX / "ref_default.txt"), "--dets", str(FIX / "det.txt"), "--json"
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    gt_rows, det_rows = mot_rows(FIX / "ref_default.txt"), mot_rows(FIX / "det.txt")
    n = int(max(gt_rows[:, 0].max(), det_rows[:, 0].max()))
    gt = {"images": [{"id": i} for i in range(1, n + 1)], "categories": [{"id": 1, "name": "object"}],
          "annotations": [{"id": k + 1, "image_id": int(r[0]), "category_id": 1, "bbox": list(r[2:6]),
                           "area": r[4] * r[5], "iscrowd": 0} for k, r in enumerate(gt_rows)]}  # fmt: skip
    dets = [{"image_id": int(r[0]), "category_id": 1, "bbox": list(r[2:6]), "score": r[6]} for r in det_rows]
    want = direct_cocoeval(gt, dets)
    assert [got["AP"], got["AP50"], got["AP75"], got["AR100"]] == pytest.approx(
        [want[0], want[1], want[2], want[8]], abs=1e-12
    )
    assert got["per_class"] == {"object": pytest.approx(want[0], abs=1e-12)}
    assert 0.5 < got["AP"] < 1.0  # nano detections against tracks: good, not perfect


@pytest.mark.integration
@needs_shared
def test_mot17_folder_matches_pycocotools_with_the_benchmark_rules(tmp_path: Path) -> None:
    seq = MOT17 / "gt" / "mot_challenge" / "MOT17-train" / "MOT17-05-FRCNN"
    hyp = MOT17 / "trackers" / "mot_challenge" / "MOT17-train" / "MoTT" / "data" / "MOT17-05-FRCNN.txt"
    res = run_trackcast("eval-det", "--gt", str(seq), "--dets", str(hyp), "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    n = int(
        next(ln for ln in (seq / "seqinfo.ini").read_text().splitlines() if ln.startswith("seqLength")).split(
            "="
        )[1]
    )
    anns = []
    for r in mot_rows(seq / "gt" / "gt.txt"):
        cls, consider = int(r[7]), r[6] != 0
        if cls == 1 or cls in (2, 7, 8, 12):
            anns.append({"id": len(anns) + 1, "image_id": int(r[0]), "category_id": 1, "bbox": list(r[2:6]),
                         "area": r[4] * r[5], "iscrowd": int(cls != 1 or not consider)})  # fmt: skip
    gt = {
        "images": [{"id": i} for i in range(1, n + 1)],
        "categories": [{"id": 1, "name": "pedestrian"}],
        "annotations": anns,
    }
    dets = [
        {"image_id": int(r[0]), "category_id": 1, "bbox": list(r[2:6]), "score": r[6]} for r in mot_rows(hyp)
    ]
    want = direct_cocoeval(gt, dets)
    assert [got["AP"], got["AP50"], got["AP75"], got["AR100"]] == pytest.approx(
        [want[0], want[1], want[2], want[8]], abs=1e-12
    )
    assert got["images"] == n and "pedestrian" in got["per_class"]


@pytest.mark.system
@needs_shared
def test_model_and_video_equal_detect_then_dets(tmp_path: Path) -> None:
    clip = SHARED_DATA / "video" / "pedestrians_720p25.mp4"
    det = tmp_path / "det.txt"
    res = run_trackcast(
        "detect", str(clip), "--model", str(MODEL), "--classes", "0", "--max-frames", "40", "--out", str(det)
    )
    assert res.returncode == 0, res.stderr
    assert {line.split(",")[7] for line in det.read_text().split()} == {"0"}  # the class travels in det.txt
    a = run_trackcast("eval-det", "--gt", str(FIX / "ref_default.txt"), "--dets", str(det), "--json")
    b = run_trackcast("eval-det", "--gt", str(FIX / "ref_default.txt"), "--model", str(MODEL), "--classes", "0",
                      "--video", str(clip), "--max-frames", "40", "--json")  # fmt: skip
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja["AP"] == jb["AP"] and ja["detections"] == jb["detections"] > 400
    bad = run_trackcast("eval-det", "--gt", str(tmp_path / "none"), "--dets", str(det))
    assert bad.returncode == 2 and "no such file or folder" in bad.stderr and "Traceback" not in bad.stderr
