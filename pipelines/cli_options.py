"""typer options derived from the settings models of `transforms/config.py`.

`option(Model, "field")` is a `typer.Option` whose default and help are the field's, and
whose flag names are the field's `cli` names unless given: `productlens` declares no
default or help text of a setting itself. Kept apart from `pipelines/options.py` so that
`productlens --help` does not import Beam.
"""

from __future__ import annotations

from typing import Any

import typer
from pydantic import BaseModel, ValidationError

from transforms.config import cli_help, cli_names, default_of, settings_error

__all__ = ["FROM_FIELD", "check", "option"]

FROM_FIELD: Any = object()  # `default=`: the field's own default


def option(
    model: type[BaseModel],
    name: str,
    *names: str,
    default: Any = FROM_FIELD,
    help: str | None = None,
    note: str | None = None,
    negate: bool = False,
    **kwargs: Any,
) -> Any:
    """`typer.Option(default, *names, help=...)` from `model.name`. `default=...` makes the
    option required; `negate` offers a switch whose default is the field's negation
    (`--images/--no-images` for `no_images`); `note` is added to the field's description,
    `help` replaces it (where a command uses the setting for something narrower)."""
    field = model.model_fields[name]
    value = default_of(model, name) if default is FROM_FIELD else default
    if negate:
        value = not value
    if isinstance(value, tuple):
        value = list(value)
    flags = names or tuple(cli_names(field))
    if not flags:
        raise ValueError(f"{model.__name__}.{name} names no productlens flag: give one")
    text = help or cli_help(field)
    if note:
        text = f"{text} ({note})" if text else note
    return typer.Option(value, *flags, help=text, **kwargs)


def check(model: type[BaseModel], **values: Any) -> None:
    """Validate the CLI's values of `model`'s fields; a ValueError names the typer flag."""
    try:
        model.model_validate(values)
    except ValidationError as exc:
        raise ValueError(settings_error(exc, model, cli=True)) from None
