"""The ``trackcast`` command.

Each verb imports what it needs when it runs, so ``trackcast --help`` stays fast and a verb's
optional dependencies are only needed by that verb.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.cli import add_parsers as add_training_parsers
from training.errors import TrainingError

#: commands that decode video frame after frame (see ``service.media.video.tune_for_decoding``)
DECODING_COMMANDS = {"serve", "track", "detect", "demo", "serve-model"}


class CliError(Exception):
    """A user-facing error: printed as ``trackcast: error: ...`` with exit status 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """The root error of each package (see its errors.py): each says what is wrong and where, so
    the CLI prints its message and exits 2; anything else is a bug and keeps its traceback."""
    from deploy.errors import DeployError
    from detector_client.errors import DetectorError
    from service.errors import ServiceError
    from tracker.errors import TrackerError

    return (CliError, TrackerError, DetectorError, ServiceError, DeployError, TrainingError)


def _option(group: Any, model: Any, name: str, flag: str | None = None, **override: Any) -> None:
    """An option for field ``name`` of the pydantic config ``model``: its type, choices, default and
    description come from the model (the one source of truth for every option); ``override``
    changes what a command wants otherwise (a default, a requirement)."""
    import types
    import typing

    from pydantic_core import PydanticUndefined

    field = model.model_fields[name]
    flag = flag or "--" + name.replace("_", "-")
    default = None if field.default is PydanticUndefined else field.default
    ann = field.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if typing.get_origin(ann) in (typing.Union, types.UnionType) and len(args) == 1:
        ann, args = args[0], list(typing.get_args(args[0]))  # X | None -> X
    origin = typing.get_origin(ann)
    kw: dict[str, Any] = {"default": default, "help": field.description or ""}
    if ann is bool:
        if default:  # on by default: the flag turns it off
            flag = "--no-" + name.replace("_", "-")
            kw.update(action="store_false", dest=name, help=f"turn off: {kw['help']}")
        else:
            kw.update(action="store_true")
    elif origin is typing.Literal:
        kw.update(choices=list(args), type=type(args[0]))
    elif origin is list:
        kw.update(nargs="*", type=args[0])
    elif origin is tuple:
        kw.update(nargs=len(args), type=args[0])
    elif ann in (int, float):
        kw.update(type=ann)
    kw.update(override)
    if kw.get("default") not in (None, False, True) and "(default" not in kw["help"]:
        shown = (
            " ".join(map(str, kw["default"])) if isinstance(kw["default"], (list, tuple)) else kw["default"]
        )
        kw["help"] = f"{kw['help']} (default {shown})".strip()
    group.add_argument(flag, **kw)


def _add_tracker_args(p: argparse.ArgumentParser) -> None:
    from service.config import TrackerSettings

    g = p.add_argument_group("tracker (ByteTrack parameters)")
    for name in ("track_thresh", "track_buffer", "match_thresh", "mot20", "per_class"):
        _option(g, TrackerSettings, name)
    g.add_argument("--frame-rate", type=float, default=30.0, help="rate of the frames tracked (default 30)")


def _tracker_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from tracker import TrackerConfig, TrackerConfigError

    try:
        return TrackerConfig(
            track_thresh=args.track_thresh,
            track_buffer=args.track_buffer,
            match_thresh=args.match_thresh,
            mot20=args.mot20,
            frame_rate=args.frame_rate or 30.0,
            per_class=args.per_class,
        )
    except TrackerConfigError as exc:
        raise CliError(str(exc)) from exc


def _outputs(*paths: str | None) -> None:
    """Fail before the work, not after it: each output's folder is made and the file can be written."""
    for p in paths:
        if p is None:
            continue
        path = Path(p)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists()
            with path.open("a"):
                pass
            if not existed:
                path.unlink()
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc


def cmd_track_dets(args: argparse.Namespace) -> int:
    """Run the tracker over a MOTChallenge det.txt and write MOT results."""
    from service.media.offline import track_detections
    from tracker import MotFormatError

    cfg = _tracker_config(args)
    _outputs(args.out)
    try:
        stats = track_detections(args.det, cfg, args.out, args.frames)
    except MotFormatError as exc:
        raise CliError(str(exc)) from exc
    if stats.invalid:
        print(f"dropped {stats.invalid} detections with NaN/inf values or non-positive size", file=sys.stderr)
    print(
        f"{stats.frames} frames, {stats.rows} track rows -> {args.out} ({stats.seconds:.2f} s)",
        file=sys.stderr,
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Print MOT metrics (HOTA, MOTA, IDF1, ...) of a tracker's output against ground truth.

    GT and HYP are MOTChallenge files (gt.txt and the tracker's file) or folders in MOTChallenge
    layout (<seq>/gt/gt.txt with seqinfo.ini, seqmaps/<split>.txt; the tracker's <seq>.txt files):
    one row per sequence, and COMBINED over several. --benchmark mot17/mot20 applies that
    benchmark's official preprocessing (distractor classes, the consider flag, pedestrians only),
    as TrackEval's MOTChallenge evaluation does; none scores every row whose consider flag is set.
    """
    from tracker.evaluation import COMBINED, evaluate_sequences, find_sequences, table

    seqs = find_sequences(Path(args.gt), Path(args.hyp), Path(args.seqmap) if args.seqmap else None)
    results = evaluate_sequences(seqs, args.benchmark)
    if args.json:
        head = results.get(COMBINED) or next(iter(results.values()))
        body: dict[str, Any] = head.as_dict()
        body["benchmark"] = args.benchmark
        body["sequences"] = {name: m.as_dict() for name, m in results.items() if name != COMBINED}
        print(json.dumps(body, indent=2))
    else:
        print(table(results))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole service on a built-in default: live view, MQTT, metrics. Ctrl-C stops."""
    from service.demo import run_demo

    return run_demo(args)


def _add_postprocess_args(g: Any, classes_default: list[int] | None = None) -> None:
    """--preprocess, --classes, --score-thresh, --nms-thresh: the ONNX detector config's fields."""
    from detector_client.config import OnnxDetectorConfig as Onnx

    _option(g, Onnx, "preprocess")
    _option(g, Onnx, "format")
    _option(g, Onnx, "class_names")
    _option(g, Onnx, "classes", type=int, default=classes_default)
    _option(g, Onnx, "score_thresh")
    _option(g, Onnx, "nms_thresh")


def _add_detector_args(p: argparse.ArgumentParser, model_required: bool = False) -> None:
    from detector_client.config import OnnxDetectorConfig as Onnx
    from detector_client.config import SageMakerDetectorConfig as SageMaker

    g = p.add_argument_group("detector")
    g.add_argument(
        "--detector", choices=["onnx", "sagemaker", "motion"], default="onnx", help="backend (default onnx)"
    )
    g.add_argument("--model", required=model_required, help="ONNX detection model (onnx backend)")
    _add_postprocess_args(g)
    # Offline commands keep a small batch (less memory per call on CPU) unless told otherwise.
    _option(g, Onnx, "max_batch", "--batch", default=4, dest="max_batch")
    _option(g, Onnx, "clip")
    _option(g, Onnx, "letterbox")
    g.add_argument(
        "--providers", default=None, help="ONNX Runtime providers, e.g. cuda,cpu (default: all installed)"
    )
    for name in ("endpoint", "region", "variant", "endpoint_url", "input_size", "encoding"):
        _option(g, SageMaker, name, **({"default": None} if name in ("endpoint", "input_size") else {}))


def _detector_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pydantic import TypeAdapter, ValidationError

    from detector_client import DetectorConfig, DetectorError, create_detector

    common = {
        "classes": args.classes if args.classes else None,
        "score_thresh": args.score_thresh,
        "nms_thresh": args.nms_thresh,
        "max_batch": args.max_batch,
        "clip": args.clip,
        "letterbox": args.letterbox,
    }
    if args.detector == "onnx":
        if not args.model:
            raise CliError("--model is required with --detector onnx")
        raw = {"kind": "onnx", "model": args.model, "preprocess": args.preprocess, "format": args.format,
               "class_names": args.class_names, **common}  # fmt: skip
        if args.input_size:
            raw["input_size"] = tuple(args.input_size)
        if args.providers:
            raw["providers"] = [p.strip() for p in args.providers.split(",") if p.strip()]
    elif args.detector == "sagemaker":
        if not args.endpoint:
            raise CliError("--endpoint is required with --detector sagemaker")
        raw = {
            "kind": "sagemaker", "endpoint": args.endpoint, "region": args.region, "variant": args.variant,
            "endpoint_url": args.endpoint_url, "encoding": args.encoding, **common,
        }  # fmt: skip
        if args.input_size:
            raw["input_size"] = tuple(args.input_size)
        if args.preprocess != "auto":
            raw["preprocess"] = args.preprocess
    else:
        raw = {"kind": "motion", **common}
    try:
        cfg = TypeAdapter(DetectorConfig).validate_python(raw)
    except ValidationError as exc:
        raise CliError(_pydantic_message(exc, "detector")) from exc
    try:
        return create_detector(cfg)
    except (DetectorError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def _pydantic_message(exc: Exception, prefix: str) -> str:
    errs: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
    parts = [f"{prefix}.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errs]
    return "; ".join(parts) or str(exc)


def cmd_detect(args: argparse.Namespace) -> int:
    """Run the detector over every frame of a video (or a ROS bag's image topic) and write MOTChallenge det.txt rows."""
    from detector_client import DetectorError
    from service.errors import SourceError
    from service.media.offline import detect_video

    _outputs(args.out)
    det = _detector_from_args(args)
    try:
        stats = detect_video(args.video, det, args.out, args.max_frames, topic=args.topic)
    except (SourceError, DetectorError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        det.close()
    fps = stats.frames / max(stats.seconds, 1e-9)
    print(f"{stats.frames} frames, {stats.rows} detections -> {args.out} ({stats.seconds:.1f} s, {fps:.1f} fps)",
          file=sys.stderr)  # fmt: skip
    return 0


def cmd_eval_det(args: argparse.Namespace) -> int:
    """COCO AP, AP50, AP75, AR@100 and AP per class (pycocotools) of detections against ground truth.

    GT: a COCO JSON, a MOT gt.txt, a sequence folder or a folder of sequences (``convert
    gt-to-mot``'s output, MOTChallenge's layout). Detections: --dets (a det.txt as ``trackcast
    detect`` writes it; a folder of <seq>.txt for several sequences) or --model with --video (the
    detector runs here). --class-map MODEL_CLASS:GT_CATEGORY says which class is which category.
    """
    import json
    import tempfile

    from detector_client import DetectorError
    from detector_client.formats import load_class_names
    from service.errors import SourceError
    from service.media.offline import detect_video
    from training.detection_eval import evaluate, load_dets, load_gt, parse_class_map
    from training.errors import TrainingError

    if bool(args.dets) == bool(args.video):
        raise CliError("give --dets DET_TXT, or --model M with --video V")
    try:
        gt = load_gt(args.gt)
        cmap = parse_class_map(args.class_map)
        names = load_class_names(args.det_class_names) if args.det_class_names else None
        if args.dets:
            results, how = load_dets(gt, args.dets, cmap, names)
        else:
            det = _detector_from_args(args)
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "det.txt"
                    detect_video(args.video, det, path, args.max_frames)
                    results, how = load_dets(gt, path, cmap, names or det.class_names)
            finally:
                det.close()
        res = evaluate(gt, results)
    except (TrainingError, SourceError, DetectorError, OSError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    summary = res.pop("summary")
    if args.json:
        print(json.dumps({**res, "classes": how, "notes": gt.notes}, indent=2))
        return 0
    print(summary.rstrip())
    print(f"\n{res['images']} images, {res['gt_boxes']} ground-truth boxes, {res['detections']} detections "
          f"(classes: {how})")  # fmt: skip
    for note in gt.notes:
        print(note)
    for name, ap in res["per_class"].items():
        print(f"  AP {name}: {ap:.4f}" if ap >= 0 else f"  AP {name}: - (no ground truth)")
    return 0


def cmd_model_optimize(args: argparse.Namespace) -> int:
    """Write an ONNX Runtime-optimised and an INT8 (static, calibrated on the clips) copy of a model,
    then measure both against the float model: ms/frame at batch 1 and 4, AP of the INT8 detections
    against the float ones, and tracking agreement on each clip."""
    import json

    from training.optimize import optimize

    try:
        rep = optimize(args.model, args.calibrate, args.out, args.calibration_frames, args.eval_frames,
                       per_channel=not args.per_tensor, repeats=args.repeats, keep_float=args.keep_float,
                       log=lambda s: print(s, file=sys.stderr))  # fmt: skip
    except TrainingError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(rep.as_dict(), indent=2))
    else:
        print(f"wrote {rep.optimized}\nwrote {rep.int8}")
        print(rep.table())
    return 0


def cmd_serve_model(args: argparse.Namespace) -> int:
    """Serve an ONNX detection model on the SageMaker container contract (GET /ping, POST /invocations)."""
    import logging

    from deploy.sagemaker import serve
    from detector_client import DetectorError
    from detector_client.onnx_backend import OnnxModel
    from detector_client.yolox import PostProcess

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pp = PostProcess(args.score_thresh, args.nms_thresh, tuple(args.classes) if args.classes else None)
    providers = [p.strip() for p in args.providers.split(",")] if args.providers else None
    try:
        if Path(args.model).is_dir():  # a SageMaker model directory (model.onnx + trackcast-model.json)
            from deploy.sagemaker.inference import model_fn

            model = model_fn(args.model)
        else:
            model = OnnxModel(args.model, preprocess=args.preprocess, providers=providers, postprocess=pp,
                              format=args.format, class_names=args.class_names)  # fmt: skip
    except (DetectorError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    serve.run(model, args.host, serve.port_from_env(args.port))
    return 0


def _analytics_file(path: str) -> Any:
    """An analytics file (YAML or JSON, a stream's ``analytics:`` section); errors name the key."""
    import yaml

    from service.errors import ConfigError
    from service.rules.analytics import parse_analytics

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise CliError(f"cannot read analytics file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise CliError(f"analytics file {path} is not valid YAML: {exc}") from exc
    try:
        return parse_analytics(raw, path)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc


def cmd_track(args: argparse.Namespace) -> int:
    """Detect and track every frame of a video (or a ROS bag's image topic), in order: MOT results,
    optional annotated video."""
    from detector_client import DetectorError
    from service.errors import ConfigError, SourceError
    from service.media.offline import track_video

    cfg = _tracker_config(args)
    analytics = _analytics_file(args.analytics) if args.analytics else None
    _outputs(args.out, args.out_video, args.summary)
    det = _detector_from_args(args)
    try:
        summary = track_video(
            args.video, det, cfg, args.out, frame_rate=args.frame_rate, out_video=args.out_video,
            summary_path=args.summary, max_frames=args.max_frames, progress=not args.no_progress,
            analytics=analytics, topic=args.topic,
        )  # fmt: skip
    except (SourceError, DetectorError, ConfigError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        det.close()
    print(
        f"{summary.frames} frames, {summary.track_ids} tracks, {summary.track_rows} rows -> {args.out} "
        f"({summary.seconds:.1f} s, {summary.processing_fps:.1f} fps)",
        file=sys.stderr,
    )
    return 0


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y,w,h (pixels), got {text!r}") from None
    return x, y, w, h


def cmd_follow(args: argparse.Namespace) -> int:
    """Follow one object from a box drawn on one frame: a single-object tracker, re-acquired through
    the multi-object tracker when the detector sees the object (--model), one JSON line per frame."""
    from detector_client import DetectorError
    from service.errors import SourceError
    from service.media.offline import follow_video

    _outputs(args.out, args.out_video)
    det = _detector_from_args(args) if args.model or args.detector != "onnx" else None
    try:
        s = follow_video(args.video, args.box, args.out, det, _tracker_config(args) if det else None,
                         args.frame, args.max_frames, args.sot, args.topic, args.out_video)  # fmt: skip
    except (SourceError, DetectorError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        if det is not None:
            det.close()
    print(json.dumps(s.__dict__, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the streaming service from a config file (and TRACKCAST_* environment variables)."""
    from service.config import load_settings
    from service.errors import ConfigError
    from service.runner import run_service

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    return run_service(settings)


def cmd_deploy(args: argparse.Namespace) -> int:
    """SageMaker: package a model, deploy real-time/async endpoints and batch jobs, update, delete."""
    import json as _json
    import os as _os

    from deploy.errors import DeployError
    from deploy.sagemaker import package
    from deploy.sagemaker.manage import Clients, Deployer, ModelSpec

    try:
        if args.action == "package":
            out = package.build(Path(args.model), Path(args.out), args.preprocess, args.classes or None)
            result: dict[str, Any] = {"package": str(out)}
            if args.s3:
                result["s3"] = package.upload(
                    out, args.s3, Clients(args.region, args.endpoint_url, args.profile)
                )
            print(_json.dumps(result, indent=2))
            return 0
        d = Deployer(Clients(args.region, args.endpoint_url, args.profile))
        role = getattr(args, "role", None) or _os.environ.get("TRACKCAST_SAGEMAKER_ROLE")
        spec = (
            ModelSpec(args.image, args.model_data, role or "")
            if hasattr(args, "image") and hasattr(args, "model_data")
            else None
        )
        if args.action == "realtime":
            assert spec is not None
            scale = (args.autoscale[0], args.autoscale[1], args.autoscale[2]) if args.autoscale else None
            res = d.realtime(args.name, spec, args.instance_type, args.count, args.variant, args.data_capture,
                             (int(scale[0]), int(scale[1]), float(scale[2])) if scale else None, wait=not args.no_wait)  # fmt: skip
        elif args.action == "update":
            assert spec is not None
            res = d.update(args.name, spec, args.instance_type, args.count, wait=not args.no_wait)
        elif args.action == "async":
            assert spec is not None
            res = d.async_(args.name, spec, args.output_s3, args.failure_s3, args.sns_success, args.sns_error,
                           args.max_concurrent, args.instance_type, args.max_instances, wait=not args.no_wait)  # fmt: skip
        elif args.action == "compile":
            from deploy.sagemaker.neo import compile_model

            platform = {k: v for k, v in (("Os", args.target_os), ("Arch", args.target_arch),
                                          ("Accelerator", args.target_accelerator)) if v}  # fmt: skip
            shape = None
            if args.input_shape:
                name, _, dims = args.input_shape.partition("=")
                try:
                    shape = {name: [int(v) for v in dims.split(",")]}
                except ValueError as exc:
                    raise CliError(f"--input-shape {args.input_shape!r}: expected NAME=1,3,H,W") from exc
            res = compile_model(d.c, args.job, args.model, role, args.output, args.target_device,
                                platform or None, shape, args.max_runtime, args.wait)  # fmt: skip
        elif args.action == "batch":
            res = d.batch(args.job, args.image, role or "", args.input_s3, args.output_s3, args.model_s3,
                          args.instance_type, args.count, args.preprocess)  # fmt: skip
        else:
            res = {"deleted": d.delete(args.name)}
    except (DeployError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc
    print(_json.dumps(res, indent=2))
    return 0


def cmd_triton_repo(args: argparse.Namespace) -> int:
    """Write a Triton Inference Server model repository for a YOLOX ONNX model: the network made
    batchable and taking trackcast's uint8 letterboxed frames (checked against the original), and a
    config.pbtxt with dynamic batching on the GPU (TensorRT FP16) or the CPU. Serve it with Triton
    and point streams at it: detector: {kind: oip, url: http://triton:8000, model: NAME}."""
    from deploy.triton import write_model_repository

    repo = write_model_repository(
        Path(args.model), Path(args.out), name=args.name, preprocess=args.preprocess,
        max_batch=args.max_batch or (32 if args.device == "gpu" else 4),
        device=args.device, instances=args.instances, tensorrt=not args.no_tensorrt, fp16=not args.fp32,
        queue_delay_us=args.queue_delay_us,
    )  # fmt: skip
    print(f"wrote {repo.config.parent}: input {repo.input_name} UINT8 [-1,{repo.height},{repo.width},3], "
          f"output {repo.output_name}, {repo.classes} classes (max difference to the original {repo.max_diff:.2g})")  # fmt: skip
    return 0


def cmd_invoke_async(args: argparse.Namespace) -> int:
    """Send a video to an asynchronous endpoint and download its tracks, annotated video and summary."""
    import json as _json

    from deploy.errors import DeployError
    from deploy.sagemaker.async_client import invoke_async
    from deploy.sagemaker.manage import Clients

    try:
        res = invoke_async(Clients(args.region, args.endpoint_url, args.profile), Path(args.video), args.endpoint,
                           args.input_s3, Path(args.out), args.timeout, sqs_url=args.sqs_url)  # fmt: skip
    except DeployError as exc:
        raise CliError(str(exc)) from exc
    print(_json.dumps(res, indent=2))
    return 0


def _add_deploy_parsers(sub: Any) -> None:
    from detector_client.config import OnnxDetectorConfig as Onnx

    dp = sub.add_parser("deploy", help="SageMaker: package, realtime, update, delete, async, batch, compile",
                        description=cmd_deploy.__doc__)  # fmt: skip
    actions = dp.add_subparsers(dest="action", required=True, metavar="ACTION")

    def aws(p: argparse.ArgumentParser) -> None:
        p.add_argument("--region", help="AWS region (default: AWS chain)")
        p.add_argument("--profile", help="AWS profile")
        p.add_argument("--endpoint-url", help="send every AWS call here (a local stand-in such as moto)")

    def model(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", required=True, help="endpoint name")
        p.add_argument("--model-data", required=True, help="s3://.../model.tar.gz (deploy package --s3)")
        p.add_argument(
            "--image", required=True, help="inference image URI (PyTorch/ONNX container or trackcast's own)"
        )
        p.add_argument("--role", help="execution role ARN (default: TRACKCAST_SAGEMAKER_ROLE)")
        p.add_argument("--instance-type", default="ml.g4dn.xlarge")
        p.add_argument("--no-wait", action="store_true", help="do not wait for InService")
        aws(p)

    p = actions.add_parser("package", help="build model.tar.gz (and upload it)")
    p.add_argument("--model", required=True, help="ONNX detection model")
    _option(p, Onnx, "preprocess")
    p.add_argument("--classes", type=int, nargs="*", default=None)
    p.add_argument("--out", default="model.tar.gz")
    p.add_argument("--s3", help="upload to this s3://bucket/prefix/")
    aws(p)
    p = actions.add_parser("realtime", help="model + endpoint config + endpoint; optional autoscaling")
    model(p)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--variant", default="AllTraffic")
    p.add_argument("--data-capture", help="s3:// prefix for data capture (10%% of requests)")
    p.add_argument("--autoscale", type=float, nargs=3, metavar=("MIN", "MAX", "INVOCATIONS_PER_INSTANCE"))
    p = actions.add_parser("update", help="swap the model with no downtime (new endpoint config)")
    model(p)
    p.add_argument("--count", type=int, default=None)
    p = actions.add_parser("async", help="asynchronous endpoint for whole videos, scales to zero")
    model(p)
    p.add_argument("--output-s3", required=True)
    p.add_argument("--failure-s3")
    p.add_argument("--sns-success", help="SNS topic ARN for successes")
    p.add_argument("--sns-error", help="SNS topic ARN for errors")
    p.add_argument("--max-concurrent", type=int, default=1, help="invocations per instance")
    p.add_argument("--max-instances", type=int, default=2)
    p = actions.add_parser("batch", help="processing job tracking every video under an S3 prefix")
    p.add_argument("--job", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--role")
    p.add_argument("--input-s3", required=True)
    p.add_argument("--output-s3", required=True)
    p.add_argument("--model-s3", required=True, help="s3:// prefix holding model.onnx")
    p.add_argument("--instance-type", default="ml.g4dn.xlarge")
    p.add_argument("--count", type=int, default=1)
    _option(p, Onnx, "preprocess")
    aws(p)
    p = actions.add_parser("compile", help="SageMaker Neo: compile the model for an edge device or platform")
    p.add_argument(
        "--model", required=True, help="ONNX model (uploaded under --output) or s3://.../model.tar.gz"
    )
    p.add_argument("--job", required=True, help="compilation job name")
    p.add_argument("--output", required=True, help="s3://bucket/prefix for the compiled model")
    p.add_argument("--role", help="execution role ARN (default: TRACKCAST_SAGEMAKER_ROLE)")
    p.add_argument(
        "--target-device", help="e.g. jetson_xavier, rasp4b, ml_c5 (a wrong name lists the valid ones)"
    )
    p.add_argument("--target-os", help="a platform instead of a device: LINUX, ANDROID")
    p.add_argument("--target-arch", help="X86_64, ARM64, ARM_EABIHF, ...")
    p.add_argument("--target-accelerator", help="NVIDIA, MALI, ...")
    p.add_argument("--input-shape", help="NAME=1,3,H,W (default: read from the model)")
    p.add_argument("--max-runtime", type=int, default=900, help="seconds (default 900)")
    p.add_argument("--wait", action="store_true", help="follow the job to its end")
    aws(p)
    p = actions.add_parser("delete", help="remove the endpoint and everything created with it")
    p.add_argument("--name", required=True)
    aws(p)
    dp.set_defaults(func=cmd_deploy)

    p = sub.add_parser("invoke-async", help="send a video to an async endpoint, download the results",
                       description=cmd_invoke_async.__doc__)  # fmt: skip
    p.add_argument("video")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--input-s3", required=True, help="s3://bucket/prefix/ to upload the video to")
    p.add_argument("--out", default="async-result")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--sqs-url", help="SQS queue subscribed to the endpoint's SNS topics (instead of polling)")
    aws(p)
    p.set_defaults(func=cmd_invoke_async)


def cmd_loadtest(argv: list[str]) -> int:
    from loadtest.run import main as loadtest_main

    return loadtest_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackcast", description="Live multi-object tracking (YOLOX + ByteTrack)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "track-dets", help="track a MOTChallenge det.txt offline", description=cmd_track_dets.__doc__
    )
    p.add_argument("det", help="detections, MOTChallenge format: frame,-1,x,y,w,h,score,...")
    p.add_argument("--out", required=True, help="output MOT results: frame,id,x,y,w,h,score,-1,-1,-1")
    p.add_argument(
        "--frames", type=int, default=None, help="number of frames (default: last frame in the file)"
    )
    _add_tracker_args(p)
    p.set_defaults(func=cmd_track_dets)

    sub.add_parser("loadtest", help="N live RTSP streams against a service: latency, fps, CPU, RSS (see loadtest --help)",
                   add_help=False)  # fmt: skip
    _add_deploy_parsers(sub)
    add_training_parsers(sub)
    p = sub.add_parser("serve", help="run the streaming service", description=cmd_serve.__doc__)
    p.add_argument(
        "--config",
        default=None,
        help="YAML config file (every key also settable as TRACKCAST_<SECTION>__<KEY>)",
    )
    p.set_defaults(func=cmd_serve)

    topic_help = "a ROS bag's image topic (sensor_msgs/Image or CompressedImage; default: its only one)"
    p = sub.add_parser(
        "track", help="track a recorded video or ROS bag offline", description=cmd_track.__doc__
    )
    p.add_argument("video", help="video file, ROS 1 .bag or ROS 2 bag folder")
    p.add_argument("--topic", default=None, help=topic_help)
    p.add_argument("--out", required=True, help="MOT results: frame,id,x,y,w,h,score,-1,-1,-1")
    p.add_argument("--out-video", default=None, help="annotated video (H.264 MP4): boxes, IDs, trails")
    p.add_argument("--summary", default=None, help="JSON summary")
    p.add_argument("--analytics", default=None, metavar="FILE",
                   help="zones, lines, calibration (YAML, a stream's analytics: section): writes "
                        "<out>.analytics.csv and <out>.events.jsonl, adds tracks/lines/zones to the summary")  # fmt: skip
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    _add_detector_args(p)
    _add_tracker_args(p)
    p.set_defaults(func=cmd_track, frame_rate=None)

    p = sub.add_parser("follow", help="follow one object from a box (single-object tracking)",
                       description=cmd_follow.__doc__)  # fmt: skip
    p.add_argument("video", help="video file, ROS 1 .bag or ROS 2 bag folder")
    p.add_argument(
        "--box", type=_box, required=True, metavar="X,Y,W,H", help="the object on --frame, in pixels"
    )
    p.add_argument("--frame", type=int, default=1, help="the frame the box is drawn on (1-based)")
    p.add_argument(
        "--out", required=True, help="JSON lines: frame, box [x1,y1,x2,y2], state, source, track_id"
    )
    p.add_argument(
        "--out-video", default=None, help="annotated video: green on a track, red on the SOT alone"
    )
    p.add_argument("--sot", default="kcf", choices=["kcf", "mil"],
                   help="kcf: trackcast's correlation filter; mil: OpenCV's TrackerMIL")  # fmt: skip
    p.add_argument("--topic", default=None, help=topic_help)
    p.add_argument("--max-frames", type=int, default=None)
    _add_detector_args(p)
    _add_tracker_args(p)
    p.set_defaults(func=cmd_follow, frame_rate=None)

    p = sub.add_parser(
        "detect", help="detect objects in a video, write MOTChallenge det.txt", description=cmd_detect.__doc__
    )
    p.add_argument("video", help="video file (anything FFmpeg reads), ROS 1 .bag or ROS 2 bag folder")
    p.add_argument("--topic", default=None, help=topic_help)
    p.add_argument("--out", required=True, help="output det.txt: frame,-1,x,y,w,h,score,class,-1,-1")
    p.add_argument("--max-frames", type=int, default=None)
    _add_detector_args(p)
    p.set_defaults(func=cmd_detect)

    mp = sub.add_parser("model", help="model tools: optimize (ONNX Runtime graph optimisation, INT8)")
    mactions = mp.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = mactions.add_parser("optimize", help="optimised and INT8 copies of a model, measured",
                            description=cmd_model_optimize.__doc__)  # fmt: skip
    p.add_argument("model", help="ONNX detection model")
    p.add_argument(
        "--calibrate", nargs="+", required=True, metavar="CLIP", help="video(s) to calibrate and measure on"
    )
    p.add_argument("--out", default=None, help="folder for the new models (default: beside the model)")
    p.add_argument(
        "--calibration-frames", type=int, default=64, help="frames spread over the clips (default 64)"
    )
    p.add_argument(
        "--eval-frames", type=int, default=None, help="frames of each clip to measure on (default all)"
    )
    p.add_argument(
        "--per-tensor", action="store_true", help="one weight scale per tensor (default per channel)"
    )
    p.add_argument("--repeats", type=int, default=20, help="timed runs per batch size (default 20)")
    p.add_argument("--keep-float", type=int, default=12, help="first convolutions left in float (default 12)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_model_optimize)

    p = sub.add_parser("eval-det", help="COCO AP of a detector (or a det.txt) against ground truth",
                       description=cmd_eval_det.__doc__)  # fmt: skip
    p.add_argument(
        "--gt", required=True, help="COCO JSON, MOT gt.txt, sequence folder or folder of sequences"
    )
    p.add_argument("--dets", help="det.txt (frame,-1,x,y,w,h,score,class,...) or a folder of <seq>.txt")
    p.add_argument("--video", help="with --model: detect this video here instead of --dets")
    p.add_argument("--max-frames", type=int, default=None, help="with --video: only the first N frames")
    p.add_argument("--class-map", nargs="*", metavar="CLASS:CATEGORY",
                   help="model class -> ground-truth category id, e.g. 0:1 (default: see the description)")  # fmt: skip
    p.add_argument(
        "--det-class-names", help="names of the detections' classes (a names file) to match by name"
    )
    p.add_argument("--json", action="store_true", help="print AP, AP50, AP75, AR100, per_class as JSON")
    _add_detector_args(p)
    p.set_defaults(func=cmd_eval_det)

    p = sub.add_parser(
        "serve-model",
        help="serve a model on the SageMaker container contract",
        description=cmd_serve_model.__doc__,
    )
    p.add_argument(
        "--model",
        required=True,
        help="YOLOX ONNX model, or a model directory (model.onnx + trackcast-model.json)",
    )
    p.add_argument("--port", type=int, default=None, help="default: SAGEMAKER_BIND_TO_PORT or 8080")
    p.add_argument("--host", default="0.0.0.0")
    _add_postprocess_args(p)
    p.add_argument("--providers", default=None)
    p.set_defaults(func=cmd_serve_model)

    p = sub.add_parser("triton-repo", help="write a Triton Inference Server model repository for a YOLOX model",
                       description=cmd_triton_repo.__doc__)  # fmt: skip
    p.add_argument("model", help="YOLOX model exported to ONNX")
    p.add_argument("out", help="the model repository folder (Triton's --model-repository)")
    p.add_argument("--name", default="yolox", help="model name on the server (default: yolox)")
    p.add_argument("--preprocess", choices=["yolox", "bytetrack"], default="yolox")
    p.add_argument("--max-batch", type=int, default=None,
                   help="Triton max_batch_size (default: 32 on a GPU; 4 on CPUs, where big batches only add latency)")  # fmt: skip
    p.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    p.add_argument("--instances", type=int, default=1, help="model instances per device (default: 1)")
    p.add_argument("--no-tensorrt", action="store_true", help="CUDA only, no TensorRT engine")
    p.add_argument("--fp32", action="store_true", help="TensorRT in FP32 instead of FP16")
    p.add_argument(
        "--queue-delay-us", type=int, default=2000, help="dynamic batcher's queue delay (default: 2000)"
    )
    p.set_defaults(func=cmd_triton_repo)

    p = sub.add_parser(
        "eval",
        help="MOTA, IDF1, HOTA, ID switches of tracks against ground truth",
        description=cmd_eval.__doc__,
    )
    p.add_argument("gt", help="ground truth: a MOTChallenge gt.txt, or a folder of <seq>/gt/gt.txt")
    p.add_argument("hyp", help="tracker output: a MOTChallenge file, or a folder of <seq>.txt")
    p.add_argument("--benchmark", choices=["mot17", "mot20", "none"], default="none",
                   help="the benchmark whose official preprocessing to apply (default: none)")  # fmt: skip
    p.add_argument(
        "--seqmap", help="only the sequences this seqmap lists (a 'name' header, then one per line)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="run the service on a built-in default (no camera, model or broker needed)",
                       description=cmd_demo.__doc__)  # fmt: skip
    p.add_argument("--source", help="a camera or video instead of the synthetic pitch (rtsp://..., file.mp4)")
    p.add_argument("--model", help="an ONNX detection model instead of the motion detector")
    from detector_client.config import OnnxDetectorConfig as Onnx

    _option(p, Onnx, "preprocess")
    _option(p, Onnx, "classes", type=int, default=[0], help="classes to track with --model (0: person)")
    p.add_argument("--mqtt", help="use this broker (mqtt://host:port) instead of the embedded one")
    p.add_argument("--host", default="127.0.0.1", help="HTTP listen address")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (a free one if taken)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["loadtest"]:  # its own argument parser (python -m loadtest.run --help)
        return cmd_loadtest(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in DECODING_COMMANDS:
        from service.media.video import tune_for_decoding

        tune_for_decoding()
    try:
        rc: int = args.func(args)
    except _user_errors() as exc:
        print(f"trackcast: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # stdout was closed (e.g. `trackcast demo | head`): stop quietly, like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
