"""Readers for the dataset builder's inputs. Each reader returns records plus the problems
it met; a bad row is counted with its reason, never raised and never dropped silently.

Inputs:
- golden-shaped JSONL (the shape of ../shared/datasets, read by `parse_golden`);
- a Shopify Admin "Export products" CSV, read directly (one product spans several rows
  with the same Handle: variants and extra images);
- predictions JSONL (a backfill's `Prediction` records, or the short shape
  `{product_id, category_id, attributes: {handle: [value names]}}`);
- vetted review labels: `{product_id | prediction_id, category_id, attributes, vetted_by}`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from transforms.evaluation.metrics import GoldenRecordError, parse_golden, store_of

__all__ = [
    "LabelledRecord",
    "Problem",
    "ReadResult",
    "ModelOpinion",
    "VettedLabel",
    "read_labelled_jsonl",
    "read_shopify_csv",
    "read_predictions",
    "read_reviewed",
]

METAFIELD_PREFIX = "product.metafields.shopify."
# Shopify writes list metafields as "a; b" in its export.
_METAFIELD_SPLIT = re.compile(r"\s*;\s*")
_TAG_RE = re.compile(r"<[^>]+>")
# A description can exceed csv's default field limit (128 KiB); past this, a cell is hostile
# (the records model caps text at 200 KB anyway) and the rest of the file is refused.
MAX_CSV_FIELD = 4 * 1024 * 1024
# "Color (product.metafields.shopify.color-pattern)" in current exports, the bare key in older ones.
_METAFIELD_COLUMN = re.compile(r"product\.metafields\.shopify\.([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Problem:
    """A row the builder could not use, with where it was and why (for the card)."""

    kind: str  # malformed_row | empty_input | unreadable_file | ...
    source: str
    line: int
    reason: str


class LabelledRecord(BaseModel):
    """A merchant product with its merchant label, whatever file it came from."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)
    product_id: str = Field(min_length=1, max_length=512)
    store: str = Field(default="unknown", max_length=512)
    title: str = Field(min_length=1, max_length=1000)
    description: str = Field(default="", max_length=200_000)
    product_type: str = Field(default="", max_length=1000)
    vendor: str = Field(default="", max_length=1000)
    tags: tuple[str, ...] = ()
    image_urls: tuple[str, ...] = ()
    variant_options: tuple[tuple[str, tuple[str, ...]], ...] = ()
    raw_label: str = Field(default="", max_length=2000)
    # shopify | google | other, as in the golden files.
    label_taxonomy: str = "shopify"
    # Merchant attribute values as written ({metafield handle: [values]}), before consensus.
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    source: str = ""

    @field_validator("title")
    @classmethod
    def _title_has_text(cls, v: str) -> str:
        if not re.search(r"\w", v):
            raise ValueError("the title has no letters or digits")
        return v


@dataclass
class ReadResult:
    records: list[LabelledRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _first_reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        return f"{where}: {err.get('msg', '')}"[:200]
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            yield number, raw.decode("utf-8", errors="replace")


def read_labelled_jsonl(path: str | Path) -> ReadResult:
    """Golden-shaped JSONL -> records; malformed lines are Problems."""
    path = Path(path)
    out = ReadResult()
    try:
        for number, line in _lines(path):
            if not line.strip():
                continue
            try:
                g = parse_golden(line)
                out.records.append(
                    LabelledRecord(
                        product_id=g.id,
                        store=g.store,
                        title=g.title,
                        description=g.description,
                        product_type=g.product_type,
                        vendor=g.vendor,
                        image_urls=g.image_urls,
                        raw_label=g.gold_category_path,
                        label_taxonomy=g.gold_category_taxonomy,
                        attributes=g.gold_attributes,
                        source=g.source or path.name,
                    )
                )
            except (GoldenRecordError, ValidationError, ValueError) as exc:
                out.problems.append(Problem("malformed_row", path.name, number, _first_reason(exc)))
    except OSError as exc:
        out.problems.append(Problem("unreadable_file", path.name, 0, str(exc)[:200]))
        return out
    if not out.records:
        out.problems.append(Problem("empty_input", path.name, 0, "no usable record in the file"))
    return out


def _col(row: dict[str, str], *names: str) -> str:
    for n in names:
        v = row.get(n)
        if v:
            return v
    return ""


def read_shopify_csv(path: str | Path, store: str | None = None) -> ReadResult:
    """A Shopify "Export products" CSV -> one record per Handle.

    The first row of a Handle carries the product's fields; later rows add variants'
    option values and further images. `store` defaults to the file's stem (an export says
    nothing about which shop it came from).
    """
    path = Path(path)
    out = ReadResult()
    shop = store or path.stem
    products: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    previous_limit = csv.field_size_limit(max(MAX_CSV_FIELD, 131072))
    number = 1
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "Handle" not in reader.fieldnames:
                out.problems.append(Problem("malformed_row", path.name, 1, "no 'Handle' column: not a Shopify export"))
                out.problems.append(Problem("empty_input", path.name, 0, "no usable record in the file"))
                return out
            for number, row in enumerate(reader, 2):
                if None in row:  # more cells than headers: a broken quote or a stray comma
                    out.problems.append(Problem("malformed_row", path.name, number, "more cells than columns"))
                    continue
                handle = (row.get("Handle") or "").strip()
                if not handle:
                    out.problems.append(Problem("malformed_row", path.name, number, "empty Handle"))
                    continue
                p = products.get(handle)
                if p is None:
                    p = products[handle] = {"line": number, "row": row, "images": [], "options": {}, "names": {}}
                    order.append(handle)
                for image in ((row.get("Image Src") or "").strip(), (row.get("Variant Image") or "").strip()):
                    if image and image not in p["images"]:
                        p["images"].append(image)
                for i in (1, 2, 3):
                    name = (row.get(f"Option{i} Name") or "").strip()
                    if name:
                        p["names"][i] = name
                    value = (row.get(f"Option{i} Value") or "").strip()
                    if value and i in p["names"] and p["names"][i] != "Title":  # "Title/Default Title": no options
                        values = p["options"].setdefault(p["names"][i], [])
                        if value not in values:
                            values.append(value)
    except csv.Error as exc:
        # The csv reader cannot resync after a broken quote or an over-long cell: the
        # products read so far are kept, the rest of the file is counted as one bad row.
        out.problems.append(Problem("malformed_row", path.name, number + 1, f"CSV error, rest of file skipped: {exc}"))
    except OSError as exc:
        out.problems.append(Problem("unreadable_file", path.name, 0, str(exc)[:200]))
        return out
    finally:
        csv.field_size_limit(previous_limit)
    for handle in order:
        p = products[handle]
        row = p["row"]
        attributes = []
        for column, cell in row.items():
            found = _METAFIELD_COLUMN.search(column or "")
            if found and cell and cell.strip():
                key = found.group(1)
                values = tuple(v for v in _METAFIELD_SPLIT.split(cell.strip()) if v)
                if values:
                    attributes.append((key, values))
        try:
            out.records.append(
                LabelledRecord(
                    product_id=f"{shop}#{handle}",
                    store=shop,
                    title=row.get("Title") or "",
                    description=_TAG_RE.sub(" ", row.get("Body (HTML)") or ""),
                    product_type=_col(row, "Type", "Product Type", "Custom Product Type"),
                    vendor=row.get("Vendor") or "",
                    tags=tuple(t.strip() for t in (row.get("Tags") or "").split(",") if t.strip()),
                    image_urls=tuple(p["images"]),
                    variant_options=tuple((k, tuple(v)) for k, v in p["options"].items()),
                    raw_label=_col(row, "Product Category", "Product category", "Standard Product Type"),
                    label_taxonomy="shopify",
                    attributes=tuple(sorted(attributes)),
                    source=f"{path.name}#{handle}",
                )
            )
        except ValidationError as exc:
            out.problems.append(Problem("malformed_row", path.name, p["line"], f"{handle}: {_first_reason(exc)}"))
    if not out.records:
        out.problems.append(Problem("empty_input", path.name, 0, "no usable record in the file"))
    return out


@dataclass(frozen=True)
class ModelOpinion:
    """One model's answer for one product: a category and attribute value names."""

    source: str
    product_id: str
    category_id: str | None
    probability: float | None
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Vetted labels may name a prediction rather than a product; this joins them.
    prediction_id: str = ""


def _opinion(data: Any, source: str) -> ModelOpinion:
    if not isinstance(data, dict):
        raise ValueError(f"a prediction must be a JSON object, got {type(data).__name__}")
    pid = data.get("product_id") or data.get("id")
    if not isinstance(pid, (str, int)) or not str(pid).strip():
        raise ValueError("field 'product_id' is missing")
    category = data.get("category")
    cid: Any
    prob: Any
    if isinstance(category, dict):  # a Prediction record
        cid, prob = category.get("id"), category.get("score")
    else:
        cid, prob = data.get("category_id"), data.get("probability", data.get("score"))
    if cid is not None and not isinstance(cid, str):
        raise ValueError("the category id must be a string")
    if prob is not None and (not isinstance(prob, (int, float)) or isinstance(prob, bool) or not 0 <= prob <= 1):
        raise ValueError("the probability must be a number in [0, 1]")
    attrs = data.get("attributes") or {}
    pairs: list[tuple[str, tuple[str, ...]]] = []
    if isinstance(attrs, list):  # Prediction.attributes: [{handle, values: [{id, name}]}]
        for a in attrs:
            if not isinstance(a, dict) or not isinstance(a.get("handle"), str):
                raise ValueError("each attribute must be an object with a handle")
            names = [v.get("name") if isinstance(v, dict) else v for v in a.get("values") or []]
            pairs.append((a["handle"], tuple(str(n) for n in names if n)))
    elif isinstance(attrs, dict):
        for h, vs in attrs.items():
            vs = [vs] if isinstance(vs, str) else vs
            if not isinstance(vs, list):
                raise ValueError(f"attributes[{h!r}] must be a list")
            pairs.append((str(h), tuple(str(v) for v in vs)))
    else:
        raise ValueError("attributes must be an object or a list")
    prediction = data.get("prediction_id")
    return ModelOpinion(
        source,
        str(pid).strip(),
        cid or None,
        float(prob) if prob is not None else None,
        tuple(pairs),
        prediction.strip() if isinstance(prediction, str) else "",
    )


def read_predictions(path: str | Path) -> tuple[dict[str, ModelOpinion], list[Problem]]:
    """Predictions JSONL -> {product id: opinion} (the last line of a product wins, as a
    compacted topic would) and the problems."""
    path = Path(path)
    out: dict[str, ModelOpinion] = {}
    problems: list[Problem] = []
    try:
        for number, line in _lines(path):
            if not line.strip():
                continue
            try:
                op = _opinion(json.loads(line), path.name)
                out[op.product_id] = op
            except (ValueError, TypeError) as exc:
                problems.append(Problem("malformed_prediction", path.name, number, _first_reason(exc)))
    except OSError as exc:
        problems.append(Problem("unreadable_file", path.name, 0, str(exc)[:200]))
    if not out:
        problems.append(Problem("empty_input", path.name, 0, "no usable prediction in the file"))
    return out, problems


class VettedLabel(BaseModel):
    """A label a person vetted in review (the feedback loop adds these; see training/README.md).

    One of product_id / prediction_id names the product; category_id is a taxonomy id
    (GID or short id) or full path; attributes are {handle: [value names]}.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)
    product_id: str | None = Field(default=None, max_length=512)
    prediction_id: str | None = Field(default=None, max_length=128)
    category_id: str = Field(min_length=1, max_length=2000)
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    vetted_by: str = Field(min_length=1, max_length=200)

    @field_validator("attributes", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: [x] if isinstance(x, str) else x for k, x in v.items()}
        return v

    def model_post_init(self, _context: Any) -> None:
        if not (self.product_id or self.prediction_id):
            raise ValueError("a vetted label needs product_id or prediction_id")


def read_reviewed(path: str | Path) -> tuple[list[VettedLabel], list[Problem]]:
    """Vetted labels from JSONL (or CSV with columns product_id, prediction_id, category_id,
    vetted_by and optional attributes as JSON text)."""
    path = Path(path)
    labels: list[VettedLabel] = []
    problems: list[Problem] = []
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
                rows: list[tuple[int, Any]] = [(n, r) for n, r in enumerate(csv.DictReader(fh), 2)]
            for _, r in rows:
                if isinstance(r.get("attributes"), str) and r["attributes"].strip():
                    try:
                        r["attributes"] = json.loads(r["attributes"])
                    except json.JSONDecodeError:
                        pass  # validation reports it
                elif "attributes" in r:
                    r["attributes"] = {}
        else:
            rows = []
            for n, line in _lines(path):
                if line.strip():
                    try:
                        rows.append((n, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        problems.append(Problem("malformed_review", path.name, n, f"not JSON: {exc.msg}"))
        for n, r in rows:
            try:
                labels.append(VettedLabel.model_validate(r))
            except (ValidationError, ValueError) as exc:
                problems.append(Problem("malformed_review", path.name, n, _first_reason(exc)))
    except OSError as exc:
        problems.append(Problem("unreadable_file", path.name, 0, str(exc)[:200]))
    if not labels:
        problems.append(Problem("empty_input", path.name, 0, "no usable vetted label in the file"))
    return labels, problems


__all__ += ["store_of", "METAFIELD_PREFIX"]
