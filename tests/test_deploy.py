"""SageMaker deployment against moto in server mode, and the async handler / processing job run locally."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA, aws_client, run_trackcast
from tracker.mot import read_mot

MODEL = SHARED_DATA / "models" / "yolox_nano_416x416.onnx"
FUTSAL = SHARED_DATA / "video" / "futsal_broadcast_720x1280p30.mp4"
PLAZA = SHARED_DATA / "video" / "pedestrians_720p25.mp4"
PLAZA_ANALYTICS = """
lines: [{id: crossing, points: [[0, 360], [1280, 360]], in_side: left}]
zones: [{id: meeting_spot, points: [[190, 270], [430, 270], [430, 450], [190, 450]], loiter_s: 5}]
"""
needs_shared = pytest.mark.skipif(not MODEL.is_file(), reason=f"../shared is absent (looked for {MODEL})")
ROLE = "arn:aws:iam::123456789012:role/trackcast-sagemaker"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/trackcast-serve:latest"


pytestmark = pytest.mark.usefixtures("aws_env")


SHORT_FRAMES = 60


@pytest.fixture(scope="module")
def short_futsal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The futsal clip's first 60 frames (H.264 again): the handler tests' work, in a quarter of the time."""
    import shutil

    if not FUTSAL.is_file():
        pytest.skip(f"../shared is absent (looked for {FUTSAL})")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed (make test installs it)")
    out = tmp_path_factory.mktemp("clips") / "futsal60.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-i", str(FUTSAL), "-frames:v", str(SHORT_FRAMES), "-an", "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "18", str(out)], check=True)  # fmt: skip
    return out


def deploy(url: str, *args: str) -> dict:  # type: ignore[type-arg]
    res = run_trackcast("deploy", *args, "--endpoint-url", url, "--region", "eu-west-1")
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


@needs_shared
def test_package_builds_and_uploads(moto_url: str, tmp_path: Path) -> None:
    aws_client("s3", moto_url).create_bucket(
        Bucket="models", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    out = tmp_path / "model.tar.gz"
    r = deploy(moto_url, "package", "--model", str(MODEL), "--preprocess", "yolox", "--classes", "0",
               "--out", str(out), "--s3", "s3://models/yolox/")  # fmt: skip
    assert r["s3"] == "s3://models/yolox/model.tar.gz"
    res = run_trackcast("deploy", "package", "--model", str(MODEL), "--out", str(tmp_path / "m2.tar.gz"),
                        "--s3", "s3://no-such-bucket/x/", "--endpoint-url", moto_url, "--region", "eu-west-1")  # fmt: skip
    assert res.returncode == 2 and "bucket" in res.stderr and "Traceback" not in res.stderr
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        cfg = json.loads(tar.extractfile("trackcast-model.json").read())  # type: ignore[union-attr]
    assert {"model.onnx", "code/inference.py", "code/requirements.txt", "code/deploy/sagemaker/inference.py",
            "code/detector_client/yolox.py", "code/tracker/byte_tracker.py"} <= names  # fmt: skip
    assert cfg["preprocess"] == "yolox" and cfg["classes"] == [0]
    head = aws_client("s3", moto_url).head_object(Bucket="models", Key="yolox/model.tar.gz")
    assert head["ContentLength"] == out.stat().st_size


def test_realtime_update_delete(moto_url: str) -> None:
    sm = aws_client("sagemaker", moto_url)
    r = deploy(moto_url, "realtime", "--name", "yolox-rt", "--model-data", "s3://models/yolox/model.tar.gz",
               "--image", IMAGE, "--role", ROLE, "--instance-type", "ml.g4dn.xlarge", "--count", "2",
               "--data-capture", "s3://models/capture/", "--autoscale", "1", "4", "100")  # fmt: skip
    ep = sm.describe_endpoint(EndpointName="yolox-rt")
    assert ep["EndpointStatus"] == "InService" and ep["EndpointConfigName"] == r["config"]
    cfg = sm.describe_endpoint_config(EndpointConfigName=r["config"])
    pv = cfg["ProductionVariants"][0]
    assert (pv["InstanceType"], pv["InitialInstanceCount"], pv["VariantName"], pv["ModelName"]) == (
        "ml.g4dn.xlarge",
        2,
        "AllTraffic",
        r["model"],
    )
    assert cfg["DataCaptureConfig"]["DestinationS3Uri"] == "s3://models/capture/"
    model = sm.describe_model(ModelName=r["model"])
    assert model["ExecutionRoleArn"] == ROLE and model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://models/yolox/model.tar.gz"
    aas = aws_client("application-autoscaling", moto_url)
    tgt = aas.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=["endpoint/yolox-rt/variant/AllTraffic"]
    )
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in tgt["ScalableTargets"]] == [(1, 4)]
    pol = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    tt = next(p for p in pol if p["PolicyName"] == "yolox-rt-invocations")[
        "TargetTrackingScalingPolicyConfiguration"
    ]
    assert (
        tt["TargetValue"] == 100
        and tt["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )

    # moto 5 has no UpdateEndpoint (it answers 500): that one call is recorded by a botocore hook, the
    # rest (describe, the new model and endpoint config) goes to moto.
    from deploy.sagemaker.manage import Clients, Deployer, ModelSpec

    clients = Clients("eu-west-1", moto_url)
    calls: list[dict] = []  # type: ignore[type-arg]

    def record(params, **kwargs):  # type: ignore[no-untyped-def]
        import types

        calls.append(json.loads(params["body"]))
        http = types.SimpleNamespace(status_code=200, headers={})
        return http, {
            "EndpointArn": "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/yolox-rt",
            "ResponseMetadata": {},
        }

    clients("sagemaker").meta.events.register("before-call.sagemaker.UpdateEndpoint", record)
    u = Deployer(clients).update(
        "yolox-rt", ModelSpec(IMAGE, "s3://models/yolox/model-v2.tar.gz", ROLE), wait=True
    )
    assert calls == [{"EndpointName": "yolox-rt", "EndpointConfigName": u["config"]}]
    assert u["previous_config"] == r["config"] != u["config"]
    new = sm.describe_endpoint_config(EndpointConfigName=u["config"])["ProductionVariants"][0]
    assert new["InitialInstanceCount"] == 2 and new["InstanceType"] == "ml.g4dn.xlarge"
    assert sm.describe_model(ModelName=u["model"])["PrimaryContainer"]["ModelDataUrl"].endswith(
        "model-v2.tar.gz"
    )

    d = deploy(moto_url, "delete", "--name", "yolox-rt")
    assert "endpoint yolox-rt" in d["deleted"]
    assert not [e for e in sm.list_endpoints()["Endpoints"] if e["EndpointName"] == "yolox-rt"]
    assert not [c for c in sm.list_endpoint_configs(NameContains="yolox-rt")["EndpointConfigs"]], (
        "both configs removed"
    )
    assert not [m for m in sm.list_models(NameContains="yolox-rt")["Models"]]
    assert not aas.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=["endpoint/yolox-rt/variant/AllTraffic"]
    )["ScalableTargets"]


def test_async_endpoint_scales_to_zero(moto_url: str) -> None:
    sns = aws_client("sns", moto_url)
    ok = sns.create_topic(Name="tracks-done")["TopicArn"]
    bad = sns.create_topic(Name="tracks-failed")["TopicArn"]
    r = deploy(moto_url, "async", "--name", "yolox-async", "--model-data", "s3://models/yolox/model.tar.gz",
               "--image", IMAGE, "--role", ROLE, "--output-s3", "s3://results/out/", "--failure-s3",
               "s3://results/failed/", "--sns-success", ok, "--sns-error", bad, "--max-concurrent", "2",
               "--max-instances", "3")  # fmt: skip
    cfg = aws_client("sagemaker", moto_url).describe_endpoint_config(EndpointConfigName=r["config"])
    ac = cfg["AsyncInferenceConfig"]
    assert (
        ac["OutputConfig"]["S3OutputPath"] == "s3://results/out/"
        and ac["OutputConfig"]["S3FailurePath"] == "s3://results/failed/"
    )
    assert ac["OutputConfig"]["NotificationConfig"] == {"SuccessTopic": ok, "ErrorTopic": bad}
    assert ac["ClientConfig"]["MaxConcurrentInvocationsPerInstance"] == 2
    aas = aws_client("application-autoscaling", moto_url)
    rid = "endpoint/yolox-async/variant/AllTraffic"
    tgt = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[rid])["ScalableTargets"]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in tgt] == [(0, 3)], "scale to zero"
    pols = {
        p["PolicyName"]: p
        for p in aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=rid)[
            "ScalingPolicies"
        ]
    }
    backlog = pols["yolox-async-backlog"]["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"
    ]
    assert backlog["MetricName"] == "ApproximateBacklogSizePerInstance"
    step = pols["yolox-async-from-zero"]
    assert step["PolicyType"] == "StepScaling"
    alarm = aws_client("cloudwatch", moto_url).describe_alarms(AlarmNames=[r["alarm"]])["MetricAlarms"][0]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity" and alarm["AlarmActions"] == [step["PolicyARN"]]
    d = deploy(moto_url, "delete", "--name", "yolox-async")
    assert any(x.startswith("alarm ") for x in d["deleted"])
    assert not aws_client("cloudwatch", moto_url).describe_alarms(AlarmNames=[r["alarm"]])["MetricAlarms"]


def test_batch_processing_job(moto_url: str) -> None:
    r = deploy(moto_url, "batch", "--job", "games-2026-11", "--image", IMAGE, "--role", ROLE, "--input-s3",
               "s3://videos/in/", "--output-s3", "s3://videos/out/", "--model-s3", "s3://models/yolox/")  # fmt: skip
    job = aws_client("sagemaker", moto_url).describe_processing_job(ProcessingJobName=r["job"])
    assert job["AppSpecification"]["ContainerEntrypoint"] == ["python", "-m", "deploy.sagemaker.processing"]
    ins = {i["InputName"]: i["S3Input"] for i in job["ProcessingInputs"]}
    assert (
        ins["videos"]["S3Uri"] == "s3://videos/in/"
        and ins["videos"]["LocalPath"] == "/opt/ml/processing/input"
    )
    assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == "s3://videos/out/"


def test_failures_are_clear(moto_url: str) -> None:
    res = run_trackcast("deploy", "realtime", "--name", "x", "--model-data", "s3://m/m.tar.gz", "--image", IMAGE,
                        "--endpoint-url", moto_url, "--region", "eu-west-1")  # fmt: skip
    assert res.returncode == 2 and "no execution role" in res.stderr
    res = run_trackcast("deploy", "realtime", "--name", "x", "--model-data", "s3://m/m.tar.gz", "--image", IMAGE,
                        "--role", "trackcast-role", "--endpoint-url", moto_url, "--region", "eu-west-1")  # fmt: skip
    assert res.returncode == 2 and "must be an IAM role ARN" in res.stderr
    res = run_trackcast(
        "deploy", "delete", "--name", "never-made", "--endpoint-url", moto_url, "--region", "eu-west-1"
    )
    assert res.returncode == 2 and "never-made" in res.stderr and "Traceback" not in res.stderr
    res = run_trackcast("invoke-async", str(Path(__file__)), "--endpoint", "e", "--input-s3", "s3://no-such-bucket/in/",
                        "--endpoint-url", moto_url, "--region", "eu-west-1")  # fmt: skip
    assert res.returncode == 2 and "bucket" in res.stderr


@needs_shared
def test_async_handler_and_processing_job_equal_trackcast_track(short_futsal: Path, tmp_path: Path) -> None:
    """Run locally on the futsal clip (its first 60 frames): same MOT results as `trackcast track`, a decodable video, a summary."""
    import av

    from deploy.sagemaker import inference

    ref = tmp_path / "ref.txt"
    res = run_trackcast(
        "track",
        str(short_futsal),
        "--model",
        str(MODEL),
        "--classes",
        "0",
        "--out",
        str(ref),
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr

    # the async endpoint's handler, through the toolkit functions, with the model dir of a package
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").symlink_to(MODEL)
    (model_dir / "trackcast-model.json").write_text(json.dumps({"preprocess": "yolox", "classes": [0]}))
    model = inference.model_fn(str(model_dir))
    body, ctype = inference.output_fn(
        inference.predict_fn(inference.input_fn(short_futsal.read_bytes(), "video/mp4"), model), "*/*"
    )
    assert ctype == "application/x-tar"
    out = tmp_path / "async"
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(out, filter="data")

    # the processing job's entry point, on an input folder
    (tmp_path / "in" / "day1").mkdir(parents=True)
    (tmp_path / "in" / "day1" / "futsal.mp4").symlink_to(short_futsal)
    (tmp_path / "in" / "notes.mp4").write_text("not a video")
    proc = subprocess.run([sys.executable, "-m", "deploy.sagemaker.processing", "--input", str(tmp_path / "in"),
                           "--output", str(tmp_path / "out"), "--model", str(MODEL), "--classes", "0"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 1, "one input was not a video: reported, the other still processed"
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(v["video"], v["ok"]) for v in manifest["videos"]] == [
        ("day1/futsal.mp4", True),
        ("notes.mp4", False),
    ]

    want = read_mot(ref)
    for tracks, video, summary in (
        (out / "tracks.txt", out / "annotated.mp4", out / "summary.json"),
        (tmp_path / "out/day1/futsal.tracks.txt", tmp_path / "out/day1/futsal.annotated.mp4", tmp_path / "out/day1/futsal.summary.json"),
    ):  # fmt: skip
        got = read_mot(tracks)
        assert got.shape == want.shape and np.array_equal(got, want)
        with av.open(str(video)) as c:
            assert sum(1 for _ in c.decode(video=0)) == SHORT_FRAMES
        s = json.loads(summary.read_text())
        assert s["frames"] == SHORT_FRAMES and s["track_ids"] == len(np.unique(want[:, 1]))


@needs_shared
def test_async_handler_and_processing_job_return_the_analytics(tmp_path: Path) -> None:
    """A tar of the plaza clip and its analytics to the async handler, the clip and the same file to
    the processing job: both return the analytics files, equal, with crossings both ways."""
    from deploy.sagemaker import inference

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").symlink_to(MODEL)
    (model_dir / "trackcast-model.json").write_text(json.dumps({"classes": [0]}))
    model = inference.model_fn(str(model_dir))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(PLAZA, arcname="plaza.mp4")
        info = tarfile.TarInfo("analytics.yaml")
        info.size = len(PLAZA_ANALYTICS.encode())
        tar.addfile(info, io.BytesIO(PLAZA_ANALYTICS.encode()))
    body, _ = inference.output_fn(inference.predict_fn(inference.input_fn(buf.getvalue(), "application/x-tar"),
                                                       model), "*/*")  # fmt: skip
    out = tmp_path / "async"
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(out, filter="data")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "plaza.mp4").symlink_to(PLAZA)
    (tmp_path / "a.yaml").write_text(PLAZA_ANALYTICS)
    proc = subprocess.run([sys.executable, "-m", "deploy.sagemaker.processing", "--input", str(tmp_path / "in"),
                           "--output", str(tmp_path / "out"), "--model", str(MODEL), "--classes", "0", "--no-video",
                           "--analytics", str(tmp_path / "a.yaml")], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    def events(p: Path) -> list[dict]:  # type: ignore[type-arg]
        return [
            {k: v for k, v in json.loads(line).items() if k != "ts"} for line in p.read_text().splitlines()
        ]

    assert (out / "tracks.analytics.csv").read_text() == (
        tmp_path / "out/plaza.tracks.analytics.csv"
    ).read_text()
    assert events(out / "tracks.events.jsonl") == events(tmp_path / "out/plaza.tracks.events.jsonl")
    lines = json.loads((out / "summary.json").read_text())["lines"]["crossing"]
    assert lines["in"] > 0 and lines["out"] > 0
    # a bad analytics file is a 400 that names the key
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as tar:
        tar.add(PLAZA, arcname="plaza.mp4")
        text = b"zones: [{id: z, points: [[0, 0], [1, 1]]}]"
        info = tarfile.TarInfo("analytics.yaml")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    status, answer, _ = inference.handle(model, bad.getvalue(), "application/x-tar")
    assert status == 400 and "zones.0.points" in json.loads(answer)["error"]


@needs_shared
def test_long_video_in_constant_memory(short_futsal: Path, tmp_path: Path) -> None:
    """A looped input 5x a clip: peak RSS stays where a short run's is (streamed, not loaded)."""
    import shutil

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed (make test installs it)")
    long = tmp_path / "long.mp4"
    subprocess.run(
        [ffmpeg, "-v", "error", "-stream_loop", "4", "-i", str(short_futsal), "-an", "-c", "copy", str(long)],
        check=True,
    )

    def peak(video: Path) -> float:
        t0 = time.time()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", *__import__("tests.conftest", fromlist=["x"]).trackcast_cmd(),
                            "track", str(video), "--detector", "motion", "--out", str(tmp_path / "t.txt"),
                            "--out-video", str(tmp_path / "v.mp4"), "--no-progress"],
                           capture_output=True, text=True, timeout=900)  # fmt: skip
        assert p.returncode == 0, p.stderr
        assert time.time() - t0 > 0
        return float(p.stderr.strip().splitlines()[-1]) / 1024  # MB

    short, longer = peak(short_futsal), peak(long)
    assert longer < short * 1.15 + 30, f"peak RSS grew with the video: {short:.0f} MB -> {longer:.0f} MB"


@needs_shared
def test_invoke_async_round_trip(moto_url: str, short_futsal: Path, tmp_path: Path) -> None:
    """Upload, InvokeEndpointAsync (moto), the real handler does the work, wait, download, unpack."""
    from deploy.errors import DeployError
    from deploy.sagemaker import inference
    from deploy.sagemaker.async_client import invoke_async
    from deploy.sagemaker.manage import Clients

    s3 = aws_client("s3", moto_url)
    s3.create_bucket(Bucket="async-in", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    clients = Clients("eu-west-1", moto_url)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").symlink_to(MODEL)
    (model_dir / "trackcast-model.json").write_text(json.dumps({"classes": [0]}))
    model = inference.model_fn(str(model_dir))
    calls = []

    def endpoint_works(http_response, parsed, **kwargs):  # type: ignore[no-untyped-def]
        """What the async endpoint does: read the input from S3, run the handler, write the result."""
        calls.append(parsed["OutputLocation"])
        request = kwargs["context"]["trackcast_request"]
        ib, _, ik = request["InputLocation"][5:].partition("/")
        body = s3.get_object(Bucket=ib, Key=ik)["Body"].read()
        out = inference.output_fn(
            inference.predict_fn(inference.input_fn(body, request["ContentType"]), model), "*/*"
        )[0]
        ob, _, ok = parsed["OutputLocation"][5:].partition("/")
        s3.put_object(Bucket=ob, Key=ok, Body=out)

    def keep_request(params, context, **kwargs):  # type: ignore[no-untyped-def]
        context["trackcast_request"] = params

    rt = clients("sagemaker-runtime")
    rt.meta.events.register("before-parameter-build.sagemaker-runtime.InvokeEndpointAsync", keep_request)
    rt.meta.events.register("after-call.sagemaker-runtime.InvokeEndpointAsync", endpoint_works)
    res = invoke_async(
        clients,
        short_futsal,
        "yolox-async",
        "s3://async-in/videos/",
        tmp_path / "result",
        timeout=120,
        poll=0.5,
    )
    assert len(calls) == 1 and res["output"] == calls[0]
    got = read_mot(tmp_path / "result" / "tracks.txt")
    ref = tmp_path / "ref.txt"
    assert run_trackcast("track", str(short_futsal), "--model", str(MODEL), "--classes", "0", "--out", str(ref),
                         "--no-progress").returncode == 0  # fmt: skip
    assert np.array_equal(got, read_mot(ref))
    assert json.loads((tmp_path / "result" / "summary.json").read_text())["frames"] == SHORT_FRAMES
    assert (tmp_path / "result" / "annotated.mp4").stat().st_size > 20_000
    assert any(o["Key"].startswith("videos/") and o["Key"].endswith(short_futsal.name)
               for o in s3.list_objects_v2(Bucket="async-in")["Contents"])  # fmt: skip

    # an endpoint failure comes back as a clear error
    import urllib.request

    req = urllib.request.Request(f"{moto_url}/moto-api/static/sagemaker/async-endpoint-results", method="POST",
                                 data=json.dumps({"region": "eu-west-1", "results": [{"is_failure": True,
                                 "data": "ModelError: frame 12 could not be decoded"}]}).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    urllib.request.urlopen(req, timeout=10).read()
    fresh = Clients("eu-west-1", moto_url)
    with pytest.raises(DeployError, match="frame 12 could not be decoded"):
        invoke_async(
            fresh, FUTSAL, "yolox-async", "s3://async-in/videos/", tmp_path / "r2", timeout=30, poll=0.5
        )


@pytest.mark.integration
def test_model_archive_holds_only_what_the_handler_runs(tmp_path: Path) -> None:
    """model.tar.gz ships the handler, the processing job and the layers below them, and importing
    every module it holds imports none of the service runtime's network stack."""
    from deploy.sagemaker import package

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read by build")
    out = package.build(model, tmp_path / "model.tar.gz")
    with tarfile.open(out) as tar:
        names = sorted(n for n in tar.getnames() if n.startswith("code/") and n.endswith(".py"))
        tar.extractall(tmp_path / "x", filter="data")
    assert "code/deploy/sagemaker/inference.py" in names and "code/service/media/offline.py" in names
    for runtime in ("code/service/mqtt.py", "code/service/app.py", "code/service/http.py", "code/service/demo.py",
                    "code/service/webrtc.py", "code/deploy/sagemaker/manage.py"):  # fmt: skip
        assert runtime not in names
    code = tmp_path / "x" / "code"
    modules = [
        n.removeprefix("code/").removesuffix(".py").removesuffix("/__init__").replace("/", ".") for n in names
    ]
    modules.remove("inference")  # the shim, which imports the handler
    probe = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(code)!r})\n"
        f"mods = {modules!r}\n"
        "files = {m: importlib.import_module(m).__file__ for m in mods}\n"
        "import inference\n"
        "net = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'aiomqtt', 'aiortc', 'paho', 'aioice'))\n"
        "print(json.dumps({'files': files, 'net': net}))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert all(f.startswith(str(code)) for f in got["files"].values()), got[
        "files"
    ]  # the archive's own copies
    assert got["net"] == []


@needs_shared
def test_neo_compile_uploads_the_model_and_starts_the_job(moto_url: str) -> None:
    s3 = aws_client("s3", moto_url)
    s3.create_bucket(Bucket="edge", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    r = deploy(moto_url, "compile", "--model", str(MODEL), "--job", "nano-jetson", "--output", "s3://edge/compiled",
               "--role", ROLE, "--target-device", "jetson_xavier", "--wait")  # fmt: skip
    assert r["status"] == "COMPLETED" and r["input"] == {"images": [1, 3, 416, 416]}
    assert r["model"] == "s3://edge/compiled/source/yolox_nano_416x416.tar.gz"
    body = s3.get_object(Bucket="edge", Key="compiled/source/yolox_nano_416x416.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:  # Neo reads the model at the archive's root
        assert tar.getnames() == ["yolox_nano_416x416.onnx"]
        member = tar.extractfile("yolox_nano_416x416.onnx")
        assert member is not None and member.read() == MODEL.read_bytes()
    job = aws_client("sagemaker", moto_url).describe_compilation_job(CompilationJobName="nano-jetson")
    assert job["CompilationJobStatus"] == "COMPLETED" and job["RoleArn"] == ROLE
    # a platform target, and what is refused before any call: an unknown device, no target, a bad role
    r = deploy(moto_url, "compile", "--model", str(MODEL), "--job", "nano-arm", "--output", "s3://edge/c2",
               "--role", ROLE, "--target-os", "LINUX", "--target-arch", "ARM64")  # fmt: skip
    assert r["output"]["TargetPlatform"] == {"Os": "LINUX", "Arch": "ARM64"}
    for args, msg in ((["--target-device", "jetson_nanoo"], "unknown --target-device 'jetson_nanoo'; Neo's devices: "),
                      ([], "give one target"), (["--target-device", "rasp4b", "--target-arch", "ARM64"], "give one target"),
                      (["--target-os", "BEOS"], "unknown target os 'BEOS'")):  # fmt: skip
        res = run_trackcast("deploy", "compile", "--model", str(MODEL), "--job", "x", "--output", "s3://edge/x",
                            "--role", ROLE, *args, "--endpoint-url", moto_url, "--region", "eu-west-1")  # fmt: skip
        assert res.returncode == 2 and msg in res.stderr and "Traceback" not in res.stderr, res.stderr
    res = run_trackcast("deploy", "compile", "--model", str(MODEL), "--job", "y", "--output", "s3://edge/y",
                        "--role", "admin", "--target-device", "rasp4b", "--endpoint-url", moto_url, "--region", "eu-west-1")  # fmt: skip
    assert res.returncode == 2 and "--role must be an IAM role ARN" in res.stderr
