"""`productlens review ...` (annotator accounts) and `productlens labels export` (vetted
labels as golden JSONL). Flags and printing only; the work is in `service/review`.

A password is never a flag (it would sit in the shell history and in `ps`): it comes from
PRODUCTLENS_REVIEW_PASSWORD or an interactive prompt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipelines.cli_options import cli_help, option
from transforms.config import PredictSettings, ServeCommand

__all__ = ["PASSWORD_ENV", "labels_app", "register", "review_app"]

PASSWORD_ENV = "PRODUCTLENS_REVIEW_PASSWORD"
_TAXONOMY_HELP = cli_help(PredictSettings.model_fields["taxonomy"])

review_app = typer.Typer(help="The review store: annotator accounts.", no_args_is_help=True)
labels_app = typer.Typer(help="Vetted labels from the review store.", no_args_is_help=True)
console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
    app.add_typer(labels_app, name="labels")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _store(db: str):  # noqa: ANN202 - the import stays lazy (SQLAlchemy, Alembic)
    from sqlalchemy.exc import SQLAlchemyError

    from service.review.store import ReviewStore

    try:
        return ReviewStore(db)
    except (SQLAlchemyError, OSError) as exc:
        _fail(f"cannot open the review store {db!r}: {str(exc).splitlines()[0][:300]}")
        raise  # unreachable: _fail exits


@review_app.command("add-user")
def add_user(
    name: Annotated[str, typer.Argument(help="The annotator's username.")],
    role: Annotated[str, typer.Option("--role", help="annotator or admin.")] = "annotator",
    db: str = option(ServeCommand, "review_db", "--db"),
) -> None:
    """Add an annotator account (password from $PRODUCTLENS_REVIEW_PASSWORD or a prompt)."""
    from service.review.store import ROLES, DuplicateError

    if role not in ROLES:
        _fail(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    if not password:
        _fail(f"an empty password; set {PASSWORD_ENV} or type one at the prompt")
    store = _store(db)
    try:
        view = store.add_annotator(name, password, role)  # type: ignore[arg-type]
    except DuplicateError as exc:
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"added {view.role} {view.username!r}")


@review_app.command("migrate")
def migrate(db: str = option(ServeCommand, "review_db", "--db")) -> None:
    """Upgrade the review store's schema to the newest migration (the service also does it at start)."""
    store = _store(db)
    store.close()
    console.print(f"review store at the newest schema: {db}")


@labels_app.command("export")
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL file to write (golden shape).")],
    db: str = option(ServeCommand, "review_db", "--db"),
    taxonomy: Annotated[str | None, typer.Option("--taxonomy", help=_TAXONOMY_HELP)] = None,
) -> None:
    """Vetted labels (approved or auto-vetted) with their provenance, in the golden shape
    `productlens dataset build --labelled` reads."""
    from service.review.labels import export_labels
    from taxonomy.loader import TaxonomyError, load_taxonomy

    try:
        tax = load_taxonomy(taxonomy)
    except (TaxonomyError, OSError) as exc:
        _fail(str(exc))
    store = _store(db)
    try:
        stats = export_labels(store, output, tax)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc}")
    finally:
        store.close()
    how = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_how.items())) or "none"
    console.print(
        f"wrote {stats.written} vetted labels to {output} ({how}); left out: {stats.superseded} superseded, "
        f"{stats.unknown_category} with a category unknown to taxonomy {tax.version}, "
        f"{stats.dropped_values} attribute values"
    )
