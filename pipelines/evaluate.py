"""Evaluate: golden products in, metrics.json and report.html out.

The job either runs the normal two-step flow on the golden products (the in-process
baseline, or a Triton model with --triton_url) or reads existing predictions
(--predictions), joins them with the gold by product id and aggregates the metrics in one
CombineFn (`transforms.evaluation.metrics`). `build_pipeline` only wires transforms; `run` checks
the inputs first (a bad file is a clear error before any work), runs the pipeline, adds
the run-level figures (wall time per product, model calls per product from the `model`
metrics namespace) and renders the report. Metric definitions: docs/EVALUATION.md.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import typer
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipelines.backfill import model_factory, predict_config
from pipelines.cli_options import option
from pipelines.options import PredictOptions, build_options, generated_from
from pipelines.results import counter_totals
from taxonomy.mapping import CategoryMapping, load_mapping
from transforms.config import EvaluateSettings, PredictSettings
from transforms.evaluation.metrics import (
    INVALID,
    EvaluatePredictions,
    GoldenRecordError,
    ParseGolden,
    ReadGolden,
    ReadPredictions,
    golden_event,
    parse_golden,
)
from transforms.evaluation.report import render_report
from transforms.io.files import (
    WriteDeadLetters,
    WritePredictions,
    is_parquet,
    single_file,
)
from transforms.model.client import ModelClientFactory
from transforms.predict import PredictConfig, PredictProducts
from transforms.progress import ReportProgress, register, unregister
from transforms.records import Prediction
from transforms.shared import shared_taxonomy

__all__ = [
    "METRICS_FILE",
    "REPORT_FILE",
    "EvaluateOptions",
    "EvaluationInputError",
    "check_golden_file",
    "check_predictions_file",
    "build_pipeline",
    "EvaluationResult",
    "run",
    "evaluation_values",
    "evaluation_options",
    "print_summary",
    "evaluate_command",
]

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
# Dead letters at these stages are about part of a product (one image): the product
# still ends as a prediction, so they do not finish an input (as in backfill).
_PARTIAL_STAGES = {"prepare_images"}


@generated_from(EvaluateSettings)
class EvaluateOptions(PipelineOptions):
    """Evaluation flags (transforms/config.py EvaluateSettings); the model, taxonomy, image
    and batching flags are PredictOptions'. Not `required=True`: Beam parses every imported
    options class on every run, so a required flag here would break the other pipelines of
    the process; `run` checks."""


class EvaluationInputError(ValueError):
    """A golden, predictions or mapping file the evaluation cannot use; says which line."""


# -- input checks (before any work) ------------------------------------------------------------


def _local(path: str) -> bool:
    return "://" not in path


def check_golden_file(path: str, limit: int | None = None) -> int:
    """Validate a local golden JSONL (up to `limit` records); return how many records.

    Every problem names the line: a malformed golden file fails here, not half-way through
    a model run. Remote paths are checked in the pipeline instead (invalid lines counted).
    """
    if not _local(path):
        return -1
    p = Path(path)
    if not p.is_file():
        raise EvaluationInputError(f"golden file {path} does not exist")
    seen: dict[str, int] = {}
    count = 0
    with p.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if limit is not None and count >= limit:
                break
            if not line.strip():
                continue
            try:
                g = parse_golden(line)
            except GoldenRecordError as exc:
                raise EvaluationInputError(f"golden file {path}, line {lineno}: {exc}") from None
            if g.id in seen:
                raise EvaluationInputError(
                    f"golden file {path}, line {lineno}: id {g.id!r} repeats line {seen[g.id]}; golden ids must be unique"
                )
            seen[g.id] = lineno
            count += 1
    if count == 0:
        raise EvaluationInputError(f"golden file {path} holds no records")
    return count


def check_predictions_file(path: str) -> dict[str, Counter]:
    """Validate a local predictions JSONL; return the model and taxonomy versions it holds."""
    versions: dict[str, Counter] = {"model_version": Counter(), "taxonomy_version": Counter()}
    if not _local(path):
        return versions
    p = Path(path)
    if not p.is_file():
        raise EvaluationInputError(f"predictions file {path} does not exist")
    if is_parquet(path):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path, columns=["model_version", "taxonomy_version"])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error to the user
            raise EvaluationInputError(f"predictions file {path} is not a predictions Parquet file: {exc}") from None
        for column in ("model_version", "taxonomy_version"):
            versions[column].update(table.column(column).to_pylist())
        if not table.num_rows:
            raise EvaluationInputError(f"predictions file {path} holds no predictions")
        return versions
    with p.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                pr = Prediction.model_validate_json(line)
            except ValueError as exc:
                first = str(exc).splitlines()
                reason = "; ".join(first[:3]) if first else type(exc).__name__
                raise EvaluationInputError(
                    f"predictions file {path}, line {lineno} is not a Prediction (docs/schemas/prediction.schema.json): {reason}"
                ) from None
            versions["model_version"][pr.model_version] += 1
            versions["taxonomy_version"][pr.taxonomy_version] += 1
    if not sum(versions["model_version"].values()):
        raise EvaluationInputError(f"predictions file {path} holds no predictions")
    return versions


# -- the pipeline ----------------------------------------------------------------------------------


def build_pipeline(
    pipeline: beam.Pipeline,
    options: PipelineOptions,
    config: PredictConfig | None,
    mapping: CategoryMapping | None = None,
    run_id: str = "",
) -> dict[str, beam.PCollection]:
    """Golden (+ the model, or existing predictions) -> metrics.json in --out.

    `config` is None exactly when --predictions is given. When the model runs, its
    predictions and dead letters are written to --out as a backfill would.
    """
    e = options.view_as(EvaluateOptions)
    taxonomy_path = options.view_as(PredictOptions).taxonomy
    golden = (
        pipeline
        | "ReadGolden" >> ReadGolden(e.golden, e.limit)
        | "ParseGolden" >> beam.ParDo(ParseGolden()).with_outputs(INVALID, main="golden")
    )
    notes = [golden[INVALID]]
    outputs: dict[str, beam.PCollection] = {}
    if e.predictions:
        read = pipeline | "ReadPredictions" >> ReadPredictions(e.predictions)
        predictions = read.predictions
        notes.append(read[INVALID])
    else:
        if config is None:
            raise ValueError("build_pipeline needs a PredictConfig unless --predictions is given")
        include_images = not e.no_images
        predicted = (
            golden.golden
            | "ToEvents" >> beam.Map(golden_event, include_images=include_images)
            | "Predict" >> PredictProducts(config)
        )
        predictions = predicted["predictions"] | "ProgressPredictions" >> beam.ParDo(ReportProgress(run_id))
        letters = predicted["dead_letters"]
        _ = (
            letters
            | "FinalDeadLetters" >> beam.Filter(lambda d: d.stage not in _PARTIAL_STAGES)
            | "ProgressDeadLetters" >> beam.ParDo(ReportProgress(run_id))
        )
        predictions | "WritePredictions" >> WritePredictions(e.out)
        letters | "WriteDeadLetters" >> WriteDeadLetters(e.out)
        outputs["dead_letters"] = letters
    all_notes = tuple(notes) | "AllNotes" >> beam.Flatten()
    evaluated = {
        "golden": golden.golden,
        "predictions": predictions,
        "notes": all_notes,
    } | "Evaluate" >> EvaluatePredictions(taxonomy_path, mapping, e.top_n)
    if e.predictions:
        _ = evaluated["scores"] | "ProgressScores" >> beam.ParDo(ReportProgress(run_id))
    _ = (
        evaluated["metrics"]
        | "MetricsJson" >> beam.Map(lambda m: json.dumps(m, indent=2, ensure_ascii=False))
        | "WriteMetrics" >> beam.io.WriteToText(**single_file(e.out, METRICS_FILE))
    )
    return {**outputs, "predictions": predictions, "scores": evaluated["scores"], "metrics": evaluated["metrics"]}


# -- running it --------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]
    out: str
    seconds: float

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.out, METRICS_FILE)

    @property
    def report_path(self) -> str:
        return os.path.join(self.out, REPORT_FILE)


def run(
    options: PipelineOptions,
    model: ModelClientFactory | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> EvaluationResult:
    """Check the inputs, run the pipeline, then add the run-level figures and the report.

    Raises EvaluationInputError (bad golden/predictions file), MappingError, TaxonomyError,
    TaxonomyVersionMismatch: all with a message that says what to fix.
    """
    from taxonomy.mapping import MappingError

    e = options.view_as(EvaluateOptions)
    predict = options.view_as(PredictOptions)
    if not e.golden or not e.out:
        raise EvaluationInputError("evaluate needs --golden FILE and --out DIR")
    if e.limit is not None and e.limit < 1:
        raise EvaluationInputError(f"--limit must be at least 1, got {e.limit}")
    taxonomy = shared_taxonomy(predict.taxonomy)
    golden_count = check_golden_file(e.golden, e.limit)
    mapping = None
    if e.mapping:
        try:
            mapping = load_mapping(e.mapping, taxonomy)
        except MappingError as exc:
            raise EvaluationInputError(str(exc)) from None
    config: PredictConfig | None = None
    versions: dict[str, Counter] = {}
    if e.predictions:
        versions = check_predictions_file(e.predictions)
    else:
        # A golden file is curated by the operator, so its own directory may hold its images.
        golden_dir = os.path.dirname(os.path.abspath(e.golden)) if _local(e.golden) else None
        image_base_dir = options.view_as(PredictOptions).image_base_dir or golden_dir
        config = predict_config(options, model or model_factory(options), image_base_dir)
    if _local(e.out):
        os.makedirs(e.out, exist_ok=True)
    run_id = uuid.uuid4().hex
    runner_name = options.view_as(StandardOptions).runner
    runner = FnApiRunner() if runner_name in (None, "FnApiRunner") else runner_name
    if on_progress:
        register(run_id, on_progress)
    start = time.perf_counter()
    try:
        pipeline = beam.Pipeline(runner=runner, options=options)
        build_pipeline(pipeline, options, config, mapping, run_id)
        result = pipeline.run()
        result.wait_until_finish()
    finally:
        unregister(run_id)
    seconds = time.perf_counter() - start

    metrics = _read_json(os.path.join(e.out, METRICS_FILE))
    products = metrics.get("n", 0)
    model_counts = counter_totals(result, "model")
    calls = {k.removesuffix("_requests"): v for k, v in sorted(model_counts.items()) if k.endswith("_requests")}
    metrics["run"] = {
        "golden": e.golden,
        "golden_records": golden_count if golden_count >= 0 else products,
        "limit": e.limit,
        "predictions": e.predictions,
        "mapping": e.mapping,
        "mapping_entries": len(mapping) if mapping is not None else 0,
        "taxonomy": predict.taxonomy or "(bundled 2024-07)",
        "taxonomy_version": taxonomy.version,
        "model_name": config.metadata.name if config else None,
        "model_version": config.metadata.model_version if config else _only(versions.get("model_version")),
        "model_versions": dict(versions.get("model_version", {})) or None,
        "prediction_taxonomy_versions": dict(versions.get("taxonomy_version", {})) or None,
        "images": (not e.no_images) if config else None,
        "triton_url": predict.triton_url if config else None,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if config is not None:
        metrics["latency"] = {
            "seconds": round(seconds, 3),
            "products": products,
            "seconds_per_product": round(seconds / products, 4) if products else None,
            "products_per_s": round(products / seconds, 2) if seconds else None,
        }
        total_calls = sum(calls.values())
        metrics["model_calls"] = {"total": total_calls, "by_step": calls}
        metrics["model_calls_per_product"] = round(total_calls / products, 4) if products else None
        metrics["dead_letters"] = dict(sorted(counter_totals(result, "dead_letters").items()))
    else:
        # Latency and model calls belong to the run that made the predictions.
        metrics["latency"] = None
        metrics["model_calls"] = None
        metrics["model_calls_per_product"] = None
        metrics["dead_letters"] = None
    metrics["pipeline_seconds"] = round(seconds, 3)
    _write(os.path.join(e.out, METRICS_FILE), json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    _write(os.path.join(e.out, REPORT_FILE), render_report(metrics))
    return EvaluationResult(metrics=metrics, out=e.out, seconds=seconds)


def _only(counter: Counter | None) -> str | None:
    if not counter:
        return None
    return counter.most_common(1)[0][0] if len(counter) == 1 else "mixed"


def _read_json(path: str) -> dict[str, Any]:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        return json.loads(fh.read().decode("utf-8"))


def _write(path: str, text: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as fh:
        fh.write(text.encode("utf-8"))


def evaluation_values(
    golden: str,
    out: str,
    *,
    taxonomy: str | None = None,
    predictions: str | None = None,
    mapping: str | None = None,
    limit: int | None = None,
    triton_url: str | None = None,
    model_name: str | None = None,
    model_dir: str | None = None,
    images: bool = True,
    batch_max: int | None = None,
    max_in_flight: int | None = None,
    top_n: int | None = None,
    runner: str | None = None,
) -> dict[str, Any]:
    """The CLI's arguments by pipeline-option name; None leaves the option's default."""
    values = {
        "golden": golden,
        "out": out,
        "taxonomy": taxonomy,
        "predictions": predictions,
        "mapping": mapping,
        "limit": limit,
        "triton_url": triton_url,
        "model_name": model_name,
        "model_dir": model_dir,
        "no_images": not images,
        "batch_max": batch_max,
        "max_in_flight": max_in_flight,
        "top_n": top_n,
        "runner": runner,
    }
    return {name: value for name, value in values.items() if value is not None}


def evaluation_options(golden: str, out: str, *, extra: Sequence[str] = (), **kwargs: Any) -> PipelineOptions:
    """Options for `run`, validated and built with `PipelineOptions.from_dictionary`;
    `extra`: raw Beam flags. A bad value is a ValueError naming the flag."""
    return build_options(PipelineOptions, evaluation_values(golden, out, **kwargs), extra)


# -- the `productlens evaluate` command ----------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def print_summary(metrics: dict[str, Any], console: Any) -> None:
    """The headline, per-store and per-vertical tables (rich)."""
    from rich.table import Table

    c, a, run_info = metrics["category"], metrics["attributes"], metrics.get("run", {})
    title = (
        f"evaluation (model {run_info.get('model_version') or '?'}, taxonomy {run_info.get('taxonomy_version') or '?'})"
    )
    head = Table(title=title)
    head.add_column("metric")
    head.add_column("value", justify="right")
    latency = metrics.get("latency") or {}
    calibration, back_off = c.get("calibration") or {}, c.get("back_off") or {}
    rows = [
        ("products (n)", str(metrics["n"])),
        ("  with a gold category in the taxonomy", str(c["n"])),
        ("category accuracy (exact node)", _num(c["accuracy"])),
        ("hierarchical precision", _num(c["hierarchical_precision"])),
        ("hierarchical recall", _num(c["hierarchical_recall"])),
        ("hierarchical F1", _num(c["hierarchical_f1"])),
        ("attribute micro precision", _num(a["micro_precision"])),
        ("attribute micro recall", _num(a["micro_recall"])),
        ("attribute micro F1", _num(a["micro_f1"])),
        ("category score ECE (gold lineage, 15 bins)", _num(calibration.get("ece"))),
        ("category score ECE (exact node)", _num(calibration.get("ece_exact"))),
        ("backed-off answers", str(back_off.get("n", "–"))),
        ("correction rate", _pct(metrics["correction_rate"])),
        ("unresolved rate", _pct(metrics["unresolved_rate"])),
        ("no prediction (dead letters)", str(metrics["status_counts"]["missing"])),
        ("unmappable gold categories", str(metrics["unmappable"]["categories"]["count"])),
        ("unmappable gold attribute values", str(metrics["unmappable"]["attribute_values"]["count"])),
        ("seconds per product", _num(latency.get("seconds_per_product"), 4)),
        ("model calls per product", _num(metrics.get("model_calls_per_product"), 2)),
    ]
    for k, v in rows:
        head.add_row(k, v)
    console.print(head)
    for title, groups in (("per store", metrics["per_store"]), ("per vertical (gold)", c["per_vertical"])):
        t = Table(title=title)
        for col in ("", "n", "accuracy", "hP", "hR", "hF1", "attr F1", "ECE", "corrected", "unresolved"):
            t.add_column(col, justify="right" if col else "left")
        for name, g in groups.items():
            gc = g["category"]
            t.add_row(
                name,
                str(g["n"]),
                _num(gc["accuracy"]),
                _num(gc["hierarchical_precision"]),
                _num(gc["hierarchical_recall"]),
                _num(gc["hierarchical_f1"]),
                _num(g["attributes"]["micro_f1"]),
                _num((gc.get("calibration") or {}).get("ece")),
                _pct(g["correction_rate"]),
                _pct(g["unresolved_rate"]),
            )
        console.print(t)
    if c.get("coverage"):
        t = Table(title="quality against coverage (highest scores first)")
        for col in ("coverage", "threshold", "accuracy", "hP", "hR", "hF1"):
            t.add_column(col, justify="right")
        for r in c["coverage"]:
            t.add_row(
                _pct(r["coverage"]),
                _num(r["threshold"], 4),
                _num(r["accuracy"]),
                _num(r["hierarchical_precision"]),
                _num(r["hierarchical_recall"]),
                _num(r["hierarchical_f1"]),
            )
        console.print(t)


def evaluate_command(
    golden: str = option(EvaluateSettings, "golden", default=...),
    out: str = option(EvaluateSettings, "out", default=...),
    taxonomy: str | None = option(PredictSettings, "taxonomy"),
    triton_url: str | None = option(PredictSettings, "triton_url"),
    model_name: str = option(PredictSettings, "model_name"),
    model_dir: str | None = option(PredictSettings, "model_dir"),
    predictions: str | None = option(EvaluateSettings, "predictions"),
    mapping: str | None = option(EvaluateSettings, "mapping"),
    limit: int | None = option(EvaluateSettings, "limit"),
    images: bool = option(EvaluateSettings, "no_images", negate=True),
    top_n: int = option(EvaluateSettings, "top_n"),
    batch_max: int = option(PredictSettings, "batch_max"),
    max_in_flight: int = option(PredictSettings, "max_in_flight"),
) -> None:
    """Evaluate a model (or existing predictions) against golden products: metrics.json + report.html."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from taxonomy.loader import TaxonomyError
    from transforms.model.client import TaxonomyVersionMismatch
    from transforms.model.retry import RetriesExhausted
    from transforms.model.triton import ModelConfigError

    err = Console(stderr=True)

    def fail(message: str) -> None:
        err.print(f"[red]error:[/red] {message}")
        raise typer.Exit(2)

    if mapping and _local(mapping) and not Path(mapping).is_file():
        fail(f"mapping file {mapping} does not exist")
    try:
        options = evaluation_options(
            golden,
            out,
            taxonomy=taxonomy,
            predictions=predictions,
            mapping=mapping,
            limit=limit,
            triton_url=triton_url,
            model_name=model_name,
            model_dir=model_dir,
            images=images,
            batch_max=batch_max,
            max_in_flight=max_in_flight,
            top_n=top_n,
        )
    except ValueError as exc:
        fail(str(exc))
    try:
        total = check_golden_file(golden, limit)
    except EvaluationInputError as exc:
        fail(str(exc))
    progress = Progress(
        TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
    try:
        with progress:
            task = progress.add_task("products", total=total if total >= 0 else None)
            err.print("loading the taxonomy" + ("" if predictions else " and the model") + " ...")
            result = run(options, on_progress=lambda n: progress.advance(task, n))
    except (EvaluationInputError, TaxonomyError, TaxonomyVersionMismatch, ModelConfigError, RetriesExhausted) as exc:
        fail(str(exc))
    stdout = Console()
    if not stdout.is_terminal:
        stdout = Console(width=140)  # a pipe or a log file: do not squeeze the tables to 80 columns
    print_summary(result.metrics, stdout)
    outputs = [METRICS_FILE, REPORT_FILE] + ([] if predictions else ["predictions.jsonl", "dead_letters.jsonl"])
    err.print(f"outputs in {result.out}: {', '.join(outputs)}")
