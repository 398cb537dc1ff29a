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

        res = gt_to_mot(args.manifest, args.job_name, args.out, args.split, args.frame_rate, args.seed,
                        args.strict, store)  # fmt: skip
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


def add_parsers(sub: Any) -> None:
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
