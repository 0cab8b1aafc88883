"""The `productlens` command line. It parses flags and prints; pipelines do the work."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="productlens: product understanding at scale.", no_args_is_help=True, add_completion=False)
taxonomy_app = typer.Typer(help="Inspect and fetch Shopify taxonomy versions.", no_args_is_help=True)
app.add_typer(taxonomy_app, name="taxonomy")
console = Console(stderr=True)

TaxonomyOpt = Annotated[
    Optional[str], typer.Option("--taxonomy", help="dist/en directory (categories.json + attributes.json); default: the bundled sample")
]


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@taxonomy_app.command("info")
def taxonomy_info(taxonomy: TaxonomyOpt = None) -> None:
    """Version, counts and load time of a taxonomy."""
    from taxonomy.loader import TaxonomyError, load_taxonomy

    try:
        start = time.perf_counter()
        t = load_taxonomy(taxonomy)
        ms = (time.perf_counter() - start) * 1000
    except TaxonomyError as exc:
        _fail(str(exc))
    table = Table(title=f"taxonomy {t.version}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for k, v in t.stats().items():
        table.add_row(k, str(v))
    table.add_row("load time (ms)", f"{ms:.1f}")
    Console().print(table)


@taxonomy_app.command("search")
def taxonomy_search(
    query: str,
    taxonomy: TaxonomyOpt = None,
    limit: Annotated[int, typer.Option(help="how many matches")] = 10,
) -> None:
    """Find categories by (part of) a name or path; shows how the corrector reads it too."""
    from rapidfuzz import fuzz, process

    from taxonomy.corrector import CategoryCorrector
    from taxonomy.loader import TaxonomyError, load_taxonomy

    try:
        t = load_taxonomy(taxonomy)
    except TaxonomyError as exc:
        _fail(str(exc))
    categories = list(t.categories.values())
    table = Table(title=f"{query!r} in taxonomy {t.version}")
    for col in ("score", "id", "full name", "attributes"):
        table.add_column(col)
    for _, score, i in process.extract(query, [c.full_name for c in categories], scorer=fuzz.WRatio, limit=limit):
        c = categories[i]
        table.add_row(f"{score:.0f}", c.id.rsplit("/", 1)[-1], c.full_name, str(len(c.attribute_handles)))
    Console().print(table)
    r = CategoryCorrector(t).correct(query)
    verdict = r.category.full_name if r.category else "unresolved"
    Console().print(f"corrector: {verdict} (method {r.method}, score {r.score:.2f})")


@taxonomy_app.command("fetch")
def taxonomy_fetch(
    version: Annotated[str, typer.Option("--version", help="release, e.g. 2024-07")],
    base_url: Annotated[
        Optional[str], typer.Option(help="URL template with {version}; default: Shopify's GitHub release")
    ] = None,
    force: Annotated[bool, typer.Option(help="download again even if cached")] = False,
) -> None:
    """Download a release's dist/en files into the local cache and print the directory."""
    from taxonomy.fetch import FetchError, fetch_release

    try:
        with console.status(f"fetching taxonomy {version}") as status:
            path, t = fetch_release(
                version,
                base_url=base_url,
                force=force,
                on_progress=lambda name, n: status.update(f"fetching {name}: {n / 1e6:.1f} MB"),
            )
    except FetchError as exc:
        _fail(str(exc))
    console.print(f"taxonomy {t.version}: {len(t)} categories, {len(t.attributes)} attributes")
    print(path)


@app.command()
def backfill(
    input: Annotated[str, typer.Option("--input", help="product events: .jsonl (glob ok) or .parquet")],
    output: Annotated[str, typer.Option("--output", help="output directory")],
    taxonomy: TaxonomyOpt = None,
    image_max_side: Annotated[int, typer.Option(help="resize images to at most this many pixels a side")] = 448,
    batch_max: Annotated[int, typer.Option(help="largest model batch")] = 64,
    triton_url: Annotated[Optional[str], typer.Option(help="Triton gRPC host:port (e.g. localhost:8001); default: the in-process baseline")] = None,
    model_name: Annotated[str, typer.Option(help="Triton model that answers the contract")] = "product_baseline",
    max_in_flight: Annotated[int, typer.Option(help="model batches on the wire per step")] = 4,
    runner: Annotated[str, typer.Option(help="Beam runner")] = "FnApiRunner",
    beam_arg: Annotated[Optional[list[str]], typer.Option("--beam-arg", help="extra Beam pipeline flag (repeatable)")] = None,
) -> None:
    """Predict category and attributes for every product in a file of events."""
    from pipelines.backfill import BackfillOptions, count_lines, run
    from taxonomy.loader import TaxonomyError
    from transforms.inference import ModelConfigError
    from transforms.model_client import TaxonomyVersionMismatch
    from transforms.retry import RetriesExhausted

    flags = [
        f"--input={input}",
        f"--output={output}",
        f"--image_max_side={image_max_side}",
        f"--batch_max={batch_max}",
        f"--runner={runner}",
        f"--model_name={model_name}",
        f"--max_in_flight={max_in_flight}",
        *(beam_arg or []),
    ]
    if taxonomy:
        flags.append(f"--taxonomy={taxonomy}")
    if triton_url:
        flags.append(f"--triton_url={triton_url}")
    if "://" not in input and not Path(input).exists() and not any(c in input for c in "*?["):
        _fail(f"input {input} does not exist")
    options = BackfillOptions(flags)
    total = count_lines(input)
    progress = Progress(
        TextColumn("[bold]backfill"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    try:
        with progress:
            task = progress.add_task("events", total=total)
            console.print("loading the model and the taxonomy ...")
            summary = run(options, on_progress=lambda n: progress.advance(task, n))
    except (TaxonomyError, TaxonomyVersionMismatch, ModelConfigError, RetriesExhausted, ValueError) as exc:
        _fail(str(exc))
    _print_summary(summary)
    if "://" not in output:
        Path(output, "summary.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")


def _print_summary(summary: object) -> None:
    from pipelines.backfill import RunSummary

    assert isinstance(summary, RunSummary)
    table = Table(title=f"backfill summary (model {summary.model_version}, taxonomy {summary.taxonomy_version})")
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("events", summary.events),
        ("predicted", summary.predicted),
        ("  of which corrected category", summary.corrected),
        ("  of which unresolved (review)", summary.unresolved),
        ("  of which flagged with warnings", summary.with_warnings),
        ("deletes", summary.deletes),
        ("dead letters", summary.dead_letter_total),
        *((f"  at {stage}", n) for stage, n in summary.dead_letters.items()),
        ("model calls", summary.model_calls),
        ("model call retries", summary.model_retries),
        ("seconds", f"{summary.seconds:.1f}"),
        ("products/s", f"{summary.products_per_s:.1f}"),
    ]
    for k, v in rows:
        table.add_row(k, str(v))
    Console().print(table)
    console.print(f"outputs in {summary.output}: predictions.jsonl, predictions.parquet, dead_letters.jsonl, summary.json")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
