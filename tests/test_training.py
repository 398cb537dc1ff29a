"""training/: Ground Truth <-> MOT17 -> COCO, and SageMaker training/tuning launch (moto)."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from tests import gt_samples as gs
from tests.conftest import SHARED_DATA, aws_client, run_trackcast
from tracker.mot import read_mot
from training import launch
from training.coco import mot_to_coco
from training.errors import ConvertError, LaunchError
from training.groundtruth import gt_to_mot, mot_to_gt
from training.storage import Storage

FUTSAL = SHARED_DATA / "video" / "futsal_broadcast_720x1280p30.mp4"
MODEL = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
needs_shared = pytest.mark.skipif(
    not FUTSAL.is_file() or not MODEL.is_file(), reason=f"../shared is absent (looked for {FUTSAL})"
)
ROLE = "arn:aws:iam::123456789012:role/trackcast-training"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/yolox-train:latest"


def seqinfo(path: Path) -> dict[str, str]:
    ini = configparser.ConfigParser()
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read(path)
    return dict(ini["Sequence"])


def mean_grey(path: Path) -> float:
    img = cv2.imread(str(path))
    assert img is not None, path
    return float(img.mean())


def find_seq(root: Path, name: str) -> Path:
    found = [p for p in root.glob(f"*/{name}") if p.is_dir()]
    assert len(found) == 1, f"{name} in {found}"
    return found[0]


@pytest.fixture
def job(tmp_path: Path) -> Path:
    return Path(gs.write_job(Storage(), str(tmp_path / "gt")))


# ----------------------------------------------------------------------------------- gt-to-mot


def test_gt_to_mot_writes_the_expected_mot17_tree(job: Path, tmp_path: Path) -> None:
    out = tmp_path / "mot"
    res = run_trackcast("convert", "gt-to-mot", "--manifest", str(job), "--job-name", gs.JOB, "--out", str(out),
                        "--split", "0.6,0.3,0.1")  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["sequences"] == 3 and summary["frames"] == 9 and summary["boxes"] == 6
    # 3 sequences at 0.6/0.3/0.1: 2 train, 1 val, none left for test (said, and counted)
    assert sorted(len(v) for v in summary["splits"].values()) == [1, 2]
    assert set(summary["splits"]) == {"train", "val"} and len(summary["splits"]["train"]) == 2
    assert summary["warnings"] == {"empty_split": 1}
    assert json.loads((out / "classes.json").read_text()) == {"1": "person", "2": "ball"}
    for name, expected in gs.EXPECTED_GT.items():
        seq = find_seq(out, name)
        # each sequence has its own annotations only; ids unique per object-id across classes
        # (person:1 and ball:1 of "alley" are tracks 1 and 2); 1-based frames; rows by id then frame
        assert (seq / "gt" / "gt.txt").read_text() == expected, name
        det = [line.split(",") for line in (seq / "det" / "det.txt").read_text().splitlines()]
        assert all(len(r) == 10 for r in det), "det.txt has the 10 MOTChallenge columns"
        gt_rows = [line.split(",") for line in expected.splitlines()]
        assert sorted((r[0], r[2], r[3], r[4], r[5]) for r in det) == sorted(
            (r[0], r[2], r[3], r[4], r[5]) for r in gt_rows
        )
        assert all(r[1] == "-1" and r[6] == "1" for r in det)
        info = seqinfo(seq / "seqinfo.ini")
        assert info == {"name": name, "imDir": "img1", "frameRate": gs.EXPECTED_FPS[name],
                        "seqLength": str(gs.EXPECTED_LENGTH[name]), "imWidth": str(gs.W), "imHeight": str(gs.H),
                        "imExt": ".jpg"}  # fmt: skip
        images = sorted((seq / "img1").iterdir())
        assert [p.name for p in images] == [f"{i:06d}.jpg" for i in range(1, gs.EXPECTED_LENGTH[name] + 1)]
        # frames kept in frame-no order, frames without labels kept (PNG re-encoded as JPEG)
        for i, p in enumerate(images):
            assert (p.read_bytes()[:3] == b"\xff\xd8\xff") and abs(mean_grey(p) - gs.grey(i)) < 3, p


def test_gt_to_mot_without_split_puts_everything_in_train(job: Path, tmp_path: Path) -> None:
    res = gt_to_mot(str(job), gs.JOB, str(tmp_path / "mot"))
    assert res["splits"] == {"train": ["alley", "court", "gate"]} and res["warnings"] == {}


def _edited_job(tmp_path: Path, **edit: Any) -> str:
    return gs.write_job(Storage(), str(tmp_path / "gt"), edit=edit)


def test_bad_input_manifest_line_without_its_ref(job: Path, tmp_path: Path) -> None:
    lines = job.read_text().splitlines()
    second = json.loads(lines[1])
    del second[f"{gs.JOB}-ref"]
    lines[1] = json.dumps(second)
    job.write_text("\n".join(lines) + "\n")
    res = run_trackcast(
        "convert", "gt-to-mot", "--manifest", str(job), "--job-name", gs.JOB, "--out", str(tmp_path / "m")
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "sequence court (manifest line 2)" in res.stderr and f"'{gs.JOB}-ref'" in res.stderr
    # the wrong --job-name is named as the likely cause
    res = run_trackcast(
        "convert", "gt-to-mot", "--manifest", str(job), "--job-name", "other", "--out", str(tmp_path / "m")
    )
    assert res.returncode == 2 and "manifest line 1" in res.stderr and f"'{gs.JOB}'" in res.stderr


def test_bad_input_unknown_class_id(tmp_path: Path) -> None:
    def bad_class(labels: dict[str, Any]) -> None:
        labels["tracking-annotations"][1]["annotations"][0]["class-id"] = "7"

    manifest = _edited_job(tmp_path, alley=bad_class)
    with pytest.raises(
        ConvertError, match=r"sequence alley \(manifest line 1\), frame 3 \(frame_0002.jpeg\): .*class-id 7"
    ):
        gt_to_mot(manifest, gs.JOB, str(tmp_path / "mot"))


def test_bad_input_box_outside_the_image_is_clipped_or_skipped_and_counted(tmp_path: Path) -> None:
    def outside(labels: dict[str, Any]) -> None:
        anns = labels["tracking-annotations"][0]["annotations"]
        anns.append(gs.box(60, 40, 10, 20, 0, "uuid-x", "person:9"))  # reaches past the right/bottom edges
        anns.append(gs.box(200, 10, 5, 5, 0, "uuid-y", "person:10"))  # wholly outside

    manifest = _edited_job(tmp_path, alley=outside)
    res = gt_to_mot(manifest, gs.JOB, str(tmp_path / "mot"))
    assert res["warnings"] == {"box_clipped": 1, "box_outside_image": 1}
    assert any("sequence alley" in e and "frame 1" in e for e in res["warning_examples"]["box_outside_image"])
    gt = read_mot(tmp_path / "mot" / "train" / "alley" / "gt" / "gt.txt")
    clipped = gt[gt[:, 1] == 3]  # the third object seen is uuid-x (uuid-y never became a track)
    np.testing.assert_allclose(clipped[0, 2:6], [60, 40, 4, 8])
    assert len(gt) == 5
    with pytest.raises(ConvertError, match=r"sequence alley .*frame 1 .*outside.*--strict"):
        gt_to_mot(manifest, gs.JOB, str(tmp_path / "mot2"), strict=True)


def test_bad_input_missing_frame_file(job: Path, tmp_path: Path) -> None:
    (tmp_path / "gt" / "frames" / "court" / "f3.png").unlink()
    res = run_trackcast(
        "convert", "gt-to-mot", "--manifest", str(job), "--job-name", gs.JOB, "--out", str(tmp_path / "m")
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert re.search(
        r"sequence court \(manifest line 2\), frame 3 \(f3.png\): the frame file is missing", res.stderr
    ), res.stderr


def test_bad_input_malformed_manifest_and_sequence(job: Path, tmp_path: Path) -> None:
    job.write_text(job.read_text() + "{not json\n")
    with pytest.raises(ConvertError, match="manifest line 4: not JSON"):
        gt_to_mot(str(job), gs.JOB, str(tmp_path / "mot"))
    with pytest.raises(ConvertError, match="--split"):
        gt_to_mot(str(job), gs.JOB, str(tmp_path / "mot"), split=[0.5, 0.6])

    def unknown_frame(labels: dict[str, Any]) -> None:
        labels["tracking-annotations"].append({"frame-no": "9", "frame": "nope.png", "annotations": []})

    with pytest.raises(
        ConvertError,
        match=r"sequence court .*frame '9' \(nope.png\): annotated frame is not in the sequence file",
    ):
        gt_to_mot(_edited_job(tmp_path / "b", court=unknown_frame), gs.JOB, str(tmp_path / "mot3"))


# ----------------------------------------------------------------------------------- mot-to-coco


def test_mot_to_coco_loads_with_pycocotools_and_links_are_right(job: Path, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    mot = tmp_path / "mot"
    gt_to_mot(str(job), gs.JOB, str(mot), split=[0.6, 0.4])
    res = run_trackcast("convert", "mot-to-coco", "--mot", str(mot), "--half")
    assert res.returncode == 0, res.stderr
    files = json.loads(res.stdout)["files"]
    assert set(files) == {"train", "train_half1", "train_half2", "val", "val_half1", "val_half2"}
    total_images = total_anns = 0
    for split in ("train", "val"):
        path = mot / "annotations" / f"{split}.json"
        coco = COCO(str(path))  # pycocotools builds its index: ids unique, references resolve
        doc = json.loads(path.read_text())
        seqs = sorted(p.name for p in (mot / split).iterdir())
        assert [v["file_name"] for v in doc["videos"]] == seqs
        assert [c["id"] for c in doc["categories"]] == [1, 2] and coco.getCatIds(catNms=["ball"]) == [2]
        images = doc["images"]
        assert [im["id"] for im in images] == list(range(1, len(images) + 1))
        assert len(images) == sum(gs.EXPECTED_LENGTH[s] for s in seqs)
        gt_rows = {s: [list(map(float, r.split(","))) for r in gs.EXPECTED_GT[s].splitlines()] for s in seqs}
        assert len(doc["annotations"]) == sum(len(r) for r in gt_rows.values())
        by_id = {im["id"]: im for im in images}
        for im in images:
            seq = im["file_name"].split("/")[0]
            assert (
                im["file_name"] == f"{seq}/img1/{im['frame_id']:06d}.jpg"
                and (mot / split / im["file_name"]).is_file()
            )
            assert (im["width"], im["height"]) == (gs.W, gs.H)
            assert im["video_id"] == seqs.index(seq) + 1
            prev, nxt = im["prev_image_id"], im["next_image_id"]
            assert prev == (-1 if im["frame_id"] == 1 else im["id"] - 1)
            assert nxt == (-1 if im["frame_id"] == gs.EXPECTED_LENGTH[seq] else im["id"] + 1)
            if prev != -1:
                assert (
                    by_id[prev]["frame_id"] == im["frame_id"] - 1
                    and by_id[prev]["video_id"] == im["video_id"]
                )
        # every gt row is an annotation on the image of its frame, with its class and box
        got = sorted((by_id[a["image_id"]]["file_name"].split("/")[0], by_id[a["image_id"]]["frame_id"], a["category_id"],
                      *a["bbox"], a["area"]) for a in doc["annotations"])  # fmt: skip
        want = sorted(
            (s, int(r[0]), int(r[7]), r[2], r[3], r[4], r[5], r[4] * r[5])
            for s, rows in gt_rows.items()
            for r in rows
        )
        assert got == want
        # track ids never collide across sequences
        per_track = {}
        for a in doc["annotations"]:
            per_track.setdefault(a["track_id"], set()).add(by_id[a["image_id"]]["video_id"])
        assert all(len(v) == 1 for v in per_track.values())
        assert len(per_track) == sum(len({int(r[1]) for r in rows}) for rows in gt_rows.values())
        total_images += len(images)
        total_anns += len(doc["annotations"])
        # the halves split each sequence in two and renumber frames from 1
        h1 = json.loads((mot / "annotations" / f"{split}_half1.json").read_text())
        h2 = json.loads((mot / "annotations" / f"{split}_half2.json").read_text())
        assert len(h1["images"]) + len(h2["images"]) == len(images)
        assert len(h1["annotations"]) + len(h2["annotations"]) == len(doc["annotations"])
        assert all(im["frame_id"] >= 1 for im in h1["images"] + h2["images"])
        COCO(str(mot / "annotations" / f"{split}_half2.json"))
    assert (total_images, total_anns) == (9, 6)


def test_mot_to_coco_bad_input(job: Path, tmp_path: Path) -> None:
    mot = tmp_path / "mot"
    gt_to_mot(str(job), gs.JOB, str(mot))
    (mot / "train" / "gate" / "img1" / "000002.jpg").unlink()
    with pytest.raises(ConvertError, match=r"sequence gate, frame 2: img1/000002.jpg is missing"):
        mot_to_coco(str(mot))
    gt_to_mot(str(job), gs.JOB, str(mot))
    gt = mot / "train" / "court" / "gt" / "gt.txt"
    gt.write_text("0,1,0,0,64,48,1,1,1\n")  # a 0-based frame
    with pytest.raises(
        ConvertError, match=r"sequence court: gt/gt.txt:1: frame must be an integer from 1 to 10000000, got 0"
    ):
        mot_to_coco(str(mot))
    gt.write_text("2,1,0,0,64,48,1,5,1\n")
    with pytest.raises(ConvertError, match=r"sequence court, frame 2: class 5 is not a category"):
        mot_to_coco(str(mot))
    gt.write_text("2,1,0,0,64,48,0,1,1\n2,2,1,1,5,5,1,1,1\n")  # first row marked ignore
    res = mot_to_coco(str(mot))
    assert res["warnings"] == {"ignored_row": 1} and res["files"]["train"]["annotations"] == 6


# ----------------------------------------------------------------------------------- mot-to-gt


def test_mot_to_gt_writes_left_as_x_and_top_as_y(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        (frames / f"{i:03d}.jpg").write_bytes(gs.frame_image(gs.grey(i), ".jpg"))
    tracks = tmp_path / "tracks.txt"
    tracks.write_text(
        "1,7,5.5,30.25,10,8,0.9,-1,-1,-1\n3,7,6,31,10,8,0.8,-1,-1,-1\n3,8,50,2,20,10,0.7,-1,-1,-1\n"
    )
    out = tmp_path / "pre"
    res = mot_to_gt(str(tracks), str(frames), str(out), seq_name="cam1")
    assert res["warnings"] == {"box_clipped": 1}  # track 8 reaches past the right edge (50 + 20 > 64)
    line = json.loads((out / "input.manifest").read_text())
    labels = json.loads(Path(line["trackcast-prelabels-ref"]).read_text())["tracking-annotations"]
    seq_doc = json.loads(Path(line["source-ref"]).read_text())
    assert seq_doc["number-of-frames"] == 3 and [f["frame"] for f in seq_doc["frames"]] == [
        "000.jpg",
        "001.jpg",
        "002.jpg",
    ]
    assert Path(seq_doc["prefix"]) == frames.resolve()
    assert [e["frame"] for e in labels] == ["000.jpg", "001.jpg", "002.jpg"] and labels[1][
        "annotations"
    ] == []
    a = labels[0]["annotations"][0]
    assert (a["left"], a["top"], a["width"], a["height"]) == (5.5, 30.25, 10, 8)
    assert a["object-name"] == "person:7" and a["class-id"] == "0"
    assert labels[2]["annotations"][0]["object-id"] == a["object-id"]  # same track, same object-id
    b = labels[2]["annotations"][1]
    assert (b["left"], b["top"], b["width"], b["height"]) == (50, 2, 14, 10)
    meta = line["trackcast-prelabels-ref-metadata"]
    assert meta["class-map"] == {"0": "person"} and meta["type"] == "groundtruth/video-object-tracking"
    bad = tmp_path / "bad.txt"
    bad.write_text("9,1,1,1,5,5,0.9,-1,-1,-1\n")
    with pytest.raises(ConvertError, match=r"sequence cam1, frame 9: .* has only 3 images"):
        mot_to_gt(str(bad), str(frames), str(tmp_path / "x"), seq_name="cam1")


@needs_shared
def test_round_trip_futsal_tracks_through_ground_truth(tmp_path: Path) -> None:
    tracks = tmp_path / "tracks.txt"
    res = run_trackcast("track", str(FUTSAL), "--model", str(MODEL), "--out", str(tracks), "--no-progress")
    assert res.returncode == 0, res.stderr
    frames = tmp_path / "futsal"
    frames.mkdir()
    with av.open(str(FUTSAL)) as c:
        for i, f in enumerate(c.decode(video=0), start=1):
            cv2.imwrite(str(frames / f"frame_{i:04d}.jpg"), f.to_ndarray(format="bgr24"))
    width, height = 720, 1280
    res = run_trackcast(
        "convert",
        "mot-to-gt",
        "--tracks",
        str(tracks),
        "--frames",
        str(frames),
        "--out",
        str(tmp_path / "pre"),
    )
    assert res.returncode == 0, res.stderr
    pre = json.loads(res.stdout)
    res = run_trackcast("convert", "gt-to-mot", "--manifest", pre["manifest"], "--job-name", pre["label_attribute"],
                        "--out", str(tmp_path / "mot"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    back = json.loads(res.stdout)
    assert back["warnings"] == {} and back["frames"] == 262

    hyp = read_mot(tracks)
    # what Ground Truth can hold: boxes inside the image (mot-to-gt clips, and counts each one it clips)
    x1, y1 = np.maximum(hyp[:, 2], 0), np.maximum(hyp[:, 3], 0)
    x2, y2 = np.minimum(hyp[:, 2] + hyp[:, 4], width), np.minimum(hyp[:, 3] + hyp[:, 5], height)
    inside = (x2 > x1) & (y2 > y1)
    whole = (
        (hyp[:, 2] >= 0)
        & (hyp[:, 3] >= 0)
        & (hyp[:, 2] + hyp[:, 4] <= width)
        & (hyp[:, 3] + hyp[:, 5] <= height)
    )
    boxes = np.where(whole[:, None], hyp[:, 2:6], np.column_stack([x1, y1, x2 - x1, y2 - y1]))
    expected = np.column_stack([hyp[:, :2], boxes])[inside]
    changed = int((inside & ~whole).sum())
    assert pre["warnings"].get("box_clipped", 0) == changed and pre["warnings"].get(
        "box_outside_image", 0
    ) == int((~inside).sum())
    assert len(hyp) > 1000 and changed < len(hyp) // 10

    gt = read_mot(tmp_path / "mot" / "train" / "futsal" / "gt" / "gt.txt")
    assert len(gt) == len(expected)
    # identities: a one-to-one map between tracker ids and Ground Truth tracks
    pairs = {(int(a), int(b)) for a, b in zip(sorted_ids(expected), sorted_ids(gt), strict=True)}
    assert (
        len(pairs)
        == len({p[0] for p in pairs})
        == len({p[1] for p in pairs})
        == len(set(hyp[:, 1].astype(int)))
    )
    mapping = dict(pairs)
    got = {(int(r[0]), int(r[1])): r[2:6] for r in gt}
    for r in expected:
        np.testing.assert_allclose(got[(int(r[0]), mapping[int(r[1])])], r[2:6], atol=1e-4)


def sorted_ids(rows: np.ndarray) -> np.ndarray:
    """Track ids of rows ordered by (frame, box): the same order on both sides of a round trip."""
    order = np.lexsort((rows[:, 3], rows[:, 2], rows[:, 0]))
    return rows[order, 1]


# ----------------------------------------------------------------------------------- S3 + SageMaker (moto)


def test_metric_regexes_read_yolox_log_lines() -> None:
    log = (
        "2026-11-21 10:00:00 | INFO     | yolox.core.trainer:261 - epoch: 3/80, iter: 10/125, mem: 3214Mb, "
        "iter_time: 0.412s, data_time: 0.002s, total_loss: 7.4, iou_loss: 2.9, l1_loss: 0.0, conf_loss: 3.1, "
        "cls_loss: 1.4, lr: 1.250e-04, size: 640, ETA: 1:08:32\n"
        " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.412\n"
        " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.655\n"
        " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 0.437\n"
        " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.201\n"
    )
    found = {name: [float(m) for m in re.findall(rx, log)] for name, rx in launch.METRICS.items()}
    assert found == {"train:total_loss": [7.4], "train:iou_loss": [2.9], "train:conf_loss": [3.1], "train:cls_loss": [1.4],
                     "train:lr": [1.25e-4], "val:AP": [0.412], "val:AP50": [0.655], "val:AP75": [0.437]}  # fmt: skip


def _aws(url: str) -> list[str]:
    return ["--endpoint-url", url, "--region", "eu-west-1"]


@pytest.mark.usefixtures("aws_env")
def test_convert_reads_and_writes_s3_and_train_jobs_start(moto_url: str, tmp_path: Path) -> None:
    s3 = aws_client("s3", moto_url)
    for bucket in ("gt-labels", "gt-datasets", "gt-models"):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    from deploy.sagemaker.manage import Clients

    store = Storage(Clients("eu-west-1", moto_url))
    manifest = gs.write_job(store, "s3://gt-labels/jobs")
    res = run_trackcast("convert", "gt-to-mot", "--manifest", manifest, "--job-name", gs.JOB, "--out", "s3://gt-datasets/futsal",
                        "--split", "0.6,0.4", *_aws(moto_url))  # fmt: skip
    assert res.returncode == 0, res.stderr
    splits = json.loads(res.stdout)["splits"]
    for split, names in splits.items():
        for name in names:
            body = (
                s3.get_object(Bucket="gt-datasets", Key=f"futsal/{split}/{name}/gt/gt.txt")["Body"]
                .read()
                .decode()
            )
            assert body == gs.EXPECTED_GT[name]
            keys = s3.list_objects_v2(Bucket="gt-datasets", Prefix=f"futsal/{split}/{name}/img1/")["Contents"]
            assert len(keys) == gs.EXPECTED_LENGTH[name]
    res = run_trackcast("convert", "mot-to-coco", "--mot", "s3://gt-datasets/futsal", *_aws(moto_url))
    assert res.returncode == 0, res.stderr
    train = json.loads(
        s3.get_object(Bucket="gt-datasets", Key="futsal/annotations/train.json")["Body"].read()
    )
    assert len(train["images"]) == sum(gs.EXPECTED_LENGTH[n] for n in splits["train"])
    # pre-labels from S3 tracks and frames back to S3
    s3.put_object(
        Bucket="gt-labels",
        Key="tracks/alley.txt",
        Body=b"1,3,10,5,20,30,0.9,-1,-1,-1\n2,3,11,5,20,30,0.9,-1,-1,-1\n",
    )
    res = run_trackcast("convert", "mot-to-gt", "--tracks", "s3://gt-labels/tracks/alley.txt", "--frames", "s3://gt-labels/jobs/frames/alley",
                        "--out", "s3://gt-labels/prelabels", *_aws(moto_url))  # fmt: skip
    assert res.returncode == 0, res.stderr
    line = json.loads(s3.get_object(Bucket="gt-labels", Key="prelabels/input.manifest")["Body"].read())
    assert line["source-ref"] == "s3://gt-labels/prelabels/alley.json"
    seq = json.loads(s3.get_object(Bucket="gt-labels", Key="prelabels/alley.json")["Body"].read())
    assert seq["prefix"] == "s3://gt-labels/jobs/frames/alley/" and seq["number-of-frames"] == 4
    res = run_trackcast("convert", "gt-to-mot", "--manifest", "s3://gt-labels/prelabels/input.manifest", "--job-name",
                        "trackcast-prelabels", "--out", str(tmp_path / "back"), *_aws(moto_url))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (
        tmp_path / "back" / "train" / "alley" / "gt" / "gt.txt"
    ).read_text() == "1,1,10,5,20,30,1,1,1\n2,1,11,5,20,30,1,1,1\n"

    # a training job on that dataset
    sm = aws_client("sagemaker", moto_url)
    common = [
        "--image",
        IMAGE,
        "--role",
        ROLE,
        "--dataset",
        "s3://gt-datasets/futsal/",
        "--output",
        "s3://gt-models/yolox/",
        *_aws(moto_url),
    ]
    res = run_trackcast("train", "launch", "--job-name", "yolox-futsal-1", "--instance-type", "ml.g5.2xlarge", "--spot",
                        "--hp", "max_epoch=30", *common)  # fmt: skip
    assert res.returncode == 0, res.stderr
    d = sm.describe_training_job(TrainingJobName="yolox-futsal-1")
    assert d["TrainingJobArn"] == json.loads(res.stdout)["TrainingJobArn"]
    assert d["AlgorithmSpecification"]["TrainingImage"] == IMAGE and d["RoleArn"] == ROLE
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in d["InputDataConfig"]} == {
        "train": "s3://gt-datasets/futsal/train/", "val": "s3://gt-datasets/futsal/val/", "annotations": "s3://gt-datasets/futsal/annotations/"}  # fmt: skip
    assert (
        d["HyperParameters"]["max_epoch"] == "30" and d["HyperParameters"]["num_classes"] == "2"
    )  # from classes.json
    assert d["ResourceConfig"] == {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    assert d["OutputDataConfig"]["S3OutputPath"] == "s3://gt-models/yolox/"
    assert d["EnableManagedSpotTraining"] is True
    assert d["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400, "MaxWaitTimeInSeconds": 172800}
    assert d["CheckpointConfig"]["S3Uri"] == "s3://gt-models/yolox/checkpoints/yolox-futsal-1/"
    # (moto answers DescribeTrainingJob with its own MetricDefinitions; ours are checked on the tuning job)

    res = run_trackcast("train", "tune", "--job-name", "yolox-hpo-1", "--max-jobs", "8", "--max-parallel", "2",
                        "--lr-range", "1e-5", "1e-3", "--batch-range", "8", "24", *common)  # fmt: skip
    assert res.returncode == 0, res.stderr
    t = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="yolox-hpo-1")
    cfg = t["HyperParameterTuningJobConfig"]
    assert cfg["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "val:AP"}
    assert cfg["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2}
    ranges = cfg["ParameterRanges"]
    assert {r["Name"]: (float(r["MinValue"]), float(r["MaxValue"]), r["ScalingType"]) for r in ranges["ContinuousParameterRanges"]} == {
        "basic_lr_per_img": (1e-5, 1e-3, "Logarithmic"), "weight_decay": (1e-5, 1e-3, "Logarithmic")}  # fmt: skip
    assert [(r["Name"], r["MinValue"], r["MaxValue"]) for r in ranges["IntegerParameterRanges"]] == [
        ("batch_size", "8", "24")
    ]
    td = t["TrainingJobDefinition"]
    metrics = {m["Name"]: m["Regex"] for m in td["AlgorithmSpecification"]["MetricDefinitions"]}
    assert metrics == launch.METRICS and "val:AP" in metrics
    assert td["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert not {"basic_lr_per_img", "weight_decay", "batch_size"} & set(td["StaticHyperParameters"])
    assert td["StaticHyperParameters"]["num_classes"] == "2"
    assert len(td["InputDataConfig"]) == 3

    # bad input: a channel with nothing in it, a bad role, a tuning name over 32 characters
    res = run_trackcast("train", "launch", "--image", IMAGE, "--role", ROLE, "--dataset", "s3://gt-datasets/nothing/",
                        "--output", "s3://gt-models/yolox/", *_aws(moto_url))  # fmt: skip
    assert res.returncode == 2 and "channel train: nothing at s3://gt-datasets/nothing/train/" in res.stderr
    res = run_trackcast("train", "launch", "--image", IMAGE, "--role", "admin", "--dataset", "s3://gt-datasets/futsal/",
                        "--output", "s3://gt-models/yolox/", *_aws(moto_url))  # fmt: skip
    assert (
        res.returncode == 2
        and "--role must be an IAM role ARN" in res.stderr
        and "Traceback" not in res.stderr
    )
    with pytest.raises(LaunchError, match="up to 32"):
        launch.tuning_request(
            "x" * 33, launch.JobSpec(IMAGE, ROLE, "s3://m/", {"train": "s3://d/"}), launch.Ranges()
        )
