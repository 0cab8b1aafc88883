"""`productlens dataset ...`: build a training set (Parquet + dataset card) and score
annotators' verdicts. Flags and printing only; the work is in `training/dataset`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.cli_options import cli_help
from transforms.config import EvaluateSettings, PredictSettings

__all__ = ["dataset_app", "register", "parse_split"]

# Options that are settings elsewhere read the same here (tests/unit/test_config.py).
_TAXONOMY_HELP = cli_help(PredictSettings.model_fields["taxonomy"])
_MAPPING_HELP = (
    cli_help(EvaluateSettings.model_fields["mapping"]) + " (taxonomy/mapping.py; labels it maps count as other version)"
)

dataset_app = typer.Typer(help="Build training sets from labelled catalogs; score annotations.", no_args_is_help=True)
console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def parse_split(text: str) -> tuple[float, float, float]:
    """'0.8/0.1/0.1' (or with commas) -> fractions. Exactly three parts, so a typo never
    silently changes what a number means."""
    parts = [p for p in text.replace(",", "/").split("/") if p.strip()]
    if len(parts) != 3:
        raise ValueError(f"--split takes train/validation/test fractions such as 0.8/0.1/0.1, got {text!r}")
    try:
        a, b, c = (float(p) for p in parts)
    except ValueError as exc:
        raise ValueError(f"--split: not numbers: {text!r}") from exc
    return a, b, c


# The defaults below repeat BuildConfig's (a test holds them equal): importing the build
# module here would load pyarrow and the taxonomy code on every `productlens` start.
@dataset_app.command("build")
def build(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the Parquet splits, card and stats.")],
    labelled: Annotated[
        list[Path] | None, typer.Option("--labelled", help="Golden-shaped labelled JSONL (repeatable).")
    ] = None,
    shopify_csv: Annotated[
        list[Path] | None, typer.Option("--shopify-csv", help="A Shopify 'Export products' CSV (repeatable).")
    ] = None,
    predictions: Annotated[
        list[Path] | None,
        typer.Option("--predictions", help="Predictions JSONL of a model on the same products (repeatable)."),
    ] = None,
    reviewed: Annotated[
        Path | None, typer.Option("--reviewed", help="Vetted review labels (JSONL or CSV; see training/README.md).")
    ] = None,
    taxonomy: Annotated[str | None, typer.Option("--taxonomy", help=_TAXONOMY_HELP)] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help=_MAPPING_HELP)] = None,
    cap_per_category: Annotated[
        int, typer.Option("--cap-per-category", min=0, help="At most this many products per category; 0: no cap.")
    ] = 200,
    consensus_k: Annotated[
        int | None,
        typer.Option("--consensus-k", min=1, help="Keep an attribute value k sources agree on; default: all."),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="train/validation/test fractions.")] = "0.8/0.1/0.1",
    split_by_store: Annotated[bool, typer.Option("--split-by-store", help="Every store in exactly one split.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sampling and splits.")] = 13,
    annotation_sample: Annotated[
        int, typer.Option("--annotation-sample", min=0, help="Products per vertical for annotation.")
    ] = 50,
    judge: Annotated[
        str, typer.Option("--judge", help="baseline (the CPU model in-process), none, or a predictions JSONL file.")
    ] = "none",
    replace_threshold: Annotated[
        float, typer.Option("--replace-threshold", min=0.0, max=1.0, help="Judge probability needed to replace.")
    ] = 0.8,
) -> None:
    """Labelled catalogs -> train/validation/test Parquet, annotation_sample.csv, stats.json and dataset_card.md."""
    from pydantic import ValidationError

    from taxonomy.loader import TaxonomyError, load_taxonomy
    from taxonomy.mapping import MappingError, load_mapping
    from training.dataset.build import BuildConfig, BuildInputs, build_dataset, write_outputs
    from training.dataset.judge import BaselineJudge, PredictionsJudge
    from training.dataset.sources import read_labelled_jsonl, read_predictions, read_reviewed, read_shopify_csv

    if not (labelled or shopify_csv):
        _fail("give at least one --labelled JSONL or --shopify-csv export")
    try:
        config = BuildConfig(
            cap_per_category=cap_per_category or None,
            consensus_k=consensus_k,
            split=parse_split(split),
            split_by_store=split_by_store,
            seed=seed,
            annotation_sample=annotation_sample,
            replace_threshold=replace_threshold,
        )
    except (ValidationError, ValueError) as exc:
        _fail(str(exc).splitlines()[-1] if isinstance(exc, ValidationError) else str(exc))
    try:
        tax = load_taxonomy(taxonomy)
        cat_mapping = load_mapping(mapping, tax) if mapping is not None else None
    except (TaxonomyError, MappingError, OSError) as exc:
        _fail(str(exc))

    inputs = BuildInputs()
    for kind, paths, reader in (
        ("labelled", labelled, read_labelled_jsonl),
        ("shopify-csv", shopify_csv, read_shopify_csv),
    ):
        for p in paths or []:
            got = reader(p)
            inputs.records += got.records
            inputs.problems += got.problems
            inputs.sources.append(
                {"kind": kind, "path": str(p), "records": len(got.records), "problems": len(got.problems)}
            )
    for p in predictions or []:
        opinions, problems = read_predictions(p)
        inputs.predictions.append(opinions)
        inputs.problems += problems
        inputs.sources.append(
            {"kind": "predictions", "path": str(p), "records": len(opinions), "problems": len(problems)}
        )
    if reviewed is not None:
        labels, problems = read_reviewed(reviewed)
        inputs.reviewed = labels
        inputs.problems += problems
        inputs.sources.append(
            {"kind": "reviewed", "path": str(reviewed), "records": len(labels), "problems": len(problems)}
        )

    the_judge: Any = None
    if judge == "baseline":
        the_judge = BaselineJudge(tax)
    elif judge != "none":
        if not Path(judge).is_file():
            _fail(f"--judge must be baseline, none or a predictions JSONL file; {judge!r} is none of them")
        the_judge = PredictionsJudge(judge)
        inputs.problems += the_judge.problems

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    tasks: dict[str, Any] = {}

    def on_progress(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = progress.add_task(what, total=total)
        progress.update(tasks[what], completed=done, total=total)

    with progress:
        result = build_dataset(inputs, tax, config, judge=the_judge, mapping=cat_mapping, progress=on_progress)
    written = write_outputs(result, output, config)

    s = result.stats
    table = Table(title=f"dataset ({s['sampled_products']} products, taxonomy {s['taxonomy_version']})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for k, v in s["splits"].items():
        table.add_row(f"split {k}", str(v))
    for k, v in s["bad_input"].items():
        table.add_row(k.replace("_", " "), str(v))
    table.add_row(
        "top-category share before → after", f"{s['skew_before']['top_share']} → {s['skew_after']['top_share']}"
    )
    console.print(table)
    for name, path in written.items():
        console.print(f"{name}: {path}")


@dataset_app.command("score-annotations")
def score_annotations_cmd(
    verdicts: Annotated[Path, typer.Argument(help="CSV or JSONL of id, verdict (correct/incorrect)[, vertical].")],
    sample: Annotated[
        Path | None, typer.Option("--sample", help="annotation_sample.csv, for the vertical of each id.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the scores as JSON here.")] = None,
) -> None:
    """Label precision with Wilson 95% intervals, overall and per vertical."""
    from training.dataset.annotations import score_annotations

    if not verdicts.is_file():
        _fail(f"no such file: {verdicts}")
    scores = score_annotations(verdicts, sample)
    table = Table(title="label precision (Wilson 95%)")
    for col in ("group", "annotated", "precision", "95% interval"):
        table.add_column(col)

    def row(name: str, d: dict[str, Any]) -> None:
        ci = "—" if d["precision"] is None else f"[{d['ci95_low']:.3f}, {d['ci95_high']:.3f}]"
        table.add_row(name, str(d["annotated"]), "—" if d["precision"] is None else f"{d['precision']:.3f}", ci)

    row("overall", scores["overall"])
    for name, d in scores["by_vertical"].items():
        row(name, d)
    console.print(table)
    console.print(
        f"not annotated: {scores['not_annotated']}, malformed: {scores['malformed_verdicts']}, "
        f"duplicates: {scores['duplicate_verdicts']}"
    )
    text = json.dumps(scores, indent=2, sort_keys=True)
    if output is not None:
        output.write_text(text + "\n")
    else:
        typer.echo(text)


def _register_export_sft() -> None:
    # The issue's `productlens dataset export-sft`: the same command as `productlens sft export`.
    from pipelines.sft_cli import export_command

    dataset_app.command("export-sft", help=export_command.__doc__)(export_command)


_register_export_sft()
