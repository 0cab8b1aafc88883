"""Pipeline options generated from the settings models of `transforms/config.py`.

Each `PipelineOptions` subclass declares its flags with `@generated_from(SettingsModel)`:
one argparse flag per field (name, type, default, help = the field's description; lists
repeat their flag, booleans are switches). `read_settings` turns parsed options back into
the validated model, and `build_options` goes the other way for the CLI, through
`PipelineOptions.from_dictionary`.

Every subclass here derives from `PipelineOptions` directly: Beam finds option classes
with `PipelineOptions.__subclasses__()`, which lists direct subclasses only.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Mapping, Sequence
from typing import (
    Any,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from apache_beam.options.pipeline_options import PipelineOptions
from pydantic import BaseModel, ValidationError

from transforms.config import (
    OPTION_GROUPS,
    ImageConfig,
    KafkaSettings,
    PredictSettings,
    StoreSettings,
    settings_error,
    validate,
)
from transforms.io.kafka import KafkaConfig

__all__ = [
    "KafkaOptions",
    "PredictOptions",
    "StoreOptions",
    "add_arguments",
    "build_options",
    "generated_from",
    "image_config",
    "kafka_config",
    "read_settings",
]

OptionsT = TypeVar("OptionsT", bound=PipelineOptions)
S = TypeVar("S", bound=BaseModel)


def _scalar(annotation: Any) -> Any:
    """`float | None` -> float; other annotations unchanged."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def add_arguments(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One flag per field of `model`: `--<field name>`, help = the field's description."""
    for name, field in model.model_fields.items():
        annotation = _scalar(field.annotation)
        default = field.get_default(call_default_factory=True)
        kwargs: dict[str, Any] = {"help": (field.description or "").replace("%", "%%")}
        if annotation is bool:
            if default:
                raise TypeError(f"{model.__name__}.{name}: a switch must default to False (argparse store_true)")
            kwargs.update(action="store_true", default=False)
        elif get_origin(annotation) in (list, tuple):
            (item, *_) = get_args(annotation)
            kwargs.update(action="append", type=item, default=list(default or ()))
        elif get_origin(annotation) is Literal:
            kwargs.update(choices=list(get_args(annotation)), default=default)
        elif annotation in (int, float, str):
            kwargs.update(type=annotation, default=default)
        else:
            raise TypeError(f"{model.__name__}.{name}: no flag type for {field.annotation}")
        parser.add_argument(f"--{name}", **kwargs)


def generated_from(model: type[BaseModel]) -> Callable[[type[OptionsT]], type[OptionsT]]:
    """Class decorator: the options class's `_add_argparse_args` declares `model`'s fields."""

    def decorate(cls: type[OptionsT]) -> type[OptionsT]:
        def _add_argparse_args(_cls: type[OptionsT], parser: argparse.ArgumentParser) -> None:
            add_arguments(parser, model)

        # Beam calls `_add_argparse_args` of each class that has it in its own __dict__.
        cls._add_argparse_args = classmethod(_add_argparse_args)  # type: ignore[assignment]
        cls.settings_model = model  # type: ignore[attr-defined]
        return cls

    return decorate


@generated_from(PredictSettings)
class PredictOptions(PipelineOptions):
    """What every predicting pipeline shares: taxonomy, model, images, batching."""


@generated_from(KafkaSettings)
class KafkaOptions(PipelineOptions):
    """The Kafka cluster, the output topics and the consumer group."""


@generated_from(StoreSettings)
class StoreOptions(PipelineOptions):
    """The prediction store and bulk results, shared by backfill and repredict."""


def read_settings(options: PipelineOptions, options_class: type[PipelineOptions]) -> Any:
    """The validated settings model of `options_class` (a `@generated_from` class). A bad
    value is a ValueError that names the flag, the bound and what the flag means."""
    model: type[BaseModel] = options_class.settings_model  # type: ignore[attr-defined]
    view = options.view_as(options_class)
    try:
        return model.model_validate({name: getattr(view, name) for name in model.model_fields})
    except ValidationError as exc:
        raise ValueError(settings_error(exc, model)) from None


def build_options(options_class: type[OptionsT], values: Mapping[str, Any], beam_args: Sequence[str] = ()) -> OptionsT:
    """Options from settings given by pipeline-flag name, with `PipelineOptions.from_dictionary`.

    The values are validated against the option groups first: a bad one is a ValueError
    naming its `productlens` flag. None, False and empty lists are left out (the flag's own
    default applies). `beam_args` are raw Beam flags (`--beam-arg`); they win over `values`.
    """
    for model, _ in OPTION_GROUPS:
        try:
            validate(model, values)
        except ValidationError as exc:
            raise ValueError(settings_error(exc, model, cli=True)) from None
    given = {k: v for k, v in values.items() if v is not None and v is not False and v != []}
    if beam_args:
        extra = PipelineOptions(list(beam_args)).get_all_options(drop_default=True, retain_unknown_options=True)
        given.update(extra)
    return options_class.from_dictionary(given)


def kafka_config(options: PipelineOptions) -> KafkaConfig:
    k = read_settings(options, KafkaOptions)
    return KafkaConfig.from_options(k.kafka_bootstrap, k.kafka_config)


def image_config(options: PipelineOptions) -> ImageConfig:
    return read_settings(options, PredictOptions).image_config()
