"""``trackcast label create``: a SageMaker Ground Truth labelling job (CreateLabelingJob).

Two task types, each new or as an adjustment of pre-labels:

- ``video-tracking``: video frame object tracking over the sequences of a manifest that ``catalog
  query --to-manifest --kind video`` (or ``convert mot-to-gt``) wrote. ``--prelabels ATTR`` makes it
  an adjustment job over tracker output (``convert mot-to-gt --label-attribute ATTR``): workers fix
  boxes and IDs instead of drawing them.
- ``bounding-box``: image bounding boxes over an image manifest (``--kind image``); the worker UI
  is a ``crowd-bounding-box`` template written next to the manifest.

The label category file (``--labels person,ball``) and the UI template are written to ``--output``;
the built-in pre-annotation and consolidation Lambdas are picked for the region (Ground Truth's own
list, checked in the tests against the list in botocore's service documentation).
"""

from __future__ import annotations

import json
import re
from typing import Any

from training import storage as st
from training.errors import TrainingError

#: The AWS accounts of Ground Truth's built-in Lambdas, per region.
LAMBDA_ACCOUNTS = {
    "us-east-1": "432418664414", "us-east-2": "266458841044", "us-west-2": "081040173940",
    "ca-central-1": "918755190332", "eu-west-1": "568282634449", "eu-west-2": "487402164563",
    "eu-central-1": "203001061592", "ap-northeast-1": "477331159723", "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007", "ap-southeast-1": "377565633583", "ap-southeast-2": "454466003867",
}  # fmt: skip
#: The account of Ground Truth's worker UIs for video frame tasks
UI_ACCOUNT = "394669845002"
TASKS = {
    # task type -> (Lambda suffix, adjustment Lambda suffix, UI ARN name or None for a template)
    "video-tracking": ("VideoObjectTracking", "AdjustmentVideoObjectTracking", "VideoObjectTracking"),
    "bounding-box": ("BoundingBox", "AdjustmentBoundingBox", None),
}

BOX_TEMPLATE = """<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-bounding-box name="boundingBox" src="{{ task.input.taskObject | grant_read_access }}"
    header="{{ task.input.header }}" labels="{{ task.input.labels | to_json | escape }}"
    {% if task.input.initialValue %}initial-value="{{ task.input.initialValue | to_json | escape }}"{% endif %}>
    <full-instructions header="Bounding box instructions">
      <p>Draw one tight box around each object of the listed categories, including partly hidden ones.</p>
    </full-instructions>
    <short-instructions><p>Draw a tight box around each object.</p></short-instructions>
  </crowd-bounding-box>
</crowd-form>
"""


class LabelingError(TrainingError, ValueError):
    pass


def _name(text: str, what: str) -> str:
    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", text) or len(text) > 63:
        raise LabelingError(f"{what} {text!r}: 1-63 letters, digits and '-', starting with a letter or digit")
    return text


def lambda_arns(region: str, task: str, adjustment: bool) -> tuple[str, str]:
    """(pre-annotation, consolidation) Lambda ARNs of a built-in task in a region."""
    account = LAMBDA_ACCOUNTS.get(region)
    if account is None:
        raise LabelingError(
            f"Ground Truth's built-in tasks are not offered in {region}; regions: {', '.join(sorted(LAMBDA_ACCOUNTS))}"
        )
    base, adjust, _ui = TASKS[task]
    suffix = adjust if adjustment else base
    return (f"arn:aws:lambda:{region}:{account}:function:PRE-{suffix}",
            f"arn:aws:lambda:{region}:{account}:function:ACS-{suffix}")  # fmt: skip


def create_job(
    clients: Any,
    store: st.Storage,
    job_name: str,
    task: str,
    manifest: str,
    output: str,
    role: str,
    workteam: str,
    labels: list[str],
    region: str,
    prelabels: str | None = None,
    title: str | None = None,
    description: str | None = None,
    workers_per_object: int = 1,
    task_time_s: int = 3600,
    free_of_pii: bool = False,
) -> dict[str, Any]:
    from deploy.sagemaker.manage import check_role, explain_aws_error

    if task not in TASKS:
        raise LabelingError(f"--task {task!r}: one of {', '.join(TASKS)}")
    _name(job_name, "--job-name")
    if not labels or len(labels) > 50 or any(not x.strip() for x in labels):
        raise LabelingError("--labels: 1 to 50 non-empty label categories, e.g. person,ball")
    for uri, flag in ((manifest, "--manifest"), (output, "--output")):
        if not st.is_s3(uri):
            raise LabelingError(f"{flag} {uri!r}: Ground Truth reads and writes S3, give an s3:// URI")
    if not workteam.startswith("arn:aws") or ":workteam/" not in workteam:
        raise LabelingError(
            f"--workteam {workteam!r}: a work team ARN (arn:aws:sagemaker:REGION:ACCOUNT:workteam/private-crowd/NAME)"
        )
    role = check_role(role)
    adjustment = prelabels is not None
    # video frame jobs name their label attribute NAME-ref
    attribute = f"{job_name}-ref" if task == "video-tracking" else job_name
    if prelabels is not None and prelabels.removesuffix("-ref") == attribute.removesuffix("-ref"):
        raise LabelingError(
            f"--prelabels {prelabels!r}: the adjustment job needs a name other than its pre-labels'"
        )
    pre, acs = lambda_arns(region, task, adjustment)
    out = output.rstrip("/") + "/"
    categories: dict[str, Any] = {
        "document-version": "2020-08-15" if task == "video-tracking" else "2018-11-28",
        "labels": [{"label": x.strip()} for x in labels],
    }
    if prelabels is not None:
        categories["auditLabelAttributeName"] = prelabels if prelabels.endswith("-ref") or task != "video-tracking" \
            else f"{prelabels}-ref"  # fmt: skip
    if task == "video-tracking":
        categories["instructions"] = {
            "shortInstruction": "Box every object in every frame; keep each object's ID across frames.",
            "fullInstruction": "Draw a tight box around each object. Use the same ID for an object in all frames.",
        }
    cat_uri = st.join(out, f"{job_name}/label-categories.json")
    store.write(cat_uri, json.dumps(categories, indent=2) + "\n")
    ui: dict[str, str]
    _b, _a, ui_name = TASKS[task]
    if ui_name is not None:
        ui = {"HumanTaskUiArn": f"arn:aws:sagemaker:{region}:{UI_ACCOUNT}:human-task-ui/{ui_name}"}
    else:
        template = st.join(out, f"{job_name}/template.liquid.html")
        store.write(template, BOX_TEMPLATE)
        ui = {"UiTemplateS3Uri": template}
    verb = "Adjust" if adjustment else "Draw"
    request: dict[str, Any] = {
        "LabelingJobName": job_name,
        "LabelAttributeName": attribute,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest}}},
        "OutputConfig": {"S3OutputPath": out},
        "RoleArn": role,
        "LabelCategoryConfigS3Uri": cat_uri,
        "HumanTaskConfig": {
            "WorkteamArn": workteam,
            "UiConfig": ui,
            "PreHumanTaskLambdaArn": pre,
            "TaskTitle": (title or f"{verb} boxes: {', '.join(labels)}")[:128],
            "TaskDescription": (description or f"{verb} a box around each {', '.join(labels)}")[:255],
            "NumberOfHumanWorkersPerDataObject": workers_per_object,
            "TaskTimeLimitInSeconds": task_time_s,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": acs},
        },
        "Tags": [{"Key": "created-by", "Value": "trackcast"}],
    }  # fmt: skip
    if free_of_pii:  # the frames were anonymised: a public workforce may see them
        request["InputConfig"]["DataAttributes"] = {
            "ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]
        }
    if task == "video-tracking":
        request["HumanTaskConfig"]["TaskAvailabilityLifetimeInSeconds"] = 864000
    try:
        res = clients("sagemaker").create_labeling_job(**request)
    except Exception as exc:
        raise LabelingError(str(explain_aws_error(exc, f"CreateLabelingJob {job_name}"))) from exc
    return {"job": job_name, "arn": res.get("LabelingJobArn"), "task": task, "adjustment": adjustment,
            "label_attribute": attribute, "label_categories": cat_uri, "output": out,
            "pre_lambda": pre, "consolidation_lambda": acs}  # fmt: skip
