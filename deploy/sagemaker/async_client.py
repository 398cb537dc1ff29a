"""``trackcast invoke-async VIDEO --endpoint E --input-s3 s3://bucket/in/ --out DIR``.

Uploads the video, calls InvokeEndpointAsync, waits for the result (polling the output location,
or an SNS notification delivered to an SQS queue with ``--sqs-url``), downloads it and unpacks
``tracks.txt``, ``annotated.mp4`` and ``summary.json`` into ``--out``. A failure (the failure
location appears, or the notification says so) is reported with the endpoint's message.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.sagemaker.manage import Clients, explain_aws_error


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise DeployError(f"expected an s3:// location, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def _exists(s3: Any, uri: str) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = _split(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def invoke_async(clients: Clients, video: Path, endpoint: str, input_s3: str, out: Path, timeout: float = 3600,
                 poll: float = 5.0, sqs_url: str | None = None) -> dict[str, Any]:  # fmt: skip
    if not video.is_file():
        raise DeployError(f"video {video} does not exist")
    s3 = clients("s3")
    bucket, prefix = _split(input_s3.rstrip("/") + "/")
    key = f"{prefix}{uuid.uuid4().hex}-{video.name}"
    try:
        s3.upload_file(str(video), bucket, key)
    except Exception as exc:
        raise explain_aws_error(exc, f"upload to bucket {bucket}") from exc
    try:
        resp = clients("sagemaker-runtime").invoke_endpoint_async(
            EndpointName=endpoint, InputLocation=f"s3://{bucket}/{key}", ContentType="video/mp4",
            InvocationTimeoutSeconds=3600,
        )  # fmt: skip
    except Exception as exc:
        raise explain_aws_error(exc, f"invoke endpoint {endpoint}") from exc
    output, failure = resp["OutputLocation"], resp.get("FailureLocation")
    deadline = time.monotonic() + timeout
    while True:
        if _exists(s3, output):
            break
        if failure and _exists(s3, failure):
            fb, fk = _split(failure)
            msg = s3.get_object(Bucket=fb, Key=fk)["Body"].read().decode(errors="replace")[:500]
            raise DeployError(f"endpoint {endpoint} failed on {video.name}: {msg}")
        if sqs_url:
            _wait_sns(clients("sqs"), sqs_url, resp.get("InferenceId"), poll)
        elif time.monotonic() > deadline:
            raise DeployError(f"no result from {endpoint} after {timeout:.0f}s (expected at {output})")
        else:
            time.sleep(poll)
    ob, ok = _split(output)
    data = s3.get_object(Bucket=ob, Key=ok)["Body"].read()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names = tar.getnames()
            if not names or set(names) - {"tracks.txt", "annotated.mp4", "summary.json"}:
                raise DeployError(f"unexpected result from {endpoint}: {names}")
            tar.extractall(out, filter="data")
    except tarfile.ReadError as exc:
        raise DeployError(
            f"the result at {output} is not a trackcast result archive ({len(data)} bytes)"
        ) from exc
    return {"output": output, "files": sorted(str(out / n) for n in names)}


def _wait_sns(sqs: Any, url: str, inference_id: str | None, poll: float) -> None:
    """Wait on an SQS queue subscribed to the endpoint's SNS topics (one long poll)."""
    msgs = sqs.receive_message(
        QueueUrl=url, WaitTimeSeconds=min(20, max(1, int(poll))), MaxNumberOfMessages=10
    )
    for m in msgs.get("Messages", []):
        try:
            body = json.loads(m["Body"])
            note = json.loads(body.get("Message", "{}")) if "Message" in body else body
        except ValueError:
            note = {}
        if inference_id is None or note.get("inferenceId") == inference_id:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
