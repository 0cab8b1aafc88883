"""`productlens sft export`: the fine-tuning export (training/sft/export.py) on the command line.

A sub-app of its own so it can be registered with one line in `pipelines/cli.py`; the
command function is importable (`export_command`) so `productlens dataset export-sft` can be
the same command under the dataset app (`dataset_app.command("export-sft")(export_command)`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipelines.cli_options import cli_help
from transforms.config import PredictSettings

__all__ = ["sft_app", "export_command", "register"]

sft_app = typer.Typer(help="Supervised fine-tuning data for the production VLM.", no_args_is_help=True)
console = Console(stderr=True)


def export_command(
    data: Annotated[Path, typer.Option("--data", help="training set Parquet (productlens dataset build)")],
    output: Annotated[Path, typer.Option("--output", help="directory for <split>.jsonl and manifest.json")],
    images: Annotated[
        str,
        typer.Option("--images", help="image references: url (as in the data), path (files under --image-root), none"),
    ] = "url",
    image_root: Annotated[
        Path | None, typer.Option("--image-root", help="with --images path: the directory local image paths are under")
    ] = None,
    tasks: Annotated[str, typer.Option("--tasks", help="comma-separated: classify, extract")] = "classify,extract",
    taxonomy: Annotated[
        str | None, typer.Option("--taxonomy", help=cli_help(PredictSettings.model_fields["taxonomy"]))
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option("--prompts", help="prompt set directory; default: model_repository/product_vlm/1/prompts"),
    ] = None,
) -> None:
    """Chat JSONL for both VLM tasks, rendered with the served prompt set, plus a manifest."""
    from model_repository.contract import Task
    from taxonomy.loader import TaxonomyError, load_taxonomy
    from training.sft.export import ImageMode, SftExportError, export_sft

    try:
        task_list = [Task(t.strip()) for t in tasks.split(",") if t.strip()]
        mode = ImageMode(images)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc} (tasks: classify, extract; images: url, path, none)")
        raise typer.Exit(2) from None
    try:
        tax = load_taxonomy(taxonomy)
        kwargs = {"prompts_dir": prompts} if prompts is not None else {}
        result = export_sft(data, output, tax, tasks=task_list, images=mode, image_root=image_root, **kwargs)
    except (SftExportError, TaxonomyError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    counts = result.manifest["counts"]
    console.print(
        f"{counts['examples']} examples from {counts['rows']} rows ({counts['rows_skipped']} skipped) "
        f"-> {output} (prompt set {result.manifest['model_version']}, taxonomy {result.manifest['taxonomy_version']})"
    )
    if result.manifest["skipped"]:
        console.print("skipped: " + json.dumps({k: v["rows"] for k, v in result.manifest["skipped"].items()}))


sft_app.command("export")(export_command)


def register(app: typer.Typer) -> None:
    """Add `sft` to the productlens app."""
    app.add_typer(sft_app, name="sft")
