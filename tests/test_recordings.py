"""From recordings to labels: the frame catalog (SQLite and DynamoDB in moto; the local detector and
Rekognition behind a model-checking local endpoint, throttled), Ground Truth manifests that convert
back through gt-to-mot, anonymisation of rendered faces, and CreateLabelingJob requests."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.awslocal import AwsLocal, image_bytes
from tests.bags import write_bag
from tests.conftest import AWS_REGION, SHARED_DATA, aws_client, run_trackcast

MODEL = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
PED = SHARED_DATA / "video" / "pedestrians_720p25.mp4"
FUTSAL = SHARED_DATA / "video" / "futsal_broadcast_720x1280p30.mp4"
ROLE = "arn:aws:iam::123456789012:role/labelling"
TEAM = f"arn:aws:sagemaker:{AWS_REGION}:123456789012:workteam/private-crowd/drivers"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A ROS 2 bag of the plaza clip's first 8 frames (JPEG) and a folder of 6 futsal frames (PNG)."""
    if not MODEL.is_file():
        pytest.skip(f"../shared is absent (looked for {MODEL})")
    from service.media.video import iter_frames

    root = tmp_path_factory.mktemp("recordings")
    bag = write_bag(
        root / "plaza-drive", [f.image for f in iter_frames(str(PED), 8)], ros=2, encoding="jpeg", fps=25
    )
    futsal = root / "futsal"
    futsal.mkdir()
    for f in iter_frames(str(FUTSAL), 30):
        if f.index % 5 == 0:
            cv2.imwrite(str(futsal / f"{f.index:04d}.png"), f.image)
    return {"bag": bag, "futsal": futsal, "root": root}


@pytest.fixture(scope="module")
def detector() -> Iterator[Any]:
    from detector_client import create_detector
    from detector_client.config import OnnxDetectorConfig

    det = create_detector(OnnxDetectorConfig(model=str(MODEL), score_thresh=0.1, max_batch=4))
    yield det
    det.close()


@pytest.fixture
def aws(moto_url: str, aws_env: None) -> Iterator[AwsLocal]:
    local = AwsLocal(moto_url)
    yield local
    local.close()


def rekognition_labels(det: Any, s3: Any) -> Any:
    """DetectLabels as Rekognition answers it, computed by the real detector on the request's image."""

    def handle(params: dict[str, Any]) -> dict[str, Any]:
        img = cv2.imdecode(np.frombuffer(image_bytes(params, s3), np.uint8), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        labels: dict[str, dict[str, Any]] = {}
        for x1, y1, x2, y2, s, c in det.detect_sync([det.spec.prepare(img)])[0].rows.tolist():
            conf = s * 100
            if conf < params.get("MinConfidence", 55):
                continue
            lab = labels.setdefault(det.class_names[int(c)].title(), {"Instances": [], "Confidence": 0.0})
            lab["Confidence"] = max(lab["Confidence"], conf)
            lab["Instances"].append({"Confidence": conf, "BoundingBox": {
                "Left": x1 / w, "Top": y1 / h, "Width": (x2 - x1) / w, "Height": (y2 - y1) / h}})  # fmt: skip
        out = [{"Name": k, **v, "Parents": []} for k, v in labels.items()]
        out.append({"Name": "Outdoors", "Confidence": 90.0, "Instances": [], "Parents": []})  # a scene label
        return {"Labels": out[: params.get("MaxLabels", 1000)], "LabelModelVersion": "3.0"}

    return handle


def cli_aws(url: str) -> list[str]:
    return ["--endpoint-url", url, "--region", AWS_REGION]


@pytest.fixture(scope="module")
def plaza_catalog(recordings: dict[str, Path]) -> Path:
    """`trackcast catalog build BAG --extract-to DIR` into SQLite: the plaza bag's 8 frames."""
    db = recordings["root"] / "plaza.db"
    res = run_trackcast("catalog", "build", str(recordings["bag"]), "--extract-to", str(recordings["root"] / "plaza"),
                        "--model", str(MODEL), "--catalog", str(db))  # fmt: skip
    assert res.returncode == 0, res.stderr
    built = json.loads(res.stdout)
    assert (built["frames"], built["labelled"], built["extracted"]["written"]) == (8, 8, 8)
    assert built["labeller"] == "local:yolox_nano_416x416.onnx"
    return db


def test_catalog_in_sqlite_and_dynamodb_from_a_bag_and_a_folder(
    recordings: dict[str, Path], plaza_catalog: Path, detector: Any, aws: AwsLocal, tmp_path: Path
) -> None:
    import shutil

    from deploy.sagemaker.manage import Clients
    from training import catalog as cat
    from training.storage import Storage

    db = tmp_path / "frames.db"
    shutil.copy(plaza_catalog, db)
    clients, store = Clients(AWS_REGION, aws.url), Storage()
    local = cat.LocalLabeller(detector, "yolox_nano_416x416.onnx", 0.3)
    sqlite, dynamo = (
        cat.open_catalog(str(db), create=True),
        cat.open_catalog("dynamodb://frames", clients, create=True),
    )
    cat.build(str(recordings["bag"]), dynamo, local, store, extract_to=str(recordings["root"] / "plaza"))
    for catalog in (sqlite, dynamo):
        assert cat.build(str(recordings["futsal"]), catalog, local, store)["labelled"] == 6
        again = cat.build(str(recordings["futsal"]), catalog, local, store)
        assert (again["labelled"], again["already_catalogued"]) == (0, 6), (
            "a second build skips what is catalogued"
        )
    selections: dict[str, list[list[Any]]] = {}
    for catalog in (sqlite, dynamo):
        for query in (
            "person >= 15",
            "person >= 4 and person < 15",
            "person >= 15 and frame <= 3",
            "not person",
        ):
            rows = catalog.select(cat.parse_query(catalog, query))
            selections.setdefault(query, []).append([(r.source, r.frame, r.counts, r.t_ns) for r in rows])
    for query, (sqlite_rows, dynamo_rows) in selections.items():
        assert sqlite_rows == dynamo_rows, f"{query}: SQLite and DynamoDB agree"
    # the plaza (a crowd of 20+) and the futsal pitch (5-10 players) are told apart
    assert [(s, f) for s, f, _c, _t in selections["person >= 15"][0]] == [
        ("plaza-drive", i) for i in range(1, 9)
    ]
    assert {s for s, *_ in selections["person >= 4 and person < 15"][0]} == {str(recordings["futsal"])}
    assert [f for _s, f, _c, _t in selections["person >= 15 and frame <= 3"][0]] == [1, 2, 3]
    assert selections["not person"][0] == []
    plaza = selections["person >= 15"][0]
    assert plaza[1][3] - plaza[0][3] == 40_000_000, "bag timestamps are kept"
    # the command line, and its errors: an unknown field, a missing table, a missing file
    res = run_trackcast("catalog", "query", "person >= 15 and frame <= 2", "--catalog", str(db), "--json")
    assert res.returncode == 0, res.stderr
    assert [r["frame"] for r in json.loads(res.stdout)] == [1, 2]
    res = run_trackcast("catalog", "query", "persn >= 2", "--catalog", str(db))
    assert res.returncode == 2 and "unknown field 'persn'; did you mean 'person'?" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    with pytest.raises(cat.CatalogError, match="the DynamoDB table 'nope' does not exist"):
        cat.open_catalog("dynamodb://nope", clients)
    with pytest.raises(cat.CatalogError, match="no catalog at"):
        cat.open_catalog(str(tmp_path / "none.db"))
    (tmp_path / "junk.db").write_bytes(b"not sqlite" * 100)
    with pytest.raises(cat.CatalogError, match="not a trackcast catalog"):
        cat.open_catalog(str(tmp_path / "junk.db"))


def test_rekognition_labels_frames_from_s3_through_throttling(
    recordings: dict[str, Path], detector: Any, aws: AwsLocal, moto_url: str, tmp_path: Path
) -> None:
    from deploy.sagemaker.manage import Clients
    from training import catalog as cat
    from training.storage import Storage

    s3 = aws_client("s3", moto_url)
    s3.create_bucket(Bucket="frames", CreateBucketConfiguration={"LocationConstraint": AWS_REGION})
    for p in sorted(recordings["futsal"].glob("*.png")):
        s3.put_object(Bucket="frames", Key=f"futsal/{p.name}", Body=p.read_bytes())
    aws.handlers["DetectLabels"] = rekognition_labels(detector, s3)
    aws.throttle["DetectLabels"] = 3
    clients = Clients(AWS_REGION, aws.url)
    labeller = cat.RekognitionLabeller(clients, min_confidence=30, backoff=(0.01, 0.05))
    catalog = cat.open_catalog(str(tmp_path / "rk.db"), clients, create=True)
    res = cat.build("s3://frames/futsal", catalog, labeller, Storage(clients))
    assert (res["labelled"], res["throttled"]) == (6, 3)
    calls = aws.calls("DetectLabels")
    assert len(calls) == 6 + 3 and aws.invalid == []
    assert calls[0]["Image"] == {"S3Object": {"Bucket": "frames", "Name": "futsal/0005.png"}}, (
        "S3 frames by reference"
    )
    local = cat.LocalLabeller(detector, "yolox", 0.3)
    frames = [cv2.imread(str(p)) for p in sorted(recordings["futsal"].glob("*.png"))]
    want = [c for c, _s in local.label([(f, b"", "") for f in frames])]
    got = catalog.select(None)
    assert [r.counts.pop("outdoors") for r in got] == [1] * 6, "scene labels count once"
    assert [r.counts for r in got] == want, "Rekognition's instances are the frame's objects"
    # local frames go as bytes; a throttling that does not end is an error that says what to do
    aws.throttle["DetectLabels"] = 100
    stubborn = cat.RekognitionLabeller(clients, retries=2, backoff=(0.01, 0.02))
    with pytest.raises(cat.CatalogError, match=r"still throttled after 2 retries; lower --rate"):
        cat.build(str(recordings["futsal"]), catalog, stubborn, Storage(clients))
    assert base64.b64decode(aws.calls("DetectLabels")[-1]["Image"]["Bytes"])[:4] == b"\x89PNG"
    catalog.close()


def test_manifests_point_at_anonymised_frames_and_labels_come_back_on_the_raw_ones(
    plaza_catalog: Path, tmp_path: Path
) -> None:
    import shutil

    from training import catalog as cat

    db = str(tmp_path / "frames.db")
    shutil.copy(plaza_catalog, db)
    manifest = tmp_path / "job" / "input.manifest"
    res = run_trackcast("catalog", "query", "person >= 15", "--catalog", db, "--to-manifest", str(manifest))
    assert res.returncode == 2 and "has no anonymised copy: run `trackcast anonymize" in res.stderr
    res = run_trackcast(
        "anonymize", "--catalog", db, "--out", str(tmp_path / "anon"), "--where", "frame <= 6"
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["frames"] == 6
    res = run_trackcast("catalog", "query", "person >= 15 and anonymized == 1", "--catalog", db,
                        "--to-manifest", str(manifest), "--kind", "video")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["sequences"] == 1
    line = json.loads(manifest.read_text())
    seq = json.loads(Path(line["source-ref"]).read_text())
    assert seq["prefix"] == str((tmp_path / "anon").resolve()) + "/" and seq["number-of-frames"] == 6
    assert [f["frame"] for f in seq["frames"]] == [f"frame_{i:06d}.jpg" for i in range(1, 7)]
    assert seq["frames"][1]["unix-timestamp"] - seq["frames"][0]["unix-timestamp"] == pytest.approx(0.04)
    # a workforce labels the anonymised sequence: one box per frame for one person
    labels = {"tracking-annotations": [
        {"frame-no": i, "frame": f["frame"], "annotations": [
            {"top": 100 + i, "left": 200 + 2 * i, "width": 40, "height": 90, "class-id": "0", "object-id": "p1",
             "object-name": "person:1", "label-category-attributes": {}}]}
        for i, f in enumerate(seq["frames"])]}  # fmt: skip
    label_file = tmp_path / "job" / "SeqLabel.json"
    label_file.write_text(json.dumps(labels))
    line["drive-ref"] = str(label_file)
    line["drive-ref-metadata"] = {"class-map": {"0": "person"}, "type": "groundtruth/video-object-tracking"}
    (tmp_path / "job" / "output.manifest").write_text(json.dumps(line) + "\n")
    res = run_trackcast("convert", "gt-to-mot", "--manifest", str(tmp_path / "job" / "output.manifest"),
                        "--job-name", "drive", "--out", str(tmp_path / "mot"), "--catalog", db)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["raw_frames"] == 6
    seq_dir = next((tmp_path / "mot" / "train").iterdir())
    gt = [r.split(",") for r in (seq_dir / "gt" / "gt.txt").read_text().splitlines()]
    assert [(int(r[0]), float(r[2]), float(r[3])) for r in gt] == [
        (i + 1, 200 + 2 * i, 100 + i) for i in range(6)
    ]
    # the training frames are the raw ones (their bytes, as recorded), not the anonymised copies
    raw = [r for r in cat.open_catalog(db).select(None) if r.frame <= 6]
    for i, r in enumerate(raw, 1):
        copied = (seq_dir / "img1" / f"{i:06d}.jpg").read_bytes()
        assert r.anonymized and copied == Path(r.raw).read_bytes() != Path(r.anonymized).read_bytes()


def face_scene(faces: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """LFW faces (scikit-image ships 100) pasted on a noisy 720p background; their boxes are the truth."""
    rng = np.random.default_rng(seed)
    bg = (rng.normal(110, 8, (720, 1280))).clip(0, 255).astype(np.uint8)
    boxes = []
    x = y = 30
    for f in faces:
        if x + size > 1280:
            x, y = 30, y + int(size * 1.5)
        if y + size > 720:
            break
        bg[y : y + size, x : x + size] = cv2.resize(
            (f * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
        )
        boxes.append((x, y, size, size))
        x += int(size * 1.6)
    return cv2.cvtColor(bg, cv2.COLOR_GRAY2BGR), boxes


def covered(
    truth: tuple[int, int, int, int], regions: list[tuple[int, int, int, int]], share: float = 0.8
) -> bool:
    x, y, w, h = truth
    for x1, y1, x2, y2 in regions:
        ix, iy = max(0, min(x + w, x2) - max(x, x1)), max(0, min(y + h, y2) - max(y, y1))
        if ix * iy >= share * w * h:
            return True
    return False


def test_anonymisation_blurs_the_faces_it_finds_and_nothing_else(tmp_path: Path) -> None:
    from skimage.data import lfw_subset

    from training.anonymize import CascadeDetector, blur, grow

    faces = lfw_subset()[:100]  # the first 100 are faces
    det = CascadeDetector()
    found = total = 0
    first_regions: list[Any] = []
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, size in enumerate((48, 64, 96)):
        img, truth = face_scene(faces[k * 30 : k * 30 + 40], size, k)
        boxes = det.detect(img)
        first_regions = first_regions or boxes
        regions = [grow(b, 0.15, 1280, 720) for b in boxes]
        out = blur(img, boxes)
        mask = np.zeros(img.shape[:2], bool)
        for x1, y1, x2, y2 in regions:
            mask[y1:y2, x1:x2] = True
            assert np.abs(out[y1:y2, x1:x2].astype(int) - img[y1:y2, x1:x2]).mean() > 3, "a region is blurred"
        assert np.array_equal(out[~mask], img[~mask]), "nothing outside the regions changes"
        assert all(any(covered((b[0], b[1], b[2], b[3]), [(t[0], t[1], t[0] + t[2], t[1] + t[3])], 0.3)
                       for t in truth) for b in boxes), "every region is on a face"  # fmt: skip
        found += sum(covered(t, regions) for t in truth)
        total += len(truth)
        cv2.imwrite(str(folder / f"scene{k}.png"), img)
    recall = found / total
    print(f"OpenCV cascades: {found} of {total} rendered LFW faces blurred (recall {recall:.2f})")
    assert total >= 60 and recall >= 0.9
    # the command: a folder in, blurred copies and regions.jsonl out
    for p in sorted(folder.glob("*.png"))[1:]:
        p.unlink()
    res = run_trackcast("anonymize", str(folder), "--out", str(tmp_path / "anon"))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["frames"] == 1 and summary["regions"]["face"] == len(first_regions)
    regions = [json.loads(x) for x in (tmp_path / "anon" / "regions.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in regions] == ["scene0.png"]
    assert sorted(tuple(r) for r in regions[0]["regions"]) == sorted(first_regions)
    res = run_trackcast("anonymize", str(tmp_path / "nothing"), "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr


def test_anonymise_with_rekognition_and_a_video(aws: AwsLocal, tmp_path: Path) -> None:
    """DetectFaces/DetectText boxes (ratios of the frame) become blurred regions; a video is blurred frame by frame."""
    from skimage.data import lfw_subset

    from deploy.sagemaker.manage import Clients
    from service.media.offline import VideoWriter
    from service.media.video import iter_frames
    from training.anonymize import CascadeDetector, RekognitionDetector, anonymize_video, blur, grow

    img, truth = face_scene(lfw_subset()[:6], 96, 1)
    h, w = img.shape[:2]

    def ratio(b: tuple[int, int, int, int]) -> dict[str, float]:
        return {"Left": b[0] / w, "Top": b[1] / h, "Width": b[2] / w, "Height": b[3] / h}

    aws.handlers["DetectFaces"] = lambda p: {
        "FaceDetails": [{"BoundingBox": ratio(b), "Confidence": 99.0} for b in truth[:4]]
    }
    aws.handlers["DetectText"] = lambda p: {"TextDetections": [
        {"DetectedText": "AB 123", "Type": "LINE", "Confidence": 95.0, "Geometry": {"BoundingBox": ratio(truth[4])}},
        {"DetectedText": "AB", "Type": "WORD", "Confidence": 95.0, "Geometry": {"BoundingBox": ratio(truth[4])}}]}  # fmt: skip
    det = RekognitionDetector(Clients(AWS_REGION, aws.url))
    boxes = det.detect(img, b"", "")
    assert sorted((b[0], b[1], b[2], b[3], b[4]) for b in boxes) == sorted(
        [(*t, "face") for t in truth[:4]] + [(*truth[4], "text")]
    )
    assert aws.invalid == [] and len(aws.calls("DetectFaces")) == len(aws.calls("DetectText")) == 1
    out = blur(img, boxes)
    x1, y1, x2, y2 = grow((*truth[5], "face"), 0.15, w, h)
    assert np.array_equal(out[y1:y2, x1:x2], img[y1:y2, x1:x2]), "the face Rekognition did not report stays"
    # a video: every frame blurred where the faces are, re-encoded
    video = tmp_path / "faces.mp4"
    writer = VideoWriter(video, w, h, 10)
    for _ in range(3):
        writer.write(img)
    writer.close()
    res = anonymize_video(str(video), str(tmp_path / "anon.mp4"), CascadeDetector())
    assert res["frames"] == 3 and res["regions"]["face"] >= 3 * 5
    frames = [f.image.astype(int) for f in iter_frames(str(tmp_path / "anon.mp4"))]
    src = img.astype(int)
    found = CascadeDetector().detect(img)
    diffs = [np.abs(f[y : y + bh, x : x + bw] - src[y : y + bh, x : x + bw]).mean() for x, y, bw, bh, _k in found
             for f in frames]  # fmt: skip
    background = float(np.abs(frames[0][600:, :] - src[600:, :]).mean())  # re-encoding alone
    assert len(found) >= 5 and min(diffs) > 2 * background, (diffs, background)


def test_label_create_sends_requests_botocore_accepts(aws: AwsLocal, moto_url: str) -> None:
    from botocore.session import get_session

    jobs: dict[str, dict[str, Any]] = {}

    def create(params: dict[str, Any]) -> dict[str, Any]:
        jobs[params["LabelingJobName"]] = params
        return {
            "LabelingJobArn": f"arn:aws:sagemaker:{AWS_REGION}:123456789012:labeling-job/{params['LabelingJobName']}"
        }

    aws.handlers["CreateLabelingJob"] = create
    s3 = aws_client("s3", moto_url)
    s3.create_bucket(Bucket="labels", CreateBucketConfiguration={"LocationConstraint": AWS_REGION})
    common = ["--manifest", "s3://labels/in/input.manifest", "--output", "s3://labels/out", "--role", ROLE,
              "--workteam", TEAM, "--labels", "person,ball", *cli_aws(aws.url)]  # fmt: skip
    res = run_trackcast("label", "create", "--task", "video-tracking", "--job-name", "futsal-adjust",
                        "--prelabels", "trackcast-prelabels", *common)  # fmt: skip
    assert res.returncode == 0, res.stderr
    res2 = run_trackcast(
        "label", "create", "--task", "bounding-box", "--job-name", "plaza-boxes", "--free-of-pii", *common
    )
    assert res2.returncode == 0, res2.stderr
    assert aws.invalid == [] and sorted(jobs) == ["futsal-adjust", "plaza-boxes"]
    video, boxes = jobs["futsal-adjust"], jobs["plaza-boxes"]
    assert video["LabelAttributeName"] == "futsal-adjust-ref"
    hc = video["HumanTaskConfig"]
    assert (
        hc["PreHumanTaskLambdaArn"]
        == "arn:aws:lambda:eu-west-1:568282634449:function:PRE-AdjustmentVideoObjectTracking"
    )
    assert hc["UiConfig"] == {
        "HumanTaskUiArn": "arn:aws:sagemaker:eu-west-1:394669845002:human-task-ui/VideoObjectTracking"
    }
    # the built-in Lambdas we pick are the ones botocore's service documentation lists
    shape = get_session().get_service_model("sagemaker").shape_for("HumanTaskConfig")
    doc = (
        shape.members["PreHumanTaskLambdaArn"].documentation
        + shape.members["AnnotationConsolidationConfig"].documentation
    )
    acs_doc = get_session().get_service_model("sagemaker").shape_for("AnnotationConsolidationConfig").members[
        "AnnotationConsolidationLambdaArn"].documentation  # fmt: skip
    for job in (video, boxes):
        assert job["HumanTaskConfig"]["PreHumanTaskLambdaArn"] in doc
        assert (
            job["HumanTaskConfig"]["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"]
            in acs_doc
        )
    categories = json.loads(
        s3.get_object(Bucket="labels", Key="out/futsal-adjust/label-categories.json")["Body"].read()
    )
    assert [c["label"] for c in categories["labels"]] == ["person", "ball"]
    assert categories["auditLabelAttributeName"] == "trackcast-prelabels-ref"
    assert (
        boxes["HumanTaskConfig"]["UiConfig"]["UiTemplateS3Uri"]
        == "s3://labels/out/plaza-boxes/template.liquid.html"
    )
    template = (
        s3.get_object(Bucket="labels", Key="out/plaza-boxes/template.liquid.html")["Body"].read().decode()
    )
    assert "<crowd-bounding-box" in template
    assert boxes["InputConfig"]["DataAttributes"] == {
        "ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]
    }
    assert "DataAttributes" not in video["InputConfig"]
    # bad input
    res = run_trackcast("label", "create", "--task", "bounding-box", *common, "--job-name", "bad_name")
    assert res.returncode == 2 and "--job-name 'bad_name': 1-63 letters" in res.stderr, res.stderr
    from deploy.errors import DeployError
    from deploy.sagemaker.manage import Clients
    from training.labeling import LabelingError, create_job
    from training.storage import Storage

    clients = Clients(AWS_REGION, aws.url)
    good = {"job_name": "x", "task": "bounding-box", "manifest": "s3://labels/in/m", "output": "s3://labels/o",
            "role": ROLE, "workteam": TEAM, "labels": ["person"], "region": AWS_REGION}  # fmt: skip
    for change, message in (
        ({"manifest": "/local/input.manifest"}, "--manifest '/local/input.manifest': Ground Truth reads"),
        ({"region": "sa-east-1"}, "not offered in sa-east-1"),
        ({"role": "labelling"}, "--role must be an IAM role ARN"),
        ({"workteam": "drivers"}, "--workteam 'drivers': a work team ARN"),
        ({"task": "polygon"}, "--task 'polygon': one of video-tracking, bounding-box"),
        ({"task": "video-tracking", "prelabels": "x"}, "needs a name other than its pre-labels'"),
    ):
        with pytest.raises((LabelingError, DeployError), match=message):
            create_job(clients, Storage(clients), **{**good, **change})  # type: ignore[arg-type]
