"""Generate deploy/dataflow/metadata.json, the flex template's parameter spec, from the
settings models of `transforms/config.py` (the same source as the pipeline flags and
docs/CONFIGURATION.md), so the template never drifts from the pipelines.

    python deploy/dataflow/make_metadata.py           # rewrite metadata.json
    python deploy/dataflow/make_metadata.py --check   # exit 1 if metadata.json is stale

One parameter per pipeline option of backfill, stream, repredict and evaluate, plus
`pipeline`, which picks the pipeline (deploy/dataflow/launcher.py). Each option is a child
of `pipeline` (parentName / parentTriggerValues) for the pipelines that read it, so the
console shows only the relevant ones. Types: int and float -> NUMBER with a regex, bool ->
BOOLEAN, a Literal -> ENUM, a list -> TEXT of comma-separated items, str -> TEXT or the GCS
type of the path. Bounds, defaults and meaning go into the help text, from the field. No
`defaultValue`: an option left out keeps the pipeline's own default, as on a command line.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # launcher.py beside this file
if __package__ in (None, ""):
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from launcher import GROUP_PIPELINES, LIST_SEPARATOR, PIPELINES  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402

from transforms.config import OPTION_GROUPS, _bounds, _default, cli_names  # noqa: E402

HERE = Path(__file__).resolve().parent
METADATA = HERE / "metadata.json"

# Paths that are always GCS on Dataflow (a kafka:TOPIC alternative keeps a field TEXT).
GCS_TYPES = {
    "taxonomy": "GCS_READ_FOLDER",
    "model_dir": "GCS_READ_FOLDER",
    "image_base_dir": "GCS_READ_FOLDER",
    "catalog": "GCS_READ_FILE",
    "golden": "GCS_READ_FILE",
    "mapping": "GCS_READ_FILE",
    "predictions": "GCS_READ_FILE",
    "out": "GCS_WRITE_FOLDER",
}

INT_RE = "^-?[0-9]+$"
FLOAT_RE = "^-?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][-+]?[0-9]+)?$"
BOOL_RE = "^(true|false)$"


def _scalar(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _label(name: str) -> str:
    text = name.replace("_s", " (s)") if name.endswith("_s") else name
    return text.replace("_", " ").capitalize()


def parameter(name: str, field: FieldInfo, group: str) -> dict[str, Any]:
    annotation = _scalar(field.annotation)
    help_parts = [field.description or ""]
    bounds = _bounds(field)
    param: dict[str, Any] = {"name": name, "label": _label(name)}
    if annotation is bool:
        param["paramType"] = "BOOLEAN"
        regexes = [BOOL_RE]
    elif get_origin(annotation) is Literal:
        choices = [str(c) for c in get_args(annotation)]
        param["paramType"] = "ENUM"
        param["enumOptions"] = [{"value": c, "label": c} for c in choices]
        regexes = ["^(" + "|".join(choices) + ")$"]
        bounds = ""
    elif annotation is int:
        param["paramType"] = "NUMBER"
        regexes = [INT_RE]
    elif annotation is float:
        param["paramType"] = "NUMBER"
        regexes = [FLOAT_RE]
    elif get_origin(annotation) in (list, tuple):
        param["paramType"] = "TEXT"
        regexes = [f"^[^{LIST_SEPARATOR}]+({LIST_SEPARATOR}[^{LIST_SEPARATOR}]+)*$"]
        help_parts.append("Several: separated by commas")
    elif annotation is str:
        param["paramType"] = GCS_TYPES.get(name, "TEXT")
        regexes = ["^.+$"]
    else:  # pragma: no cover - pipelines/options.py refuses such a field too
        raise TypeError(f"{name}: no template type for {field.annotation}")
    if bounds:
        help_parts.append(f"Bounds: {bounds.replace('`', '')}")
    default = _default(field).replace("`", "")
    help_parts.append(f"Default: {default}")
    cli = cli_names(field)
    if cli:
        help_parts.append(f"productlens: {', '.join(cli)}")
    param["helpText"] = ". ".join(p.rstrip(".") for p in help_parts if p) + "."
    param["isOptional"] = True
    param["regexes"] = regexes
    param["groupName"] = group
    param["parentName"] = "pipeline"
    param["parentTriggerValues"] = list(GROUP_PIPELINES[group])
    return param


def metadata() -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": "pipeline",
            "label": "Pipeline",
            "helpText": "Which productlens pipeline to run: backfill (a catalog snapshot or a bounded Kafka "
            "read -> predictions), stream (Kafka product-events -> product-predictions, runs until drained), "
            "repredict (the stale products of a catalog snapshot against the prediction store), evaluate "
            "(a golden set -> metrics.json).",
            "isOptional": False,
            "regexes": ["^(" + "|".join(PIPELINES) + ")$"],
            "paramType": "ENUM",
            "enumOptions": [{"value": p, "label": p} for p in PIPELINES],
        }
    ]
    seen: set[str] = {"pipeline"}
    for model, group in OPTION_GROUPS:
        for name, field in model.model_fields.items():
            if name in seen:
                raise ValueError(f"option {name} is declared twice: template parameters must be unique")
            seen.add(name)
            params.append(parameter(name, field, group))
    return {
        "name": "productlens",
        "description": "productlens: classify e-commerce products into the Shopify product taxonomy with a "
        "model served by Triton (backfill, stream, repredict, evaluate). Parameters are the pipeline options "
        "of docs/CONFIGURATION.md; `pipeline` picks the pipeline.",
        "parameters": params,
    }


def render() -> str:
    return json.dumps(metadata(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        if not METADATA.exists() or METADATA.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{METADATA} is stale: run python deploy/dataflow/make_metadata.py\n")
            return 1
        return 0
    METADATA.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
