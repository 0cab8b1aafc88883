"""`productlens train`: a trained CPU model from a training Parquet (training/model/)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from pipelines.cli_options import option
from transforms.config import PredictSettings

__all__ = ["train_command"]

ROOT = Path(__file__).resolve().parents[1]
console = Console(stderr=True)


def _taxonomy_parameter(taxonomy: str | None, out_root: Path) -> str:
    """What config.pbtxt records: repo-relative inside this repo's model_repository (the
    Triton model resolves it from the repo root), else absolute."""
    if not taxonomy:
        return ""
    path = Path(taxonomy).resolve()
    if out_root.resolve() == (ROOT / "model_repository").resolve() and path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    return str(path)


def train_command(
    data: list[Path] = typer.Option(
        ..., "--data", help="training Parquet, or a directory of them (productlens dataset build); repeatable"
    ),
    name: str = typer.Option(..., "--name", help="model name: the directory model_repository/NAME"),
    taxonomy: str | None = option(PredictSettings, "taxonomy"),
    out_root: Path = typer.Option(ROOT / "model_repository", "--out-root", help="model repository to write into"),
    regularisation: float = typer.Option(1.0, "--c", min=1e-6, help="inverse L2 strength of the logistic layer"),
    alpha: float | None = typer.Option(
        None, "--alpha", min=0.0, max=1.0, help="trained vs zero-shot weight (default: chosen on validation)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing model directory"),
) -> None:
    """Train a classifier on the baseline's features and write model_repository/NAME."""
    from model_repository.product_baseline.engine import BaselineModel
    from taxonomy.loader import TaxonomyError
    from training.model.data import TrainingDataError, read_paths
    from training.model.train import NAME_PATTERN, train, write_model

    if not NAME_PATTERN.match(name):
        console.print(f"[red]error:[/red] --name {name!r}: lower-case letters, digits, '_', '-', '.'")
        raise typer.Exit(2)
    if (out_root / name).exists() and not overwrite:
        console.print(f"[red]error:[/red] {out_root / name} exists (pass --overwrite)")
        raise typer.Exit(2)
    try:
        rows, skipped = read_paths(list(data))
        baseline = BaselineModel(taxonomy)
        weights, metrics, priors = train(rows, baseline, regularisation=regularisation, alpha=alpha)
    except (TrainingDataError, TaxonomyError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    metrics["skipped_rows"] = skipped
    metrics["data"] = [str(d) for d in data]
    model_dir = write_model(
        out_root,
        name,
        weights,
        metrics,
        priors,
        baseline.taxonomy.version,
        _taxonomy_parameter(taxonomy, out_root),
        overwrite=overwrite,
    )
    console.print(json.dumps({k: v for k, v in metrics.items() if k != "validation_by_alpha"}, indent=2))
    console.print(f"wrote {model_dir}")
