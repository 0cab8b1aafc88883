"""The Dataflow flex template's entry point: `--pipeline=backfill|stream|repredict|evaluate`
plus that pipeline's options (docs/CONFIGURATION.md), dispatched to the pipeline's own code.

The flex template launcher runs this file (FLEX_TEMPLATE_PYTHON_PY_FILE in the Dockerfile)
with every template parameter as `--name=value` and the Dataflow environment options
(`--runner=DataflowRunner`, `--project`, `--region`, `--temp_location`, and
`--template_location`, where the job graph is written instead of being submitted). The
same file runs by hand for a direct Dataflow submission:

    python deploy/dataflow/launcher.py --pipeline=backfill --runner=DataflowRunner ...

Two things differ from a command line, and are translated here from the settings models
(`transforms/config.py`), so nothing is listed twice:

- a switch (`--dedupe`, `--no_images`, ...) arrives as `--dedupe=true` / `=false`: it
  becomes `--dedupe` or nothing;
- a list flag (`--image_host`, `--kafka_config`, ...) arrives once, comma-separated: it
  becomes one flag per item.

When the launcher only writes the job graph (`--template_location`), the pipeline has not
run when `pipeline.run()` returns, so there are no counters to summarise: the pipelines'
`counter_totals` reads none, and evaluate submits its job without the run-level figures
that `productlens evaluate` adds to metrics.json afterwards. A backfill from `kafka:TOPIC`
commits its consumer group's offsets only after the job finished, which a template launch
cannot wait for: on Dataflow, read Kafka with `--pipeline=stream`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any, get_args, get_origin

if __package__ in (None, ""):  # run as a file: the repository root (or site-packages) imports
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from transforms.config import OPTION_GROUPS  # noqa: E402

PIPELINES = ("backfill", "stream", "repredict", "evaluate")

# Which option groups each pipeline reads (the parentTriggerValues of metadata.json).
GROUP_PIPELINES: dict[str, tuple[str, ...]] = {
    "PredictOptions": PIPELINES,
    "KafkaOptions": ("backfill", "stream", "repredict"),
    "StoreOptions": ("backfill", "repredict"),
    "BackfillOptions": ("backfill",),
    "StreamOptions": ("stream",),
    "RepredictOptions": ("repredict",),
    "EvaluateOptions": ("evaluate",),
}

LIST_SEPARATOR = ","

log = logging.getLogger("productlens.dataflow")


def _scalar(annotation: Any) -> Any:
    if get_origin(annotation) is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def flag_kinds() -> tuple[set[str], set[str]]:
    """(switch flags, list flags) of every option group, by field name."""
    switches: set[str] = set()
    lists: set[str] = set()
    for model, _ in OPTION_GROUPS:
        for name, field in model.model_fields.items():
            annotation = _scalar(field.annotation)
            if annotation is bool:
                switches.add(name)
            elif get_origin(annotation) in (list, tuple):
                lists.add(name)
    return switches, lists


def _truthy(value: str, flag: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no", ""):
        return False
    raise ValueError(f"--{flag} takes true or false, got {value!r}")


def translate(argv: Sequence[str]) -> list[str]:
    """Template parameters -> the pipelines' flags (switches and comma-separated lists)."""
    switches, lists = flag_kinds()
    out: list[str] = []
    for arg in argv:
        name, sep, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep:
            out.append(arg)
        elif name in switches:
            if _truthy(value, name):
                out.append(f"--{name}")
        elif name in lists:
            out.extend(f"--{name}={item.strip()}" for item in value.split(LIST_SEPARATOR) if item.strip())
        else:
            out.append(arg)
    return out


def split_pipeline(argv: Sequence[str]) -> tuple[str, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--pipeline", choices=PIPELINES, required=True)
    known, rest = parser.parse_known_args(list(argv))
    return known.pipeline, rest


def _without_metrics(counter_totals: Callable[..., dict[str, int]]) -> Callable[..., dict[str, int]]:
    """`counter_totals` that reads nothing from a result without metrics (a job graph
    written to --template_location has not run)."""

    def totals(result: Any, *args: Any, **kwargs: Any) -> dict[str, int]:
        if result.metrics() is None:
            return {}
        return counter_totals(result, *args, **kwargs)

    return totals


def _evaluate_graph(options: Any) -> None:
    """`pipelines.evaluate.run` up to `pipeline.run()`: the job writes predictions, dead
    letters and metrics.json to --out; no waiting, no run-level figures."""
    import apache_beam as beam

    from pipelines import evaluate
    from taxonomy.mapping import MappingError
    from transforms.shared import shared_taxonomy

    e = options.view_as(evaluate.EvaluateOptions)
    predict = options.view_as(evaluate.PredictOptions)
    if not e.golden or not e.out:
        raise evaluate.EvaluationInputError("evaluate needs --golden FILE and --out DIR")
    taxonomy = shared_taxonomy(predict.taxonomy)
    evaluate.check_golden_file(e.golden, e.limit)
    mapping = None
    if e.mapping:
        try:
            mapping = evaluate.load_mapping(e.mapping, taxonomy)
        except MappingError as exc:
            raise evaluate.EvaluationInputError(str(exc)) from None
    config = None
    if e.predictions:
        evaluate.check_predictions_file(e.predictions)
    else:
        config = evaluate.predict_config(options, evaluate.model_factory(options))
    pipeline = beam.Pipeline(options=options)
    evaluate.build_pipeline(pipeline, options, config, mapping)
    pipeline.run()


def launch(argv: Sequence[str]) -> Any:
    """Run (or, under the flex template launcher, stage) one pipeline. Returns its summary
    where the pipeline gives one."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

    from pipelines import backfill, evaluate, repredict, stream

    name, rest = split_pipeline(argv)
    flags = translate(rest)
    options = PipelineOptions(flags)
    std = options.view_as(StandardOptions)
    if not std.runner:
        std.runner = "DataflowRunner"
    graph_only = bool(options.view_as(GoogleCloudOptions).template_location)
    if graph_only:
        for module in (backfill, repredict, evaluate):
            module.counter_totals = _without_metrics(module.counter_totals)  # type: ignore[attr-defined]
    log.info("productlens %s on %s%s", name, std.runner, " (job graph only)" if graph_only else "")
    if name == "backfill":
        opts = options.view_as(backfill.BackfillOptions)
        if graph_only and (opts.input or "").startswith(backfill.KAFKA_PREFIX):
            raise ValueError(
                "a backfill from kafka:TOPIC commits its offsets after the job finished, which a flex "
                "template launch cannot wait for: read Kafka with --pipeline=stream, or run the backfill "
                "from a snapshot (gs://...jsonl or .parquet)"
            )
        return backfill.run(opts)
    if name == "stream":
        return stream.run(options)
    if name == "repredict":
        return repredict.run(options.view_as(repredict.RepredictOptions))
    if graph_only:
        return _evaluate_graph(options)
    return evaluate.run(options)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO)
    launch(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
