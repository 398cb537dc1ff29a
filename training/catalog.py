"""The frame catalog: what each recorded frame contains, searchable, with raw and anonymised copies.

``trackcast catalog build SOURCE`` labels every frame of a folder (local or ``s3://``) or of a ROS
bag's image topic (extracted first, ``--extract-to``) with the classes detected in it, their counts
and best scores; ``trackcast catalog query "person >= 5 and car >= 1"`` lists the frames that match
(``training.query``), and ``--to-manifest`` writes a SageMaker Ground Truth input manifest of them:
one line per image (bounding-box jobs), or video frame sequences (tracking jobs). Manifests point at
the anonymised copies (``trackcast anonymize`` records them); training data comes from the raw ones
(``convert gt-to-mot --catalog``).

Labellers: the local detector (any model trackcast runs), or Amazon Rekognition DetectLabels
(throttling retried with capped backoff, counted; an optional request rate). Stores: SQLite (the
default, a file: ``--catalog frames.db``) or DynamoDB (``--catalog dynamodb://TABLE``, created
on the first build, on-demand capacity). Building again skips frames already catalogued by the
same labeller, so an interrupted build resumes.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from detector_client.backoff import Backoff
from training import query as q
from training import storage as st
from training.errors import TrainingError
from training.groundtruth import IMAGE_EXTS, TRACKING_TYPE


class CatalogError(TrainingError, ValueError):
    """A catalog that cannot be opened, built or queried (names the catalog, frame or query)."""


@dataclass
class FrameRecord:
    id: str  # the raw frame's location: the catalog key
    source: str  # the folder (or bag) the frame came from
    frame: int  # 1-based position in its source
    width: int
    height: int
    labeller: str
    counts: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    t_ns: int | None = None
    anonymized: str | None = None

    @property
    def raw(self) -> str:
        return self.id

    @property
    def objects(self) -> int:
        return sum(self.counts.values())

    def fields(self) -> dict[str, float]:
        return {"frame": self.frame, "width": self.width, "height": self.height, "objects": self.objects,
                "anonymized": 1.0 if self.anonymized else 0.0}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "frame": self.frame, "t_ns": self.t_ns, "width": self.width,
                "height": self.height, "raw": self.raw, "anonymized": self.anonymized, "labeller": self.labeller,
                "counts": self.counts, "scores": self.scores}  # fmt: skip


class Catalog(Protocol):
    name: str

    def put(self, records: list[FrameRecord]) -> None: ...
    def ids(self, labeller: str | None = None) -> set[str]: ...
    def select(self, expr: q.Expr | None) -> list[FrameRecord]: ...
    def set_anonymized(self, frame_id: str, uri: str) -> None: ...
    def known_labels(self) -> set[str]: ...
    def add_vocabulary(self, labels: Iterable[str]) -> None: ...
    def close(self) -> None: ...


def parse_query(catalog: Catalog, text: str) -> q.Expr:
    try:
        return q.parse(text, catalog.known_labels())
    except q.QueryError as exc:
        raise CatalogError(f"query {text!r}: {exc}") from exc


# ----------------------------------------------------------------------------------- SQLite


class SqliteCatalog:
    def __init__(self, path: str, create: bool) -> None:
        self.name = path
        if not create and not Path(path).is_file():
            raise CatalogError(
                f"no catalog at {path}: build one with `trackcast catalog build ... --catalog {path}`"
            )
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path)
            self.db.executescript("""
                CREATE TABLE IF NOT EXISTS frames (
                    id TEXT PRIMARY KEY, source TEXT NOT NULL, frame INTEGER NOT NULL, t_ns INTEGER,
                    width INTEGER NOT NULL, height INTEGER NOT NULL, objects INTEGER NOT NULL,
                    labeller TEXT NOT NULL, anonymized TEXT);
                CREATE TABLE IF NOT EXISTS labels (
                    frame_id TEXT NOT NULL REFERENCES frames(id) ON DELETE CASCADE, label TEXT NOT NULL,
                    count INTEGER NOT NULL, score REAL NOT NULL, PRIMARY KEY (frame_id, label));
                CREATE INDEX IF NOT EXISTS labels_by_label ON labels(label, count);
                CREATE TABLE IF NOT EXISTS vocabulary (label TEXT PRIMARY KEY);
            """)
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{path}: not a trackcast catalog (SQLite says: {exc})") from exc

    def put(self, records: list[FrameRecord]) -> None:
        with self.db:
            for r in records:
                self.db.execute("DELETE FROM labels WHERE frame_id = ?", (r.id,))
                self.db.execute(
                    "INSERT OR REPLACE INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.id, r.source, r.frame, r.t_ns, r.width, r.height, r.objects, r.labeller, r.anonymized),
                )
                self.db.executemany(
                    "INSERT INTO labels VALUES (?, ?, ?, ?)",
                    [(r.id, k, n, r.scores.get(k, 0.0)) for k, n in r.counts.items()],
                )
                self.db.executemany("INSERT OR IGNORE INTO vocabulary VALUES (?)", [(k,) for k in r.counts])

    def ids(self, labeller: str | None = None) -> set[str]:
        if labeller is None:
            return {r[0] for r in self.db.execute("SELECT id FROM frames")}
        return {r[0] for r in self.db.execute("SELECT id FROM frames WHERE labeller = ?", (labeller,))}

    def select(self, expr: q.Expr | None) -> list[FrameRecord]:
        where, params = q.to_sql(expr) if expr is not None else ("1", [])
        rows = self.db.execute(
            f"SELECT id, source, frame, t_ns, width, height, labeller, anonymized FROM frames WHERE {where} "
            "ORDER BY source, frame",
            params,
        ).fetchall()
        labels: dict[str, list[tuple[str, int, float]]] = {}
        for fid, lab, n, s in self.db.execute("SELECT frame_id, label, count, score FROM labels"):
            labels.setdefault(fid, []).append((lab, n, s))
        out = []
        for fid, source, frame, t_ns, w, h, labeller, anon in rows:
            ls = labels.get(fid, [])
            out.append(FrameRecord(fid, source, frame, w, h, labeller, {k: n for k, n, _ in ls},
                                   {k: s for k, _, s in ls}, t_ns, anon))  # fmt: skip
        return out

    def set_anonymized(self, frame_id: str, uri: str) -> None:
        with self.db:
            self.db.execute("UPDATE frames SET anonymized = ? WHERE id = ?", (uri, frame_id))

    def known_labels(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT label FROM vocabulary")}

    def add_vocabulary(self, labels: Iterable[str]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO vocabulary VALUES (?)", [(q.label_key(k),) for k in labels]
            )

    def close(self) -> None:
        self.db.close()


# ---------------------------------------------------------------------------------- DynamoDB

_META_ID = "__trackcast_catalog__"


class DynamoCatalog:
    """One item per frame (``id`` the partition key; counts and scores as maps) and one meta item
    holding the label vocabulary. Queries scan and evaluate the expression here."""

    def __init__(self, table: str, clients: Any, create: bool) -> None:
        self.name = f"dynamodb://{table}"
        self.table = table
        self.client = clients("dynamodb")
        try:
            self.client.describe_table(TableName=table)
        except Exception as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise self._fail(exc, "open") from exc
            if not create:
                raise CatalogError(
                    f"{self.name}: the DynamoDB table {table!r} does not exist (in this account and region); "
                    f"`trackcast catalog build ... --catalog {self.name}` creates it"
                ) from exc
            try:
                self.client.create_table(
                    TableName=table, BillingMode="PAY_PER_REQUEST",
                    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                )  # fmt: skip
                self.client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
            except Exception as exc2:
                raise self._fail(exc2, "create") from exc2

    def _fail(self, exc: Exception, what: str) -> CatalogError:
        from deploy.sagemaker.manage import explain_aws_error

        return CatalogError(str(explain_aws_error(exc, f"{self.name}: {what}")))

    def _retrying(self, call: Callable[[], Any], what: str) -> Any:
        backoff = Backoff(0.05, 5.0)
        for attempt in range(10):
            try:
                return call()
            except Exception as exc:
                if _code(exc) not in _THROTTLED or attempt == 9:
                    raise self._fail(exc, what) from exc
                time.sleep(backoff.next())
        raise AssertionError("unreachable")

    def put(self, records: list[FrameRecord]) -> None:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()

        def item(r: FrameRecord) -> dict[str, Any]:
            d = {k: v for k, v in r.to_json().items() if v is not None and k != "raw"}
            d["scores"] = {k: Decimal(str(round(v, 6))) for k, v in r.scores.items()}
            d["objects"] = r.objects
            return {k: ser.serialize(v) for k, v in d.items()}

        pending = [{"PutRequest": {"Item": item(r)}} for r in records]
        backoff = Backoff(0.05, 5.0)
        while pending:
            chunk, pending = pending[:25], pending[25:]
            res = self._retrying(functools.partial(self.client.batch_write_item, RequestItems={self.table: chunk}),
                                 "write")  # fmt: skip
            left = res.get("UnprocessedItems", {}).get(self.table, [])
            if left:  # throttled items come back: write them again after a pause
                pending = left + pending
                time.sleep(backoff.next())
        labels = sorted({k for r in records for k in r.counts})
        if labels:
            self.add_vocabulary(labels)

    def _scan(self) -> Iterator[dict[str, Any]]:
        from boto3.dynamodb.types import TypeDeserializer

        de = TypeDeserializer()
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            page = self._retrying(lambda: self.client.scan(**kwargs), "scan")
            for it in page.get("Items", []):
                yield {k: de.deserialize(v) for k, v in it.items()}
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _record(self, d: dict[str, Any]) -> FrameRecord:
        return FrameRecord(
            str(d["id"]), str(d["source"]), int(d["frame"]), int(d["width"]), int(d["height"]), str(d["labeller"]),
            {k: int(v) for k, v in d.get("counts", {}).items()}, {k: float(v) for k, v in d.get("scores", {}).items()},
            int(d["t_ns"]) if "t_ns" in d else None, d.get("anonymized"),
        )  # fmt: skip

    def ids(self, labeller: str | None = None) -> set[str]:
        return {
            str(d["id"])
            for d in self._scan()
            if d["id"] != _META_ID and (labeller is None or d.get("labeller") == labeller)
        }

    def select(self, expr: q.Expr | None) -> list[FrameRecord]:
        out = []
        for d in self._scan():
            if d["id"] == _META_ID:
                continue
            r = self._record(d)
            if expr is None or q.evaluate(expr, r.counts, r.scores, r.fields()):
                out.append(r)
        return sorted(out, key=lambda r: (r.source, r.frame))

    def set_anonymized(self, frame_id: str, uri: str) -> None:
        self._retrying(lambda: self.client.update_item(
            TableName=self.table, Key={"id": {"S": frame_id}},
            UpdateExpression="SET anonymized = :a", ExpressionAttributeValues={":a": {"S": uri}},
        ), "update")  # fmt: skip

    def known_labels(self) -> set[str]:
        res = self._retrying(
            lambda: self.client.get_item(TableName=self.table, Key={"id": {"S": _META_ID}}), "read"
        )
        return set(res.get("Item", {}).get("labels", {}).get("SS", []))

    def add_vocabulary(self, labels: Iterable[str]) -> None:
        keys = sorted({q.label_key(k) for k in labels})
        if keys:
            self._retrying(lambda: self.client.update_item(
                TableName=self.table, Key={"id": {"S": _META_ID}},
                UpdateExpression="ADD labels :l", ExpressionAttributeValues={":l": {"SS": keys}},
            ), "update")  # fmt: skip

    def close(self) -> None:
        pass


_THROTTLED = {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
              "LimitExceededException", "TooManyRequestsException", "Throttling"}  # fmt: skip


def _code(exc: Exception) -> str:
    resp = getattr(exc, "response", None)
    return str(resp.get("Error", {}).get("Code", "")) if isinstance(resp, dict) else ""


def open_catalog(uri: str, clients: Any = None, create: bool = False) -> Catalog:
    """``dynamodb://TABLE`` or a SQLite file path."""
    if uri.startswith("dynamodb://"):
        table = uri[len("dynamodb://") :].strip("/")
        if not table:
            raise CatalogError(f"{uri!r}: name the table, dynamodb://TABLE")
        if clients is None:
            from deploy.sagemaker.manage import Clients

            clients = Clients()
        return DynamoCatalog(table, clients, create)
    if "://" in uri:
        raise CatalogError(f"--catalog {uri!r}: a SQLite file path or dynamodb://TABLE")
    return SqliteCatalog(uri, create)


# --------------------------------------------------------------------------------- labellers


Labels = tuple[dict[str, int], dict[str, float]]  # counts, best scores


class LocalLabeller:
    """Any detector trackcast runs (``detector_client``): counts of detections at ``min_score`` or more."""

    def __init__(self, detector: Any, name: str, min_score: float = 0.3) -> None:
        self.detector = detector
        self.min_score = min_score
        self.names = [q.label_key(n) for n in detector.class_names or []]
        self.name = f"local:{name}"
        self.throttled = 0

    def vocabulary(self) -> list[str]:
        return self.names

    def label(self, images: list[tuple[np.ndarray, bytes, str]]) -> list[Labels]:
        prepared = [self.detector.spec.prepare(img) for img, _data, _uri in images]
        out: list[Labels] = []
        for d in self.detector.detect_sync(prepared):
            counts: dict[str, int] = {}
            scores: dict[str, float] = {}
            for _x1, _y1, _x2, _y2, s, c in d.rows.tolist():
                if s < self.min_score:
                    continue
                k = self.names[int(c)] if int(c) < len(self.names) else f"class_{int(c)}"
                counts[k] = counts.get(k, 0) + 1
                scores[k] = round(max(scores.get(k, 0.0), float(s)), 4)
            out.append((counts, scores))
        return out


class RekognitionLabeller:
    """Amazon Rekognition DetectLabels, one request a frame (S3 frames by reference, local ones as bytes).

    A label with instances counts its instances at ``min_confidence`` or more; one without (a scene
    label) counts 1. Throttling (ThrottlingException, ProvisionedThroughputExceededException,
    LimitExceededException) is retried with capped exponential backoff up to ``retries`` times and
    counted in ``throttled``; ``rate`` caps requests per second.
    """

    def __init__(self, clients: Any, min_confidence: float = 50.0, max_labels: int = 100, retries: int = 8,
                 backoff: tuple[float, float] = (0.5, 20.0), rate: float | None = None) -> None:  # fmt: skip
        self.client = clients.client("rekognition", retries={"total_max_attempts": 1, "mode": "standard"})
        self.min_confidence = min_confidence
        self.max_labels = max_labels
        self.retries = retries
        self.backoff = backoff
        self.interval = 1.0 / rate if rate else 0.0
        self._last = 0.0
        self.name = "rekognition:DetectLabels"
        self.throttled = 0

    def vocabulary(self) -> list[str]:
        return []

    def _call(self, image: dict[str, Any], where: str) -> dict[str, Any]:
        backoff = Backoff(*self.backoff)
        for attempt in range(self.retries + 1):
            wait = self._last + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            try:
                res: dict[str, Any] = self.client.detect_labels(
                    Image=image, MaxLabels=self.max_labels, MinConfidence=self.min_confidence
                )
                return res
            except Exception as exc:
                if _code(exc) in _THROTTLED and attempt < self.retries:
                    self.throttled += 1
                    time.sleep(backoff.next())
                    continue
                if _code(exc) in _THROTTLED:
                    raise CatalogError(
                        f"Rekognition DetectLabels, {where}: still throttled after {self.retries} retries; "
                        "lower --rate or ask AWS for a higher transactions-per-second quota"
                    ) from exc
                from deploy.sagemaker.manage import explain_aws_error

                raise CatalogError(str(explain_aws_error(exc, f"Rekognition DetectLabels, {where}"))) from exc
        raise AssertionError("unreachable")

    def label(self, images: list[tuple[np.ndarray, bytes, str]]) -> list[Labels]:
        out: list[Labels] = []
        for _img, data, uri in images:
            if st.is_s3(uri):
                bucket, key = st.split_s3(uri)
                image: dict[str, Any] = {"S3Object": {"Bucket": bucket, "Name": key}}
            else:
                image = {"Bytes": data}
            res = self._call(image, uri)
            counts: dict[str, int] = {}
            scores: dict[str, float] = {}
            for lab in res.get("Labels", []):
                k = q.label_key(str(lab.get("Name", "")))
                if not k:
                    continue
                inst = [
                    i
                    for i in lab.get("Instances", [])
                    if float(i.get("Confidence", 0)) >= self.min_confidence
                ]
                best = max([float(i.get("Confidence", 0)) for i in inst] + [float(lab.get("Confidence", 0))])
                counts[k] = max(counts.get(k, 0), len(inst) if inst else 1)
                scores[k] = round(max(scores.get(k, 0.0), best / 100.0), 4)
            out.append((counts, scores))
        return out


# ------------------------------------------------------------------------------------ build


def _image_files(store: st.Storage, folder: str) -> list[str]:
    try:
        _dirs, files = store.listdir(folder)
    except TrainingError as exc:
        raise CatalogError(f"{folder}: {exc}") from exc
    images = [f for f in files if f.lower().endswith(IMAGE_EXTS) and not f.startswith(".")]
    if not images:
        raise CatalogError(f"{folder}: no images ({', '.join(IMAGE_EXTS)})")
    return images


def build(
    source: str,
    catalog: Catalog,
    labeller: Any,
    store: st.Storage,
    batch: int = 8,
    extract_to: str | None = None,
    topic: str | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Label every frame of ``source`` (a folder, s3:// prefix or bag) into ``catalog``."""
    import cv2

    from service.media.bag import is_bag
    from training import recordings

    extracted = None
    folder = source
    if is_bag(source):
        if not extract_to:
            raise CatalogError(f"{source} is a ROS bag: pass --extract-to DIR|s3://... for its frames")
        extracted = recordings.extract(source, extract_to, topic, store=store)
        folder = extract_to
    files = _image_files(store, folder)
    index = {r["file"]: r for r in recordings.read_index(store, folder)}
    catalog.add_vocabulary(labeller.vocabulary())
    done = catalog.ids(labeller.name)
    t0 = time.perf_counter()
    todo = []
    for n, name in enumerate(files, 1):
        uri = st.join(folder, name) if st.is_s3(folder) else str(Path(folder, name).resolve())
        if uri not in done:
            todo.append((n, name, uri))
    labelled = 0
    for i in range(0, len(todo), batch):
        chunk = todo[i : i + batch]
        images = []
        for _n, _name, uri in chunk:
            data = store.read(uri)
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise CatalogError(f"{uri}: not an image OpenCV can read")
            images.append((img, data, uri))
        records = []
        for (n, name, uri), (img, _d, _u), (counts, scores) in zip(
            chunk, images, labeller.label(images), strict=True
        ):
            row = index.get(name, {})
            records.append(FrameRecord(uri, st.name(source) if extracted else folder, int(row.get("frame", n)),
                                       img.shape[1], img.shape[0], labeller.name, counts, scores,
                                       row.get("t_ns")))  # fmt: skip
        catalog.put(records)
        labelled += len(records)
        if on_frame is not None:
            on_frame(labelled)
    res: dict[str, Any] = {"catalog": catalog.name, "source": source, "frames": len(files), "labelled": labelled,
                           "already_catalogued": len(files) - len(todo), "labeller": labeller.name,
                           "throttled": labeller.throttled, "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
    if extracted is not None:
        res["extracted"] = extracted
    return res


# ---------------------------------------------------------------------------------- manifests


def _location(r: FrameRecord, use_raw: bool) -> str:
    if use_raw:
        return r.raw
    if not r.anonymized:
        raise CatalogError(
            f"frame {r.frame} of {r.source} ({r.raw}) has no anonymised copy: run `trackcast anonymize --catalog ...` "
            "first (a labelling workforce sees these frames), or pass --raw"
        )
    return r.anonymized


def to_manifest(records: list[FrameRecord], out: str, kind: str = "image", use_raw: bool = False,
                frames_per_sequence: int = 2000, frame_rate: float = 30.0,
                store: st.Storage | None = None) -> dict[str, Any]:  # fmt: skip
    """A Ground Truth input manifest of ``records``: image lines, or video frame sequences."""
    store = store or st.Storage()
    if not records:
        raise CatalogError("the query selects no frames: nothing to label")
    if kind == "image":
        lines = [json.dumps({"source-ref": _location(r, use_raw)}) for r in records]
        store.write(out, "\n".join(lines) + "\n")
        return {"manifest": out, "kind": kind, "frames": len(records), "lines": len(lines)}
    if kind != "video":
        raise CatalogError(f"--kind {kind!r}: image or video")
    if not 1 <= frames_per_sequence <= 2000:
        raise CatalogError("--frames-per-sequence: 1..2000 (Ground Truth's limit for a video frame sequence)")
    # runs of consecutive frames of one source, in one folder, make a sequence
    sequences: list[list[tuple[FrameRecord, str]]] = []
    for r in sorted(records, key=lambda r: (r.source, r.frame)):
        loc = _location(r, use_raw)
        last = sequences[-1][-1] if sequences else None
        if (last is None or last[0].source != r.source or r.frame != last[0].frame + 1
                or st.parent(last[1]) != st.parent(loc) or len(sequences[-1]) >= frames_per_sequence):  # fmt: skip
            sequences.append([])
        sequences[-1].append((r, loc))
    base = st.parent(out)
    lines = []
    for k, seq in enumerate(sequences, 1):
        first = seq[0][0]
        name = f"{Path(first.source).name or 'frames'}-{first.frame:06d}"
        t0 = first.t_ns
        frames = [{"frame-no": i, "frame": st.name(loc),
                   "unix-timestamp": round(r.t_ns / 1e9, 6) if r.t_ns is not None and t0 is not None else round(i / frame_rate, 6)}
                  for i, (r, loc) in enumerate(seq)]  # fmt: skip
        seq_uri = st.join(base, "sequences", f"{name}.json")
        store.write(seq_uri, json.dumps({"seq-no": k, "prefix": st.parent(seq[0][1]).rstrip("/") + "/",
                                         "number-of-frames": len(frames), "frames": frames}, indent=1) + "\n")  # fmt: skip
        lines.append(json.dumps({"source-ref": seq_uri}))
    store.write(out, "\n".join(lines) + "\n")
    return {"manifest": out, "kind": kind, "frames": len(records), "sequences": len(sequences),
            "type": TRACKING_TYPE}  # fmt: skip


def raw_locations(catalog: Catalog) -> dict[str, str]:
    """Anonymised copy -> raw frame, for turning labels on anonymised frames into training data."""
    return {r.anonymized: r.raw for r in catalog.select(None) if r.anonymized}
