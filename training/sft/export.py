"""Labelled products (Parquet) -> chat JSONL for supervised fine-tuning of the production VLM.

One renderer for training and serving: every prompt is `PromptSet.render` of the prompt set
versioned in `model_repository/product_vlm`, applied to the contract `ModelRequest` that the
pipeline itself builds (`transforms.core.decode` for the product, `classify_request` and
`extract_request` for the two steps). A change to the templates, the limits or the way the
pipeline fills a request therefore changes the training data in the same way, and the
manifest names the prompt set (version and fingerprint) the data was rendered with.

Records, one JSON object a line, in `<split>.jsonl`:

- `prompt`: the raw rendered prompt, exactly what `product_vlm` sends vLLM (`text_input`);
- `completion`: the target answer JSON in the contract's shape, then `<|im_end|>`;
- `messages`: the same as system / user / assistant turns in the typed-part form of
  Hugging Face VLM chat templates (`{"type": "image"}` where the prompt has its image
  slot), for trainers that apply the processor's chat template;
- `images`: the image reference (URL or path), empty for a text-only product;
- `id`, `task`, `product_id`, `split`.

Rows that cannot become an example are counted by reason in the manifest, with a few
product ids each, and the export goes on (issue 13, "Bad input").
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from model_repository.contract import ModelRequest, Task
from model_repository.product_vlm.prompts import DEFAULT_PROMPTS_DIR, IMAGE_PLACEHOLDER, ClassifyMode, PromptSet
from taxonomy.model import Category, Taxonomy
from training.sft.collate import END_OF_TURN
from transforms.core.classify import classify_request
from transforms.core.decode import decode
from transforms.core.extract import extract_request
from transforms.records import DeadLetter, WorkItem

__all__ = [
    "FORMAT",
    "ImageMode",
    "SftExportError",
    "ExportResult",
    "classify_target",
    "export_sft",
    "extract_target",
    "prompt_messages",
    "row_work_item",
]

FORMAT = "productlens-sft/1"
MANIFEST = "manifest.json"
# Product ids kept per skip reason in the manifest: enough to find the rows, bounded.
_SAMPLE_IDS = 5
# Parquet rows decoded at a time: bounded memory on a large training set.
_BATCH_ROWS = 2048
_TURNS = re.compile(
    r"<\|im_start\|>system\n(?P<system>.*?)<\|im_end\|>\n<\|im_start\|>user\n(?P<user>.*?)<\|im_end\|>\n"
    r"<\|im_start\|>assistant\n",
    re.S,
)


class SftExportError(ValueError):
    """The export as a whole cannot run (bad input file, prompt set and taxonomy disagree)."""


class ImageMode(StrEnum):
    URL = "url"  # the product's first image URL as it is; the trainer fetches it
    PATH = "path"  # a local file under the image root, referenced relative to it
    NONE = "none"  # text only: prompts without the image slot


@dataclass
class ExportResult:
    output_dir: Path
    manifest: dict[str, Any]
    skipped: Counter[str] = field(default_factory=Counter)


def row_work_item(row: Mapping[str, Any], index: int) -> WorkItem:
    """The pipeline's WorkItem for a dataset row, made by the pipeline's own decode stage (the
    description goes through the same HTML-to-text as served products). ValueError naming the
    reason when the row is not a valid product."""
    product: dict[str, Any] = {"title": row.get("title") or ""}
    for key in ("product_type", "vendor"):
        if row.get(key) is not None:
            product[key] = row[key]
    if row.get("description") is not None:
        product["description_html"] = row["description"]
    for key in ("tags", "image_urls"):
        value = row.get(key)
        if value is not None:
            product[key] = list(value) if not isinstance(value, str) else value
    options = row.get("variant_options")
    if isinstance(options, str) and options.strip():
        options = json.loads(options)
    if options:
        product["variant_options"] = options
    event = {
        "event_id": f"sft-{index}",
        "type": "create",
        "product_id": str(row.get("product_id") or f"row-{index}"),
        "shop_id": str(row.get("store") or "unknown"),
        "occurred_at": "1970-01-01T00:00:00Z",
        "product": product,
    }
    result = decode(event)
    if not isinstance(result, WorkItem):
        message = result.message if isinstance(result, DeadLetter) else "a delete event"
        raise ValueError(f"invalid_product: {message}")
    return result


def prompt_messages(prompt: str, answer: str) -> list[dict[str, Any]]:
    """The rendered prompt as chat turns plus the assistant answer. The user turn is split at
    the image slot into typed parts, so a chat template puts the image where the prompt has it
    (before the product in extract prompts, after the attributes)."""
    match = _TURNS.fullmatch(prompt)
    if match is None:
        raise SftExportError(
            "the rendered prompt is not one system turn, one user turn and an open assistant turn; "
            "export.prompt_messages must learn the new template shape"
        )
    user: list[dict[str, str]] = []
    pieces = match["user"].split(IMAGE_PLACEHOLDER)
    for i, piece in enumerate(pieces):
        if i:
            user.append({"type": "image"})
        if piece:
            user.append({"type": "text", "text": piece})
    return [
        {"role": "system", "content": match["system"]},
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return value.strip() if isinstance(value, str) else ""


def classify_target(row: Mapping[str, Any], category: Category) -> dict[str, Any]:
    """The classify answer the model should write: the labelled path, certain; the
    descriptions where the data has them (empty strings otherwise)."""
    return {
        "category": category.full_name,
        "confidence": 1.0,
        "simplified_description": _text(row, "simplified_description"),
        "image_description": _text(row, "image_description"),
    }


def extract_target(
    raw: Any, taxonomy: Taxonomy, category: Category, dropped: Counter[str]
) -> dict[str, dict[str, list[str]]] | None:
    """The extract answer: the labelled values that the category allows, in taxonomy order
    and spelling (a target outside the allowed values would teach the model to invent them;
    each one dropped is counted). None when the row has no usable attribute labels."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    labels = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(labels, Mapping):
        raise ValueError("malformed_attributes: not a JSON object of handle -> [values]")
    out: dict[str, list[str]] = {}
    allowed = {a.handle: a for a in taxonomy.attributes_of(category)}
    for handle, values in labels.items():
        attribute = allowed.get(handle)
        if attribute is None:
            dropped["attribute_handle_not_in_category"] += 1
            continue
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, Sequence):
            raise ValueError(f"malformed_attributes: values of {handle!r} are not a list")
        wanted = {str(v).strip().casefold() for v in values}
        chosen = [v.name for v in attribute.values if v.name.casefold() in wanted]
        if len(chosen) < len(wanted):
            dropped["attribute_value_not_allowed"] += len(wanted) - len(chosen)
        if chosen:
            out[handle] = chosen
    if not out:
        return None
    order = list(allowed)
    return {"attributes": {h: out[h] for h in sorted(out, key=order.index)}}


def _resolve_category(row: Mapping[str, Any], taxonomy: Taxonomy) -> Category:
    category_id = row.get("category_id")
    category = taxonomy.get(str(category_id)) if category_id else None
    if category is None and row.get("category_full_name"):
        category = taxonomy.by_full_name(str(row["category_full_name"]), localized=False)
    if category is None:
        if not category_id and not row.get("category_full_name"):
            raise ValueError("no_category: the row has neither category_id nor category_full_name")
        raise ValueError(f"unknown_category: {category_id or row.get('category_full_name')!r} is not in the taxonomy")
    return category


def _image_ref(item: WorkItem, mode: ImageMode, image_root: Path | None) -> str | None:
    """The first image as the trainer will load it, or None (text only): the pipeline also
    sends one image, its first usable one."""
    urls = item.product.image_urls
    if mode is ImageMode.NONE or not urls:
        return None
    url = urls[0]
    if mode is ImageMode.URL:
        return url
    parsed = urlsplit(url)
    if parsed.scheme not in ("", "file") or image_root is None:
        return None
    path = Path(parsed.path if parsed.scheme == "file" else url)
    full = (image_root / path).resolve()
    root = image_root.resolve()
    # Only under the root, as the pipeline reads local images (DESIGN.md "Untrusted input").
    if not full.is_relative_to(root) or not full.is_file():
        return None
    return full.relative_to(root).as_posix()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq  # heavy import only when reading

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - any reader error means the file is unusable
        raise SftExportError(f"{path} is not a readable Parquet file: {exc}") from exc
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
        yield from batch.to_pylist()


def _record(
    task: Task, row_id: str, split: str, prompt: str, answer: dict[str, Any], image: str | None
) -> dict[str, Any]:
    text = json.dumps(answer, ensure_ascii=False)
    return {
        "id": f"{row_id}:{task.value}",
        "task": task.value,
        "product_id": row_id,
        "split": split,
        "images": [image] if image else [],
        "prompt": prompt,
        "completion": text + END_OF_TURN,
        "messages": prompt_messages(prompt, text),
    }


def _examples(
    row: Mapping[str, Any],
    index: int,
    prompt_set: PromptSet,
    taxonomy: Taxonomy,
    tasks: Sequence[Task],
    images: ImageMode,
    image_root: Path | None,
    counts: Counter[str],
) -> list[dict[str, Any]]:
    """A row's examples; ValueError("reason: detail") when the row yields none by fault."""
    item = row_work_item(row, index)
    category = _resolve_category(row, taxonomy)
    row_id = item.event.product_id
    split = _text(row, "split") or "train"
    image = _image_ref(item, images, image_root)
    if images is not ImageMode.NONE and item.product.image_urls and image is None:
        counts["image_not_referenced"] += 1
    out: list[dict[str, Any]] = []
    for task in tasks:
        if task is Task.CLASSIFY:
            # The pipeline's own request: bytes on the wire, read back as the model reads it.
            wire, _ = classify_request(item)
            request = ModelRequest.model_validate_json(wire)
            answer: dict[str, Any] | None = classify_target(row, category)
            if not answer["simplified_description"]:
                counts["classify_without_simplified_description"] += 1
        else:
            if not taxonomy.attributes_of(category):
                counts["extract_category_without_attributes"] += 1  # served without a model call
                continue
            answer = extract_target(row.get("attributes"), taxonomy, category, counts)
            if answer is None:
                counts["extract_without_labels"] += 1
                continue
            request = extract_request(item, taxonomy, category)
        prompt = prompt_set.render(request, has_image=image is not None)
        out.append(_record(task, row_id, split, prompt, answer, image))
    return out


def export_sft(
    data: str | Path,
    output_dir: str | Path,
    taxonomy: Taxonomy,
    *,
    prompts_dir: str | Path = DEFAULT_PROMPTS_DIR,
    tasks: Iterable[Task | str] = (Task.CLASSIFY, Task.EXTRACT),
    images: ImageMode | str = ImageMode.URL,
    image_root: str | Path | None = None,
) -> ExportResult:
    """Write `<split>.jsonl` files and `manifest.json` into `output_dir`. Raises SftExportError
    when the export cannot run at all; a bad row is only counted."""
    data, output = Path(data), Path(output_dir)
    task_list = list(dict.fromkeys(Task(t) for t in tasks))
    if not task_list:
        raise SftExportError("no tasks: give classify, extract or both")
    mode = ImageMode(images)
    root = Path(image_root) if image_root is not None else None
    if mode is ImageMode.PATH and (root is None or not root.is_dir()):
        raise SftExportError("--images path needs --image-root, an existing directory the image paths are under")
    if not data.is_file():
        raise SftExportError(f"{data} does not exist")
    prompt_set = PromptSet.load(prompts_dir)
    if prompt_set.classify_mode is not ClassifyMode.FINE_TUNED:
        raise SftExportError(
            f"the prompt set {prompt_set.directory} is in {prompt_set.classify_mode.value} mode; a fine-tune learns "
            "to name the category itself, so its prompt set must be fine_tuned (see product_vlm/README.md)"
        )
    if prompt_set.taxonomy_version != taxonomy.version:
        raise SftExportError(
            f"the prompt set is for taxonomy {prompt_set.taxonomy_version} but the taxonomy given is "
            f"{taxonomy.version}: a model is trained and served on one taxonomy version"
        )

    output.mkdir(parents=True, exist_ok=True)
    handles: dict[str, Any] = {}
    examples: dict[str, Counter[str]] = defaultdict(Counter)
    counts: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    skipped_ids: dict[str, list[str]] = defaultdict(list)
    rows = 0
    try:
        for index, row in enumerate(_rows(data)):
            rows += 1
            try:
                records = _examples(row, index, prompt_set, taxonomy, task_list, mode, root, counts)
            except SftExportError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad row is counted, never fails the export
                reason, _, _ = str(exc).partition(":")
                reason = reason if re.fullmatch(r"[a-z_]{1,40}", reason) else type(exc).__name__
                skipped[reason] += 1
                if len(skipped_ids[reason]) < _SAMPLE_IDS:
                    skipped_ids[reason].append(str(row.get("product_id") or f"row-{index}"))
                continue
            for record in records:
                split = record["split"]
                if split not in handles:
                    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", split):
                        raise SftExportError(f"split name {split!r} cannot be a file name")
                    handles[split] = (output / f"{split}.jsonl").open("w", encoding="utf-8")
                handles[split].write(json.dumps(record, ensure_ascii=False) + "\n")
                examples[split][record["task"]] += 1
    finally:
        for fh in handles.values():
            fh.close()

    manifest = {
        "format": FORMAT,
        "model_version": prompt_set.model_version,
        "prompt_set": {
            "directory": str(prompt_set.directory),
            "model_version": prompt_set.model_version,
            "taxonomy_version": prompt_set.taxonomy_version,
            "classify_mode": prompt_set.classify_mode.value,
            "fingerprint": prompt_set.fingerprint,
        },
        "taxonomy_version": taxonomy.version,
        "source": {"path": str(data), "sha256": _file_sha256(data), "rows": rows},
        "tasks": [t.value for t in task_list],
        "images": {"mode": mode.value, "root": str(root) if root is not None else None},
        "end_of_turn": END_OF_TURN,
        "image_placeholder": IMAGE_PLACEHOLDER,
        "files": {
            split: {
                "path": f"{split}.jsonl",
                "sha256": _file_sha256(output / f"{split}.jsonl"),
                "examples": dict(sorted(examples[split].items())),
            }
            for split in sorted(handles)
        },
        "counts": {
            "rows": rows,
            "rows_skipped": sum(skipped.values()),
            "examples": sum(sum(c.values()) for c in examples.values()),
            "examples_by_task": dict(sorted(sum(examples.values(), Counter()).items())),
            "notes": dict(sorted(counts.items())),
        },
        "skipped": {reason: {"rows": n, "product_ids": skipped_ids[reason]} for reason, n in sorted(skipped.items())},
    }
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ExportResult(output_dir=output, manifest=manifest, skipped=skipped)
