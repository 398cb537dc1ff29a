"""``trackcast convert ...`` and ``trackcast train ...``: argument parsing and output only."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from training.errors import TrainingError


def _aws(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", help="AWS region (default: AWS chain)")
    p.add_argument("--profile", help="AWS profile")
    p.add_argument("--endpoint-url", help="send every AWS call here (a local stand-in such as moto)")


def _clients(args: argparse.Namespace) -> Any:
    from deploy.sagemaker.manage import Clients

    return Clients(args.region, args.endpoint_url, args.profile)


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fractions like 0.6,0.3,0.1, got {text!r}") from None


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _classes(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected class names like person,ball, got {text!r}")
    return names


def cmd_convert(args: argparse.Namespace) -> int:
    """Ground Truth video tracking labels <-> MOT17, MOT17 -> COCO (local paths or s3://)."""
    from training.storage import Storage

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    store = Storage(_clients(args))
    if args.action == "gt-to-mot":
        from training.groundtruth import gt_to_mot

        raw_of = None
        if args.catalog:  # labels drawn on anonymised copies; training data from the raw frames
            from training.catalog import raw_locations

            catalog = _catalog(args)
            try:
                raw_of = raw_locations(catalog)
            finally:
                catalog.close()
        res = gt_to_mot(args.manifest, args.job_name, args.out, args.split, args.frame_rate, args.seed,
                        args.strict, store, raw_of)  # fmt: skip
    elif args.action == "mot-to-gt":
        from training.groundtruth import mot_to_gt

        res = mot_to_gt(args.tracks, args.frames, args.out, args.label_attribute, args.classes, args.name,
                        args.frame_rate, args.strict, store)  # fmt: skip
    else:
        from training.coco import mot_to_coco

        cats = {i + 1: n for i, n in enumerate(args.classes)} if args.classes else None
        res = mot_to_coco(args.mot, args.out, args.half, cats, args.strict, store)
    print(json.dumps(res, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Start a SageMaker training or hyperparameter tuning job for a YOLOX detector."""
    from training import launch
    from training import storage as st

    clients = _clients(args)
    channels: dict[str, str] = {}
    if args.dataset:
        root = args.dataset.rstrip("/") + "/"
        channels = {"train": f"{root}train/", "val": f"{root}val/", "annotations": f"{root}annotations/"}
    channels.update(dict(args.channel or []))
    hps = dict(args.hp or [])
    if args.dataset and "num_classes" not in hps:
        try:
            classes = json.loads(st.Storage(clients).read_text(args.dataset.rstrip("/") + "/classes.json"))
            hps["num_classes"] = str(len(classes))
        except (TrainingError, ValueError):
            pass  # no classes.json: the default (1) or --hp num_classes=N
    spec = launch.JobSpec(
        image=args.image, role=args.role or os.environ.get("TRACKCAST_SAGEMAKER_ROLE", ""), output=args.output,
        channels=channels, instance_type=args.instance_type, instance_count=args.instance_count,
        volume_gb=args.volume_gb, max_runtime_s=args.max_runtime, spot=args.spot, hyperparameters=hps,
    )  # fmt: skip
    if args.action == "launch":
        res = launch.launch(clients, args.job_name or launch.default_name("yolox"), spec)
    else:
        name = args.job_name or launch.default_name("hpo")[:32]
        ranges = launch.Ranges(
            (args.lr_range[0], args.lr_range[1]),
            (args.wd_range[0], args.wd_range[1]),
            (args.batch_range[0], args.batch_range[1]),
        )
        res = launch.tune(clients, name, spec, ranges, max_jobs=args.max_jobs, max_parallel=args.max_parallel,
                          strategy=args.strategy, early_stopping=not args.no_early_stopping)  # fmt: skip
    print(json.dumps(res, indent=2))
    return 0


def cmd_bag(args: argparse.Namespace) -> int:
    """ROS bags (ROS 1 .bag files, ROS 2 bag folders): list their topics, extract an image topic's frames."""
    from training import recordings
    from training.storage import Storage

    if args.action == "list":
        res = recordings.list_topics(args.bag)
        if args.json:
            print(json.dumps(res, indent=2))
            return 0
        print(f"{res['bag']}: ROS {res['ros']}, {res['duration_s']:.3f} s")
        print(f"{'topic':40} {'type':36} {'count':>8} {'rate_hz':>9}")
        for t in res["topics"]:
            rate = "" if t["rate_hz"] is None else f"{t['rate_hz']:.3f}"
            print(f"{t['topic']:40} {t['type']:36} {t['count']:8d} {rate:>9}")
        return 0
    res = recordings.extract(args.bag, args.out, args.topic, args.format, args.every, args.max_frames,
                             Storage(_clients(args)))  # fmt: skip
    print(json.dumps(res, indent=2))
    return 0


def _catalog(args: argparse.Namespace, create: bool = False) -> Any:
    from training.catalog import open_catalog

    return open_catalog(args.catalog, _clients(args), create=create)


def cmd_catalog(args: argparse.Namespace) -> int:
    """The frame catalog: label frames (folder, s3:// or a ROS bag) with what they contain; query them;
    write Ground Truth manifests of a selection."""
    from training import catalog as cat
    from training.storage import Storage

    clients = _clients(args)
    store = Storage(clients)
    if args.action == "build":
        if args.labeller == "rekognition":
            labeller: Any = cat.RekognitionLabeller(
                clients, min_confidence=args.min_score * 100, rate=args.rate
            )
        else:
            if not args.model:
                raise TrainingError(
                    "--model is required with --labeller local (or use --labeller rekognition)"
                )
            from pathlib import Path

            from detector_client import DetectorError, create_detector
            from detector_client.config import OnnxDetectorConfig

            try:
                det = create_detector(OnnxDetectorConfig(model=args.model, score_thresh=min(args.min_score, 0.1),
                                                         max_batch=args.batch))  # fmt: skip
            except (DetectorError, ValueError) as exc:
                raise TrainingError(str(exc)) from exc
            labeller = cat.LocalLabeller(det, Path(args.model).name, args.min_score)
        catalog = _catalog(args, create=True)
        try:
            res = cat.build(args.source, catalog, labeller, store, args.batch, args.extract_to, args.topic)
        finally:
            catalog.close()
        print(json.dumps(res, indent=2))
        return 0
    catalog = _catalog(args)
    try:
        expr = cat.parse_query(catalog, args.query) if args.query.strip() != "*" else None
        records = catalog.select(expr)
    finally:
        catalog.close()
    if args.to_manifest:
        res = cat.to_manifest(
            records, args.to_manifest, args.kind, args.raw, args.frames_per_sequence, store=store
        )
        print(json.dumps(res, indent=2))
        return 0
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2))
    else:
        for r in records:
            what = ", ".join(f"{k} {n}" for k, n in sorted(r.counts.items(), key=lambda kv: -kv[1]))
            print(f"{r.source}\t{r.frame}\t{r.anonymized or r.raw}\t{what}")
        print(f"{len(records)} frames", file=sys.stderr)
    return 0


def cmd_anonymize(args: argparse.Namespace) -> int:
    """Blur faces and licence plates in frames (a folder, s3://, or a catalog's frames) or a video."""
    from training import anonymize as an
    from training import storage as st

    clients = _clients(args)
    store = st.Storage(clients)
    det: Any = an.RekognitionDetector(clients) if args.detector == "rekognition" else an.CascadeDetector()
    if args.catalog:
        from training import catalog as cat

        catalog = _catalog(args)
        try:
            expr = cat.parse_query(catalog, args.where) if args.where else None
            records = catalog.select(expr)
            names = [st.name(r.raw) for r in records]
            if len(set(names)) != len(names):  # frames of several sources: keep them apart
                names = [f"{st.name(r.source)}/{st.name(r.raw)}" for r in records]
            res = an.anonymize_images([(r.raw, n) for r, n in zip(records, names, strict=True)], args.out, det, store,
                                      args.pad, on_done=lambda raw, dest, _b: catalog.set_anonymized(raw, dest))  # fmt: skip
        finally:
            catalog.close()
    elif args.input is None:
        raise TrainingError("give an INPUT (folder, s3:// prefix or video) or --catalog")
    elif not st.is_s3(args.input) and os.path.isfile(args.input):
        res = an.anonymize_video(args.input, args.out, det, args.pad, args.max_frames)
    else:
        from training.catalog import _image_files

        files = _image_files(store, args.input)[: args.max_frames]
        res = an.anonymize_images(
            [(st.join(args.input, f), f) for f in files], args.out, det, store, args.pad
        )
    print(json.dumps(res, indent=2))
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    """Start a SageMaker Ground Truth labelling job: video object tracking or image bounding boxes."""
    from training.labeling import create_job
    from training.storage import Storage

    clients = _clients(args)
    region = args.region or clients("sagemaker").meta.region_name
    res = create_job(clients, Storage(clients), args.job_name, args.task, args.manifest, args.output,
                     args.role or os.environ.get("TRACKCAST_SAGEMAKER_ROLE", ""), args.workteam, args.labels, region,
                     args.prelabels, workers_per_object=args.workers, free_of_pii=args.free_of_pii)  # fmt: skip
    print(json.dumps(res, indent=2))
    return 0


def add_parsers(sub: Any) -> None:
    cp = sub.add_parser("catalog", help="frame catalog: label frames with what they contain, query, manifests",
                        description=cmd_catalog.__doc__)  # fmt: skip
    actions = cp.add_subparsers(dest="action", required=True, metavar="ACTION")
    catalog_help = "SQLite file (default frames.db) or dynamodb://TABLE"
    p = actions.add_parser("build", help="label every frame of a folder, s3:// prefix or ROS bag")
    p.add_argument("source", help="folder or s3:// prefix of frames, or a ROS bag (with --extract-to)")
    p.add_argument("--catalog", default="frames.db", help=catalog_help)
    p.add_argument("--labeller", choices=["local", "rekognition"], default="local",
                   help="local: an ONNX detector (--model); rekognition: Amazon Rekognition DetectLabels")  # fmt: skip
    p.add_argument("--model", help="ONNX detection model (--labeller local)")
    p.add_argument(
        "--min-score", type=float, default=0.3, help="count detections at this score or more (0..1)"
    )
    p.add_argument("--batch", type=int, default=8, help="frames per detector call")
    p.add_argument("--rate", type=float, default=None, help="Rekognition requests per second at most")
    p.add_argument("--extract-to", default=None, help="a bag's frames go here (folder or s3://) first")
    p.add_argument("--topic", default=None, help="a bag's image topic (default: its only one)")
    _aws(p)
    p = actions.add_parser("query", help='frames matching e.g. "person >= 5 and car >= 1" (* for all)')
    p.add_argument("query")
    p.add_argument("--catalog", default="frames.db", help=catalog_help)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--to-manifest",
        default=None,
        metavar="FILE",
        help="write a Ground Truth input manifest (path or s3://)",
    )
    p.add_argument("--kind", choices=["image", "video"], default="image",
                   help="image: one line per frame (bounding boxes); video: frame sequences (tracking)")  # fmt: skip
    p.add_argument(
        "--raw", action="store_true", help="point the manifest at the raw frames, not the anonymised copies"
    )
    p.add_argument("--frames-per-sequence", type=int, default=2000)
    _aws(p)
    cp.set_defaults(func=cmd_catalog)

    p = sub.add_parser("anonymize", help="blur faces and licence plates in frames or a video",
                       description=cmd_anonymize.__doc__)  # fmt: skip
    p.add_argument(
        "input", nargs="?", help="folder or s3:// prefix of frames, or a video (omit with --catalog)"
    )
    p.add_argument("--out", required=True, help="folder or s3:// prefix (a video: an .mp4 path)")
    p.add_argument(
        "--catalog", default=None, help="anonymise the catalog's frames and record the copies there"
    )
    p.add_argument("--where", default=None, help="with --catalog: only frames matching this query")
    p.add_argument("--detector", choices=["opencv", "rekognition"], default="opencv",
                   help="opencv: the Haar cascades OpenCV ships; rekognition: DetectFaces + DetectText")  # fmt: skip
    p.add_argument("--pad", type=float, default=0.15, help="grow each region by this fraction of its size")
    p.add_argument("--max-frames", type=int, default=None)
    _aws(p)
    p.set_defaults(func=cmd_anonymize)

    lp = sub.add_parser("label", help="SageMaker Ground Truth labelling jobs", description=cmd_label.__doc__)
    actions = lp.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("create", help="CreateLabelingJob: video object tracking or image bounding boxes")
    p.add_argument("--task", choices=["video-tracking", "bounding-box"], required=True)
    p.add_argument("--job-name", required=True)
    p.add_argument("--manifest", required=True, help="s3:// input manifest (catalog query --to-manifest)")
    p.add_argument("--output", required=True, help="s3:// prefix for the job's output")
    p.add_argument("--labels", type=_classes, required=True, help="label categories, e.g. person,ball")
    p.add_argument("--workteam", required=True, help="work team ARN")
    p.add_argument("--role", help="execution role ARN (default: TRACKCAST_SAGEMAKER_ROLE)")
    p.add_argument("--prelabels", default=None, metavar="ATTRIBUTE",
                   help="an adjustment job over these pre-labels (convert mot-to-gt --label-attribute)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="workers per frame or sequence")
    p.add_argument("--free-of-pii", action="store_true",
                   help="declare the frames free of personal data (anonymised): needed for a public workforce")  # fmt: skip
    _aws(p)
    lp.set_defaults(func=cmd_label)

    bp = sub.add_parser("bag", help="ROS bags: list topics, extract an image topic's frames (dir or s3://)",
                        description=cmd_bag.__doc__)  # fmt: skip
    actions = bp.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="topics, types, message counts and rates")
    p.add_argument("bag", help="ROS 1 .bag file or ROS 2 bag folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = actions.add_parser(
        "extract", help="an image topic's frames as files with their timestamps (resumable)"
    )
    p.add_argument("bag", help="ROS 1 .bag file or ROS 2 bag folder")
    p.add_argument("--topic", default=None, help="image topic (default: the bag's only one)")
    p.add_argument("--out", required=True, help="folder or s3:// prefix (frame_000001.png ..., frames.jsonl)")
    p.add_argument("--format", default="png", choices=["png", "jpg"],
                   help="for raw images (compressed ones keep their bytes)")  # fmt: skip
    p.add_argument("--every", type=int, default=1, help="every N-th frame")
    p.add_argument("--max-frames", type=int, default=None)
    _aws(p)
    bp.set_defaults(func=cmd_bag)

    cp = sub.add_parser(
        "convert", help="Ground Truth video labels <-> MOT17, MOT17 -> COCO", description=cmd_convert.__doc__
    )
    actions = cp.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--strict", action="store_true", help="stop at the first warning (clipped box, skipped row, ...)"
        )
        _aws(p)

    p = actions.add_parser("gt-to-mot", help="Ground Truth video object tracking output -> MOT17 tree")
    p.add_argument("--manifest", required=True, help="the job's output.manifest (path or s3://)")
    p.add_argument(
        "--job-name", required=True, help="the label attribute name (the manifest's '<job-name>-ref' key)"
    )
    p.add_argument("--out", required=True, help="output folder (path or s3://)")
    p.add_argument("--split", type=_fractions, default=None, metavar="TRAIN,VAL[,TEST]",
                   help="fractions of the sequences per split, e.g. 0.6,0.3,0.1 (default: all in train)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the sequence shuffle before splitting")
    p.add_argument(
        "--frame-rate", type=float, default=30.0, help="seqinfo frameRate when frames carry no timestamps"
    )
    p.add_argument("--catalog", default=None,
                   help="frame catalog: copy the raw frames of the anonymised ones the labels were drawn on")  # fmt: skip
    common(p)
    p = actions.add_parser("mot-to-coco", help="MOT17 tree -> COCO JSON for YOLOX/ByteTrack training")
    p.add_argument("--mot", required=True, help="MOT17 tree (split folders of sequences), path or s3://")
    p.add_argument("--out", default=None, help="where annotations/ goes (default: the --mot folder)")
    p.add_argument(
        "--half",
        action="store_true",
        help="also write <split>_half1/_half2 (first/second half of each sequence)",
    )
    p.add_argument(
        "--classes",
        type=_classes,
        default=None,
        help="category names for MOT classes 1.. (default: classes.json)",
    )
    common(p)
    p = actions.add_parser(
        "mot-to-gt", help="tracker output -> Ground Truth pre-labels for an adjustment job"
    )
    p.add_argument("--tracks", required=True, help="MOT results (frame,id,x,y,w,h,score,...), path or s3://")
    p.add_argument(
        "--frames", required=True, help="folder of the frames the tracker ran on, in order (path or s3://)"
    )
    p.add_argument("--out", required=True, help="output folder (path or s3://)")
    p.add_argument(
        "--label-attribute", default="trackcast-prelabels", help="label attribute name of the pre-labels"
    )
    p.add_argument(
        "--classes", type=_classes, default=None, help="class names for MOT classes 1.. (default: person)"
    )
    p.add_argument("--name", default=None, help="sequence name (default: the frames folder's name)")
    p.add_argument("--frame-rate", type=float, default=30.0, help="frame rate written as unix-timestamps")
    common(p)
    cp.set_defaults(func=cmd_convert)

    tp = sub.add_parser(
        "train",
        help="SageMaker training / hyperparameter tuning of a YOLOX detector",
        description=cmd_train.__doc__,
    )
    actions = tp.add_subparsers(dest="action", required=True, metavar="ACTION")

    def job(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--job-name",
            default=None,
            help="job name (default: trackcast-yolox-<time> / trackcast-hpo-<time>)",
        )
        p.add_argument(
            "--image", required=True, help="training image URI (a YOLOX trainer, see training/launch.py)"
        )
        p.add_argument("--role", help="execution role ARN (default: TRACKCAST_SAGEMAKER_ROLE)")
        p.add_argument(
            "--dataset", help="s3:// root of the COCO dataset: channels train/, val/, annotations/"
        )
        p.add_argument(
            "--channel", type=_pair, action="append", metavar="NAME=S3URI", help="add or replace a channel"
        )
        p.add_argument("--output", required=True, help="s3:// prefix for model artifacts")
        p.add_argument("--instance-type", default="ml.g5.xlarge")
        p.add_argument("--instance-count", type=int, default=1)
        p.add_argument("--volume-gb", type=int, default=50)
        p.add_argument("--max-runtime", type=int, default=24 * 3600, help="seconds")
        p.add_argument("--spot", action="store_true", help="managed spot training with checkpoints in S3")
        p.add_argument(
            "--hp", type=_pair, action="append", metavar="KEY=VALUE", help="hyperparameter (repeatable)"
        )
        _aws(p)

    p = actions.add_parser("launch", help="start a training job")
    job(p)
    p = actions.add_parser("tune", help="start a hyperparameter tuning job (objective: validation AP)")
    job(p)
    p.add_argument("--max-jobs", type=int, default=12)
    p.add_argument("--max-parallel", type=int, default=2)
    p.add_argument("--strategy", default="Bayesian", choices=["Bayesian", "Random", "Hyperband", "Grid"])
    for flag, hp in (("--lr-range", "basic_lr_per_img"), ("--wd-range", "weight_decay")):
        p.add_argument(
            flag, type=float, nargs=2, default=[1e-5, 1e-3], metavar=("MIN", "MAX"), help=f"{hp} (log scale)"
        )
    p.add_argument(
        "--batch-range", type=int, nargs=2, default=[8, 32], metavar=("MIN", "MAX"), help="batch_size"
    )
    p.add_argument("--no-early-stopping", action="store_true")
    tp.set_defaults(func=cmd_train)
