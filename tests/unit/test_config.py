"""Configuration from one source: transforms/config.py.

The runtime configs enforce their bounds with messages that say what to do; the pipeline
flags (argparse) and the `productlens` options (typer) take their defaults and help from
the same fields; options built with `from_dictionary` read back to the same settings; and
docs/CONFIGURATION.md is the module's current output.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
import typer
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

from pipelines.backfill import BackfillOptions
from pipelines.cli import app
from pipelines.evaluate import EvaluateOptions
from pipelines.options import (
    KafkaOptions,
    PredictOptions,
    StoreOptions,
    build_options,
    read_settings,
)
from pipelines.repredict import RepredictOptions
from pipelines.stream import StreamOptions
from transforms import config
from transforms.config import (
    COMMANDS,
    OPTION_GROUPS,
    BatchConfig,
    DedupeConfig,
    EventLimits,
    ImageConfig,
    PredictConfig,
    PredictSettings,
    RefreshConfig,
    StreamSettings,
    cli_help,
    cli_names,
    default_of,
    settings_markdown,
)
from transforms.model.client import InProcessBaseline, ModelMetadata

ROOT = Path(__file__).resolve().parents[2]
OPTIONS_CLASS = {
    "PredictOptions": PredictOptions,
    "KafkaOptions": KafkaOptions,
    "StoreOptions": StoreOptions,
    "BackfillOptions": BackfillOptions,
    "StreamOptions": StreamOptions,
    "RepredictOptions": RepredictOptions,
    "EvaluateOptions": EvaluateOptions,
}
META = ModelMetadata("m", "m-1", "2024-07")


# -- bounds and messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: ImageConfig(max_side=5), ["max_side", "greater than or equal to 32"]),
        (lambda: ImageConfig(jpeg_quality=100), ["jpeg_quality", "less than or equal to 95"]),
        (lambda: ImageConfig(timeout_s=0), ["timeout_s", "greater than 0"]),
        (lambda: ImageConfig(gcs_buckets=("gs://b",)), ["without gs://"]),
        (lambda: BatchConfig(min_size=65), ["lower the minimum or raise the maximum"]),
        (lambda: BatchConfig(max_size=0), ["max_size"]),
        (lambda: EventLimits(max_depth=0), ["max_depth"]),
        (lambda: DedupeConfig(max_wait_s=float("nan")), ["max_wait_s", "finite"]),
        (lambda: RefreshConfig(model_version="m", taxonomy_version="t", quiet_period_s="30"), ["quiet_period_s"]),
        (lambda: RefreshConfig(model_version="", taxonomy_version="t"), ["non-empty string (the model's metadata)"]),
        (lambda: PredictConfig(model=InProcessBaseline(), metadata=META, max_in_flight=0), ["max_in_flight"]),
        (lambda: PredictConfig(model="not callable", metadata=META), ["model", "callable"]),
        (lambda: ImageConfig(max_sides=300), ["max_sides", "Extra inputs are not permitted"]),
    ],
)
def test_runtime_configs_enforce_their_bounds(build: Any, words: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        build()
    for w in words:
        assert w in str(info.value)
    assert isinstance(info.value, ValueError)  # callers catch ValueError, as with the dataclasses


@pytest.mark.parametrize(
    ("flags", "group", "message"),
    [
        (
            ["--max_in_flight=0"],
            PredictOptions,
            "--max_in_flight must be at least 1, got 0 (model batches on the wire per step)",
        ),
        (["--image_max_side=9000"], PredictOptions, "--image_max_side must be at most 4096, got 9000"),
        (["--batch_min=100"], PredictOptions, "the smallest model batch (100) is larger than the largest (64)"),
        (["--image_gcs_bucket=gs://b"], PredictOptions, "--image_gcs_bucket: name a gs:// bucket without gs://"),
        (["--refresh_quiet_s=-1"], PredictOptions, "--refresh_quiet_s must be at least 0, got -1.0"),
        (["--kafka_config=nokey"], KafkaOptions, "--kafka_config: write a Kafka setting as key=value"),
        (["--bulk_timeout_s=0"], StreamOptions, "--bulk_timeout_s must be more than 0"),
        (["--limit=0"], EvaluateOptions, "--limit must be at least 1, got 0"),
    ],
)
def test_reading_options_names_the_flag_and_its_bound(flags: list[str], group: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        read_settings(BackfillOptions(flags), group)
    assert message in str(info.value)


def test_the_cli_names_its_own_flag(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    for args, message in (
        (["--max-in-flight", "0"], "--max-in-flight must be at least 1, got 0"),
        (["--quiet-period", "-5"], "--quiet-period must be at least 0"),
        (["--image-gcs-bucket", "gs://b"], "--image-gcs-bucket: name a gs:// bucket"),
    ):
        result = CliRunner().invoke(app, ["backfill", "--input", str(events), "--output", str(tmp_path / "out"), *args])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


# -- one source: argparse flags, typer options, runtime configs -------------------------------------


@pytest.mark.parametrize(("model", "name"), OPTION_GROUPS)
def test_pipeline_flags_are_the_model_fields(model: type[BaseModel], name: str) -> None:
    parser = argparse.ArgumentParser()
    OPTIONS_CLASS[name]._add_argparse_args(parser)
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(actions) == set(model.model_fields)
    for field_name, field in model.model_fields.items():
        action = actions[field_name]
        assert action.option_strings == [f"--{field_name}"]
        default = default_of(model, field_name)
        assert action.default == (list(default) if isinstance(default, (list, tuple)) else default), field_name
        assert action.help == field.description
    # The defaults a parse gives are the model's defaults.
    assert read_settings(OPTIONS_CLASS[name]([]), OPTIONS_CLASS[name]) == model()


def test_mirrored_fields_copy_default_bounds_and_description() -> None:
    for model, _ in OPTION_GROUPS:
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if "from" not in extra:
                continue
            source_model, source_name = str(extra["from"]).split(".")
            source = getattr(config, source_model).model_fields[source_name]
            assert field.description == source.description, name
            assert field.metadata == source.metadata, name
            default, source_default = default_of(model, name), default_of(getattr(config, source_model), source_name)
            assert (list(default) if isinstance(default, list) else default) == (
                list(source_default) if isinstance(source_default, tuple) else source_default
            ), name
    assert PredictSettings().image_config() == ImageConfig()
    assert PredictSettings().batch_config() == BatchConfig()
    assert PredictSettings(dedupe=True).dedupe_config() == DedupeConfig()


def _typer_options() -> list[tuple[str, Any]]:
    """(command, option) for every option of `productlens` (typer vendors its own click:
    duck-typed)."""
    root = typer.main.get_command(app)
    out = []

    def walk(cmd: Any, path: str) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}".strip())
        else:
            out.extend((path, p) for p in cmd.params if p.param_type_name == "option" and p.name != "help")

    walk(root, "")
    return out


# Options whose help is narrower than their field's description (their default is still the field's).
HELP_OVERRIDES = {("produce", "--topic"), ("consume", "--topic")}
# CLI-only options spelled like a setting's option (produce --input is a local file to send, search --limit a count).
# The training commands' --output is their own output directory and dataset build's
# --predictions a model's answers to read (not a pipeline's output or prediction store).
CLI_ONLY = {
    ("produce", "--input"),
    ("taxonomy search", "--limit"),
    ("dataset build", "--output"),
    ("dataset build", "--predictions"),
    ("dataset score-annotations", "--output"),
    ("dataset export-sft", "--output"),
    ("sft export", "--output"),
    ("labels export", "--output"),
}


def test_typer_options_take_default_and_help_from_the_fields() -> None:
    fields = [(m, n, f) for m, _ in (*OPTION_GROUPS, *COMMANDS) for n, f in m.model_fields.items()]
    offered: set[str] = set()
    from_fields = 0
    for command, opt in _typer_options():
        spelled = "/".join(opt.opts + opt.secondary_opts) if opt.secondary_opts else opt.opts[0]
        candidates = [(m, n, f) for m, n, f in fields if spelled in cli_names(f) or opt.opts[0] in cli_names(f)]
        if not candidates or (command, opt.opts[0]) in CLI_ONLY:
            continue  # a CLI-only option (--beam-arg, consume --max, taxonomy fetch --version, ...)
        offered.add(spelled)
        matches = []
        for m, n, f in candidates:
            default = default_of(m, n)
            if spelled == "--images/--no-images":
                default = not default
            default = list(default) if isinstance(default, tuple) else default
            if opt.required:
                default = None
            same_default = opt.default == default or (opt.default in (None, []) and default in (None, [], ()))
            help_ok = (command, opt.opts[0]) in HELP_OVERRIDES or (opt.help or "").startswith(cli_help(f))
            if same_default and help_ok:
                matches.append(f"{m.__name__}.{n}")
        assert matches, f"productlens {command} {spelled}: default {opt.default!r} / help {opt.help!r} match no field"
        from_fields += 1
    assert from_fields >= 60  # backfill, stream, repredict, evaluate, produce, consume, taxonomy *
    declared = {c for m, _, f in fields for c in cli_names(f)}
    assert declared <= offered | {c.split("/")[0] for c in offered}, declared - offered


def test_drift_with_defaults_outside_config_py() -> None:
    """Defaults still written outside transforms/config.py must agree with it."""
    from transforms.io.kafka import ReadConfig
    from transforms.model.triton import TritonModel

    read_defaults = {f.name: f.default for f in dataclasses.fields(ReadConfig)}
    assert read_defaults["max_bundle_s"] == default_of(StreamSettings, "max_bundle_s")
    assert read_defaults["start_from"] == default_of(StreamSettings, "start_from")
    triton = {f.name: f.default for f in dataclasses.fields(TritonModel)}
    assert triton["model_name"] == default_of(PredictSettings, "model_name")
    assert triton["timeout_s"] == default_of(PredictSettings, "model_timeout_s")


def test_modules_re_export_the_one_definition() -> None:
    from transforms.decode import EventLimits as decode_limits
    from transforms.freshness.dedupe import DedupeConfig as dedupe_config
    from transforms.freshness.refresh import RefreshConfig as refresh_config
    from transforms.images.prepare import ImageConfig as image_config
    from transforms.model.steps import BatchConfig as batch_config
    from transforms.predict import PredictConfig as predict_config

    assert (decode_limits, image_config, batch_config, dedupe_config, refresh_config, predict_config) == (
        EventLimits,
        ImageConfig,
        BatchConfig,
        DedupeConfig,
        RefreshConfig,
        PredictConfig,
    )


def test_configs_pickle_hash_and_take_positional_arguments() -> None:
    predict = PredictConfig(
        model=InProcessBaseline(),
        metadata=META,
        images=ImageConfig(max_side=300, allowed_hosts=("cdn.example",)),
        refresh_quiet_s=5,
        dedupe=DedupeConfig(2.0),
    )
    for c in (ImageConfig(max_side=300), BatchConfig(), EventLimits(max_depth=3), RefreshConfig("m", "t", 5), predict):
        assert pickle.loads(pickle.dumps(c)) == c
        assert hash(pickle.loads(pickle.dumps(c))) == hash(c)
    assert predict.refresh == RefreshConfig(model_version="m-1", taxonomy_version="2024-07", quiet_period_s=5.0)
    with pytest.raises(ValidationError):
        predict.max_in_flight = 8  # type: ignore[misc]  # frozen
    with pytest.raises(TypeError, match="two values"):
        DedupeConfig(1.0, max_wait_s=2.0)


def test_batch_config_has_no_wait_and_declares_batch_elements() -> None:
    assert "max_wait_s" not in BatchConfig.model_fields  # see BatchConfig's docstring for why
    t = BatchConfig(min_size=2, max_size=5).transform()
    assert isinstance(t, beam.BatchElements)
    assert (t._batch_size_estimator._min_batch_size, t._batch_size_estimator._max_batch_size) == (2, 5)
    assert t._max_batch_dur is None  # the stateless, fusable implementation


# -- from_dictionary ------------------------------------------------------------------------------


def test_from_dictionary_round_trip() -> None:
    values = {
        "input": "in.jsonl",
        "output": "out",
        "image_max_side": 300,
        "max_in_flight": 2,
        "refresh_quiet_s": 12.5,
        "dedupe": True,
        "image_host": ["a.example", ".b.example"],
        "kafka_config": ["security.protocol=SSL"],
        "kafka_bootstrap": "k:9092",
        "prediction_store": "kafka:preds",
        "image_base_dir": None,
        "image_allow_private_addresses": False,
    }
    options = build_options(BackfillOptions, values)
    predict = read_settings(options, PredictOptions)
    assert (predict.image_max_side, predict.max_in_flight, predict.refresh_quiet_s, predict.dedupe) == (
        300,
        2,
        12.5,
        True,
    )
    assert predict.image_host == ["a.example", ".b.example"] and predict.image_base_dir is None
    assert read_settings(options, KafkaOptions).kafka_config == ["security.protocol=SSL"]
    assert (options.input, options.output, options.view_as(StoreOptions).prediction_store) == (
        "in.jsonl",
        "out",
        "kafka:preds",
    )
    # ... and back: the options' own dictionary gives the same settings again.
    again = BackfillOptions.from_dictionary(options.get_all_options(drop_default=True))
    for group in (PredictOptions, KafkaOptions, StoreOptions, BackfillOptions):
        assert read_settings(again, group) == read_settings(options, group)


def test_build_options_validates_and_lets_beam_args_win() -> None:
    with pytest.raises(ValueError, match="--max-in-flight must be at least 1"):
        build_options(BackfillOptions, {"max_in_flight": 0})
    options = build_options(
        BackfillOptions, {"max_in_flight": 2, "runner": "FnApiRunner"}, ["--max_in_flight=3", "--direct_num_workers=2"]
    )
    assert read_settings(options, PredictOptions).max_in_flight == 3
    assert options.get_all_options()["direct_num_workers"] == 2


# -- docs -----------------------------------------------------------------------------------------


def test_committed_configuration_doc_is_current() -> None:
    committed = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    assert committed == settings_markdown(), "run `python -m transforms.config > docs/CONFIGURATION.md`"


def test_docs_name_every_setting() -> None:
    doc = settings_markdown()
    for model, _ in OPTION_GROUPS:
        for name, field in model.model_fields.items():
            assert f"`--{name}`" in doc and field.description in doc
    for model in (EventLimits, ImageConfig, BatchConfig, DedupeConfig):
        for name in model.model_fields:
            assert f"`{model.__name__}.{name}`" in doc
    assert "| `--image_max_side` | `--image-max-side` | `448` | ≥ 32, ≤ 4096 |" in doc
