"""deploy/k8s and deploy/monitoring, offline.

- Every Kustomize overlay renders (the kustomize CLI built by
  deploy/local/kustomize/kustomize.sh with `go install`) and every rendered object
  validates against the Kubernetes API's JSON schemas (the `kubernetes-validate` package,
  which bundles them: no network), strictly (unknown fields are errors).
- The rendered objects say what they must: Triton on GPU nodes (nvidia.com/gpu limit,
  toleration, accelerator node selector, one GPU per pod) with its health probes and
  metrics port; probes on every Deployment and StatefulSet; the HPA targets the service
  Deployment; no image without a pinned tag; the Secrets the pods need exist or are named.
- The Grafana dashboard and the Prometheus alert rules parse, every panel has a PromQL
  expression, and every metric they use is one the service, Triton/vLLM, the Kafka
  exporter or the pipelines' Beam counters export.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
KUBERNETES_VERSION = "1.33.0"  # GKE regular channel at the time of writing
KUSTOMIZE_SH = REPO / "deploy" / "local" / "kustomize" / "kustomize.sh"


@cache
def _kustomize() -> str:
    """The kustomize binary (built once with go install, cached under .cache/), or skip."""
    version = os.environ.get("KUSTOMIZE_VERSION", "5.8.2")
    cached = REPO / ".cache" / "kustomize" / f"v{version}" / "bin" / "kustomize"
    if not cached.is_file() and not shutil.which("go"):
        pytest.skip("kustomize is not built and Go is not installed to build it (deploy/local/kustomize/kustomize.sh)")
    proc = subprocess.run(["bash", str(KUSTOMIZE_SH)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"kustomize could not be built with go install: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout.strip()


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    proc = subprocess.run(
        [_kustomize(), "build", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def _find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def _workloads(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def _containers(workload: dict[str, Any], init: bool = False) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


# -- rendering and schema validation --------------------------------------------------------------


def test_there_are_overlays() -> None:
    assert {"local-kind", "gke-prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (the Kubernetes JSON schemas, offline)"
    )
    objects = render(overlay)
    assert len(objects) > 10
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"productlens"}


def test_the_validator_catches_a_bad_object() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    triton = json.loads(json.dumps(_find(render("gke-prod"), "Deployment", "triton")))
    triton["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = 8000
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(triton, KUBERNETES_VERSION, strict=True)


# -- what the objects must say --------------------------------------------------------------------


def test_triton_runs_on_gpu_nodes_in_production() -> None:
    objects = render("gke-prod")
    triton = _find(objects, "Deployment", "triton")
    pod = triton["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    limits = container["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1", "one GPU (one vLLM engine) per pod"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in pod["tolerations"])
    assert "cloud.google.com/gke-accelerator" in pod["nodeSelector"]
    assert triton["spec"]["replicas"] >= 2
    # the model repository from GCS, the production models loaded
    config = _config(objects)
    assert config["TRITON_MODEL_REPOSITORY"].startswith("gs://")
    assert config["VLM_WEIGHTS_URI"].startswith("gs://")
    assert {config["TRITON_LOAD_MODEL_1"], config["TRITON_LOAD_MODEL_2"]} == {"vlm_engine", "product_vlm"}
    assert "--model-repository=$(TRITON_MODEL_REPOSITORY)" in container["args"]
    assert config["MODEL_NAME"] == "product_vlm"
    # weights mounted where vlm_engine/1/model.json expects them
    model_json = json.loads((REPO / "model_repository" / "vlm_engine" / "1" / "model.json").read_text())
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert any(model_json["model"].startswith(m + "/") for m in mounts)


def _config(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    (config,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("productlens-config")
    ]
    return config["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_probes_and_metrics(overlay: str) -> None:
    objects = render(overlay)
    triton = _find(objects, "Deployment", "triton")
    (container,) = triton["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    annotations = triton["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8002"
    service = _find(objects, "Service", "triton")
    assert {p["port"] for p in service["spec"]["ports"]} == {8000, 8001, 8002}


def test_local_kind_needs_no_gpu() -> None:
    triton = _find(render("local-kind"), "Deployment", "triton")
    pod = triton["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in json.dumps(pod)
    assert "nodeSelector" not in pod and "initContainers" not in pod
    config = _config(render("local-kind"))
    assert config["TRITON_LOAD_MODEL_1"] == config["MODEL_NAME"] == "product_baseline"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_probes_resources_and_pinned_images(overlay: str) -> None:
    objects = render(overlay)
    assert _workloads(objects)
    for workload in _workloads(objects):
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        for container in _containers(workload):
            assert "readinessProbe" in container and "livenessProbe" in container, name
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
        for container in _containers(workload, init=True):
            image = container["image"]
            repo, _, tag = image.rpartition(":")
            assert repo and "/" not in tag and tag and tag != "latest", f"{name}: image {image} has no pinned tag"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_realtime_service(overlay: str) -> None:
    objects = render(overlay)
    api = _find(objects, "Deployment", "productlens-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["productlens", "serve"]
    assert "--host=0.0.0.0" in container["args"] and "--port=8080" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    keys = env["PRODUCTLENS_API_KEYS"]["valueFrom"]["secretKeyRef"]
    config = _config(objects)
    assert config["CACHE_URL"].startswith("redis://redis:6379")
    assert config["TRITON_URL"] == "triton:8001"
    hpa = _find(objects, "HorizontalPodAutoscaler", "productlens-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "productlens-api"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    service = _find(objects, "Service", "productlens-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    # the Secret is generated (local) or named for the operator to create (production)
    secrets = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    if overlay == "local-kind":
        assert keys["name"] in secrets
    else:
        assert keys["name"] == "productlens-api-keys" and not secrets, "production secrets never live in the repo"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_is_a_cache_without_persistence(overlay: str) -> None:
    objects = render(overlay)
    redis = _find(objects, "Deployment", "redis")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert "--maxmemory-policy" in args
    assert not [v for v in redis["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    _find(objects, "Service", "redis")


def test_postgres_in_cluster_locally_managed_in_production() -> None:
    local = render("local-kind")
    postgres = _find(local, "StatefulSet", "postgres")
    (container,) = postgres["spec"]["template"]["spec"]["containers"]
    password = {e["name"]: e for e in container["env"]}["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["name"] in {o["metadata"]["name"] for o in local if o["kind"] == "Secret"}
    assert postgres["spec"]["volumeClaimTemplates"]
    prod = render("gke-prod")
    assert not [o for o in prod if o["kind"] == "StatefulSet"], "production uses Cloud SQL"
    proxy = _find(prod, "Deployment", "cloud-sql-proxy")
    service = _find(prod, "Service", "postgres")
    assert service["spec"]["selector"] == proxy["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 5432


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods(overlay: str) -> None:
    objects = render(overlay)
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in _workloads(objects)]
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), service["metadata"]["name"]


# -- metrics: the dashboard, the alert rules, the scrape config -------------------------------------

SERVICE_METRICS = {
    "productlens_request_seconds": "histogram",
    "productlens_cache_total": "counter",
    "productlens_model_calls_total": "counter",
    "productlens_model_batch_size": "histogram",
    "productlens_queue_depth": "gauge",
    "productlens_errors_total": "counter",
    "productlens_predictions_total": "counter",
}
# Triton's metrics (server docs, "Metrics") and the vLLM engine's, as the vLLM backend
# reports them (REPORT_CUSTOM_METRICS).
TRITON_METRICS = {
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count",
    "nv_gpu_utilization",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage",
}
VLLM_METRICS = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:gpu_cache_usage_perc": "gauge",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:prompt_tokens_total": "counter",
    "vllm:generation_tokens_total": "counter",
}
KAFKA_METRICS = {"kafka_consumergroup_lag"}
# Dataflow job metrics through the stackdriver exporter: the Beam counters are
# dataflow.googleapis.com/job/user_counter with the counter's name in the metric_name label.
USER_COUNTER = "stackdriver_dataflow_job_dataflow_googleapis_com_job_user_counter"
DISTRIBUTION_SUFFIXES = ("_MEAN", "_MAX", "_MIN", "_COUNT", "_SUM")


def known_metrics() -> set[str]:
    names = set(TRITON_METRICS) | KAFKA_METRICS | {USER_COUNTER}
    for family in (SERVICE_METRICS, VLLM_METRICS):
        for name, kind in family.items():
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


@cache
def pipeline_counters() -> frozenset[str]:
    """Names of the Beam counters and distributions in transforms/ (metric_name values)."""
    from transforms.freshness.refresh import COUNTERS as REFRESH_COUNTERS

    names: set[str] = set(REFRESH_COUNTERS) | {"seeded", "unexpected_errors"}
    call = re.compile(r"\b(?:inc|update|counter|distribution)\(\s*(?:\"\w+\"|[A-Z_]+)\s*,\s*(f?)\"([^\"]+)\"")
    for path in (REPO / "transforms").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r'^STAGE = "(\w+)"', text, flags=re.M))  # dead_letters/<stage>
        for is_f, name in call.findall(text):
            if not is_f:
                names.add(name)
            elif re.fullmatch(r"\{(?:self\.)?(?:stage|STAGE)\}(\w+)", name):
                suffix = name[name.index("}") + 1 :]
                names |= {f"classify{suffix}", f"extract{suffix}"}
    return frozenset(names)


_FUNCTIONS_AND_KEYWORDS = {
    "sum", "avg", "max", "min", "count", "rate", "irate", "increase", "deriv", "histogram_quantile",
    "clamp_min", "clamp_max", "by", "without", "and", "or", "unless", "on", "ignoring", "bool",
    "group_left", "group_right", "offset", "abs", "topk", "bottomk", "le",
}  # fmt: skip


def metrics_in(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, metric_name label values) of a PromQL expression."""
    label_values: set[str] = set()
    for op, value in re.findall(r'metric_name\s*(=~|=)\s*"([^"]*)"', expr):
        label_values |= set(value.split("|")) if op == "=~" else {value}
    stripped = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)  # ranges and subqueries
    stripped = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", stripped)  # grouping labels
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped):
        token = match.group(0)
        following = stripped[match.end() :].lstrip()[:1]
        if token in _FUNCTIONS_AND_KEYWORDS or following == "(" or re.fullmatch(r"e\d*", token):
            continue
        names.add(token)
    return names, label_values


def _check_exprs(exprs: list[str]) -> None:
    known = known_metrics()
    counters = pipeline_counters()
    used: set[str] = set()
    for expr in exprs:
        names, label_values = metrics_in(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= known, f"unknown metric(s) {names - known} in {expr!r}"
        used |= names
        for value in label_values:
            base = next((value.removesuffix(s) for s in DISTRIBUTION_SUFFIXES if value.endswith(s)), value)
            assert base in counters, f"{value!r} is not a Beam counter in transforms/ ({expr!r})"


def test_pipeline_counters_are_found() -> None:
    counters = pipeline_counters()
    for name in ("predicted", "events", "classify_batch_latency_ms", "extract_retries", "calls_saved", "decode"):
        assert name in counters, name


def test_promql_parsing_helper() -> None:
    names, values = metrics_in(
        'sum by (model) (rate(nv_inference_queue_duration_us{model="x"}[5m])) / '
        f'clamp_min(sum(rate({USER_COUNTER}{{metric_name=~"a|b"}}[5m])), 1e-9)'
    )
    assert names == {"nv_inference_queue_duration_us", USER_COUNTER}
    assert values == {"a", "b"}
    with pytest.raises(AssertionError, match="unknown metric"):
        _check_exprs(["rate(productlens_made_up_total[5m])"])
    with pytest.raises(AssertionError, match="not a Beam counter"):
        _check_exprs([f'{USER_COUNTER}{{metric_name="made_up"}}'])


def test_grafana_dashboard() -> None:
    dashboard = json.loads((REPO / "deploy" / "monitoring" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    assert dashboard["title"] and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = []
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            exprs.append(target["expr"])
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
    _check_exprs(exprs)
    text = json.dumps(dashboard)
    # what docs/OPERATIONS.md says to watch is on the dashboard
    for metric in (
        "kafka_consumergroup_lag",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_gpu_utilization",
        "productlens_cache_total",
        "productlens_request_seconds_count",
        "productlens_predictions_total",
        "classify_batch_latency_ms",
    ):
        assert metric in text, metric


def test_alert_rules_and_scrape_config() -> None:
    monitoring = K8S / "base" / "monitoring"
    rules = yaml.safe_load((monitoring / "alerts.yml").read_text(encoding="utf-8"))
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(exprs) >= 8
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["labels"]["severity"] and rule["annotations"]["summary"]
    _check_exprs(exprs)
    scrape = yaml.safe_load((monitoring / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert {"productlens-api", "triton", "kafka-exporter", "dataflow"} <= set(jobs)
    operations = (REPO / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    for rule in (r["alert"] for g in rules["groups"] for r in g["rules"]):
        assert rule in operations, f"alert {rule} is not explained in docs/OPERATIONS.md"


def test_scrape_targets_exist_in_the_cluster() -> None:
    objects = render("gke-prod")
    scrape = yaml.safe_load((K8S / "base" / "monitoring" / "prometheus.yml").read_text(encoding="utf-8"))
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for job in scrape["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.split(":")
                service = services[host.split(".")[0]]
                assert int(port) in {p["port"] for p in service["spec"]["ports"]}, target
    (config,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("prometheus-config")
    ]
    assert set(config["data"]) == {"prometheus.yml", "alerts.yml"}
