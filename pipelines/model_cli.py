"""`productlens model ...`: model lifecycle commands (the evaluation gate, training/promote.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipelines.cli_options import option
from transforms.config import EvaluateSettings, PredictSettings

__all__ = ["model_app", "promote_command"]

model_app = typer.Typer(help="Model versions: the evaluation gate before one ships.", no_args_is_help=True)
console = Console(stderr=True)


@model_app.command("promote")
def promote_command(
    candidate: str = typer.Option(..., "--candidate", help="trained model: a name under model_repository/ or a dir"),
    baseline: str = typer.Option("product_baseline", "--baseline", help="product_baseline or a trained model"),
    golden: str = option(EvaluateSettings, "golden", default=...),
    tolerance: float = typer.Option(0.01, "--tolerance", min=0.0, help="largest allowed drop of hF1 / attribute F1"),
    min_vertical: int = typer.Option(30, "--min-vertical", min=1, help="gate verticals with at least this many"),
    taxonomy: str | None = option(PredictSettings, "taxonomy"),
    report: Path = typer.Option(Path("out/promote/report.html"), "--report", help="side-by-side HTML report"),
    limit: int | None = option(EvaluateSettings, "limit"),
    model_repository: Path = typer.Option(
        Path(__file__).resolve().parents[1] / "model_repository", "--model-repository", help="where names resolve"
    ),
) -> None:
    """Evaluate candidate and baseline on the same golden set; exit 1 when the candidate
    drops hF1 or attribute F1 beyond the tolerance overall or in a large enough vertical."""
    from pipelines.evaluate import EvaluationInputError, check_golden_file
    from training.promote import promote, resolve_model

    if not Path(golden).is_file():
        console.print(f"[red]error:[/red] --golden {golden} is not a file")
        raise typer.Exit(2)
    if golden.endswith(".parquet"):
        golden = _golden_from_split(golden, report.parent)
    try:
        check_golden_file(golden, limit)
    except EvaluationInputError as exc:  # a malformed golden file fails here, before two model runs
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    try:
        resolve_model(candidate, model_repository)
        resolve_model(baseline, model_repository)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    result = promote(
        candidate,
        baseline,
        golden,
        report,
        taxonomy=taxonomy,
        tolerance=tolerance,
        min_vertical=min_vertical,
        limit=limit,
        model_repository=model_repository,
    )
    table = Table(title=f"{candidate} against {baseline} (tolerance {tolerance})")
    for col in ("slice", "metric", "n", "baseline", "candidate", "Δ", ""):
        table.add_column(col)
    for c in result.checks:
        delta = "–" if c.delta is None else f"{c.delta:+.4f}"
        b = "–" if c.baseline is None else f"{c.baseline:.4f}"
        k = "–" if c.candidate is None else f"{c.candidate:.4f}"
        table.add_row(c.slice, c.metric, str(c.n), b, k, delta, "[red]FAIL[/red]" if c.failed else "ok")
    Console().print(table)
    console.print(f"report: {report}")
    if not result.promoted:
        console.print(f"[red]refused:[/red] {len(result.failures)} check(s) dropped beyond {tolerance}")
        raise typer.Exit(1)
    console.print(
        f"[green]promoted[/green] {candidate}: serve it with --model-name {Path(candidate).name} (Triton) "
        f"or its directory in-process"
    )


def _golden_from_split(parquet: str, directory: Path) -> str:
    """A `dataset build` split (e.g. test.parquet) written as golden JSONL beside the report."""
    import json

    from training.dataset.schema import golden_records

    try:
        records = golden_records(parquet)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same usage error
        console.print(f"[red]error:[/red] --golden {parquet} is not a dataset split: {exc}")
        raise typer.Exit(2) from None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (Path(parquet).stem + ".golden.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    console.print(f"golden set: {len(records)} products from {parquet} -> {path}")
    return str(path)
