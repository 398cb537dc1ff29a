"""deploy/k8s: each overlay renders with kustomize, every object validates against the Kubernetes
schemas offline (kubernetes-validate), and the rendered set keeps the contract the service relies
on: replicas = shards, the shard from the pod ordinal, probes on /readyz and /healthz, non-root and
read-only, secrets only from a Secret, and a config the service accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

KUBECTL = shutil.which("kubectl")
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
#: Custom resources (their schemas are not Kubernetes'): checked by hand below.
CRDS = {("monitoring.coreos.com/v1", "PodMonitor")}


def render(overlay: str) -> list[dict[str, Any]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (it renders the kustomize overlays)")
    res = subprocess.run([KUBECTL, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str) -> None:
    import kubernetes_validate

    objs = render(overlay)
    kinds = {o["kind"] for o in objs}
    assert {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "PodMonitor"} <= kinds
    pods = [
        o["spec"]["template"]["metadata"]["labels"]
        for o in objs
        if o["kind"] in ("StatefulSet", "Deployment")
    ]
    for o in objs:
        if o["kind"] in ("Service", "PodMonitor", "PodDisruptionBudget"):
            sel = o["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            matched = [p for p in pods if sel.items() <= p.items()]
            assert len(matched) == 1, (
                f"{o['kind']} {o['metadata']['name']} selects exactly one workload's pods"
            )
        if (o["apiVersion"], o["kind"]) in CRDS:
            continue
        kubernetes_validate.validate(o, "1.30", strict=True)  # raises ValidationError naming the field


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_rendered_statefulset_keeps_the_service_contract(
    overlay: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from service.config import load_settings

    objs = render(overlay)
    sts = next(o for o in objs if o["kind"] == "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert int(env["TRACKCAST_CLUSTER__SHARDS"]["value"]) == sts["spec"]["replicas"]
    assert env["TRACKCAST_CLUSTER__SHARD"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert (
        c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    )
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert (
        c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        and not c["securityContext"]["allowPrivilegeEscalation"]
    )
    # the compiled kernels the image carries (Dockerfile) seed the writable cache the service uses
    (init,) = pod["initContainers"]
    (baked,) = re.findall(r"NUMBA_CACHE_DIR=(\S+)", (ROOT / "Dockerfile").read_text())
    assert init["image"] == c["image"] and init["securityContext"]["readOnlyRootFilesystem"]
    assert f"cp -a {baked}/. {env['NUMBA_CACHE_DIR']['value']}/" in init["command"][-1]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]} == {"tmp": mounts["tmp"]}
    assert env["NUMBA_CACHE_DIR"]["value"].startswith(mounts["tmp"] + "/")
    assert pod["terminationGracePeriodSeconds"] >= 25  # the service's shutdown: drain, end tracks, flush
    # secrets come from the Secret only; the ConfigMap holds none
    for name in ("TRACKCAST_MQTT__PASSWORD", "TRACKCAST_HTTP__TOKEN"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "trackcast-secrets"
    assert not [
        n for n, e in env.items() if "value" in e and any(k in n for k in ("PASSWORD", "TOKEN", "SECRET"))
    ]
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    text = cm["data"]["config.yaml"]

    def keys(d: Any) -> list[str]:
        if isinstance(d, dict):
            return [k for k, v in d.items() for k in (str(k), *keys(v))]
        return [k for v in d for k in keys(v)] if isinstance(d, list) else []

    assert not [
        k
        for k in keys(yaml.safe_load(text))
        if k in ("password", "token", "username") or k.startswith("aws_")
    ]
    # and what the pod would load (the file plus the plain environment) is a valid config
    assert yaml.safe_load(text) == yaml.safe_load((K8S / "base" / "config.yaml").read_text())
    for n, e in env.items():
        if "value" in e and n.startswith("TRACKCAST_"):
            monkeypatch.setenv(n, e["value"])
    monkeypatch.setenv("TRACKCAST_CLUSTER__SHARD", "2")  # what the pod-index label gives trackcast-2
    (tmp_path / "config.yaml").write_text(text)
    s = load_settings(tmp_path / "config.yaml")
    assert s.cluster.shards == sts["spec"]["replicas"] and s.cluster.shard == 2 and s.streams


def test_gpu_triton_overlay_wires_trackcast_to_a_triton_it_can_build(tmp_path: Path) -> None:
    """The trackcast pods call the Triton Service; Triton gets a GPU and the model repository
    `trackcast triton-repo` writes (the init container's arguments are ones the CLI accepts); the
    autoscaler scales Triton on the metric the adapter rules define."""
    from service.cli import build_parser

    objs = render("gpu-triton")
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    sts, dep = by[("StatefulSet", "trackcast")], by[("Deployment", "trackcast-triton")]
    svc, hpa = by[("Service", "trackcast-triton")], by[("HorizontalPodAutoscaler", "trackcast-triton")]
    env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRACKCAST_DETECTOR__KIND"] == "oip"
    url = env["TRACKCAST_DETECTOR__URL"]
    http = next(p for p in svc["spec"]["ports"] if p["name"] == "http")
    assert url == f"http://{svc['metadata']['name']}:{http['port']}"
    pod = dep["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (triton,) = pod["containers"]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert init["command"][:2] == ["trackcast", "triton-repo"]
    args = build_parser().parse_args(init["command"][1:])
    assert args.func.__name__ == "cmd_triton_repo" and args.device == "gpu"
    assert env["TRACKCAST_DETECTOR__MODEL"] == args.name
    repo_mounts = {m["name"]: m["mountPath"] for m in triton["volumeMounts"]}
    assert (
        f"--model-repository={repo_mounts['repository']}" in triton["args"]
        and args.out == repo_mounts["repository"]
    )
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert pod["securityContext"]["runAsNonRoot"] and triton["securityContext"]["readOnlyRootFilesystem"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    (metric,) = hpa["spec"]["metrics"]
    rules = yaml.safe_load((K8S / "overlays" / "gpu-triton" / "prometheus-adapter-rules.yaml").read_text())
    assert metric["pods"]["metric"]["name"] in [r["name"]["as"] for r in rules["rules"]["custom"]]
