"""`productlens dataset build`: labelled catalogs -> deduplicated, label-checked,
uniformly sampled, leak-free train/validation/test Parquet, with the numbers for the card.

Order of work, and why:
1. read every input; bad rows become counted problems (the card lists them);
2. resolve each merchant label against the taxonomy (exact / corrected / other version /
   other taxonomy / unknown / none): only labels that name a category of the loaded
   version can train a classifier of that version;
3. dedupe by content hash (what the model sees), so one text is never in two splits and
   conflicting labels for the same content are found and counted;
4. vetted review labels override; otherwise a judge confirms, replaces or flags;
5. attribute consensus: a value survives when k of the n sources that spoke agree;
6. cap each category (uniform sampling): the real distribution is skewed (one store is
   mostly T-shirts), and a classifier trained on it learns the prior, not the product;
7. split by content hash or by store, assigning whole groups so nothing leaks.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taxonomy.corrector import CategoryCorrector
from taxonomy.mapping import CategoryMapping
from taxonomy.model import Category, Taxonomy, normalise_key
from taxonomy.values import ValueNormaliser
from training.dataset.judge import DEFAULT_REPLACE_THRESHOLD, Judge, decide
from training.dataset.schema import PARQUET_SCHEMA, SPLITS
from training.dataset.sources import LabelledRecord, ModelOpinion, Problem, VettedLabel
from transforms.records import Product, VariantOption, content_hash

__all__ = [
    "BuildConfig",
    "BuildInputs",
    "BuildResult",
    "Row",
    "resolve_label",
    "record_hash",
    "consensus",
    "cap_per_category",
    "skew",
    "assign_splits",
    "annotation_sample",
    "build_dataset",
    "write_outputs",
]

LABEL_RESOLUTIONS = ("exact", "corrected", "other_version", "other_taxonomy", "unknown", "no_label")
USABLE = ("exact", "corrected", "other_version")


class BuildConfig(BaseModel):
    model_config = ConfigDict(frozen=True)
    cap_per_category: int | None = Field(
        default=200, ge=1, description="At most this many products per category (uniform sampling); None: no cap."
    )
    consensus_k: int | None = Field(
        default=None, ge=1, description="Keep an attribute value named by at least k sources; None: all (intersection)."
    )
    split: tuple[float, float, float] = Field(default=(0.8, 0.1, 0.1), description="train/validation/test fractions.")
    split_by_store: bool = Field(default=False, description="Whole stores go to one split (no store in two).")
    seed: int = Field(default=13, description="Seed of sampling and splits: same inputs and seed, same dataset.")
    annotation_sample: int = Field(default=50, ge=0, description="Products per vertical for human annotation.")
    replace_threshold: float = Field(
        default=DEFAULT_REPLACE_THRESHOLD, ge=0.0, le=1.0, description="Judge probability needed to replace a label."
    )

    @field_validator("split")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(x < 0 for x in v) or not math.isclose(sum(v), 1.0, abs_tol=1e-6) or v[0] <= 0:
            raise ValueError(f"split fractions must be >= 0, train > 0, and sum to 1, got {v}")
        return v


@dataclass
class BuildInputs:
    records: list[LabelledRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)  # {path, kind, records, problems}
    predictions: list[dict[str, ModelOpinion]] = field(default_factory=list)
    reviewed: list[VettedLabel] = field(default_factory=list)


@dataclass
class Row:
    record: LabelledRecord
    content_hash: str
    category: Category
    resolution: str
    label_source: str = "merchant"
    label_status: str = "unreviewed"
    label_reason: str = ""
    attributes: dict[str, list[str]] = field(default_factory=dict)
    split: str = ""

    def to_dict(self) -> dict[str, Any]:
        r = self.record
        return {
            "product_id": r.product_id,
            "store": r.store,
            "content_hash": self.content_hash,
            "title": r.title,
            "description": r.description,
            "product_type": r.product_type,
            "vendor": r.vendor,
            "tags": list(r.tags),
            "image_urls": list(r.image_urls),
            "category_id": self.category.id,
            "category_full_name": self.category.full_name,
            "vertical": self.category.vertical,
            "label_source": self.label_source,
            "label_status": self.label_status,
            "label_reason": self.label_reason,
            "raw_label": r.raw_label,
            "attributes": json.dumps(self.attributes, sort_keys=True, ensure_ascii=False),
            "source": r.source,
            "split": self.split,
        }


@dataclass
class BuildResult:
    rows: list[Row]
    stats: dict[str, Any]


# -- labels ------------------------------------------------------------------------------


def resolve_label(
    record: LabelledRecord,
    taxonomy: Taxonomy,
    corrector: CategoryCorrector,
    mapping: CategoryMapping | None = None,
) -> tuple[Category | None, str, str]:
    """(category, resolution, reason). Never guesses past the corrector's threshold."""
    raw = record.raw_label.strip()
    if not raw:
        return None, "no_label", "the record has no category label"
    if mapping is not None:
        mapped = mapping.resolve(raw, taxonomy)
        if mapped is not None:
            return mapped, "other_version", f"mapped by the version mapping to {mapped.full_name}"
    if record.label_taxonomy != "shopify":
        return None, "other_taxonomy", f"a {record.label_taxonomy} taxonomy label and no mapping for it"
    exact = taxonomy.by_full_name(raw, localized=False) or taxonomy.get(raw)
    if exact is not None:
        return exact, "exact", "exact taxonomy path or id"
    fixed = corrector.correct(raw)
    if fixed.category is None:
        return None, "unknown", f"not a category of taxonomy {taxonomy.version} (corrector: unresolved)"
    segments = [s.strip() for s in raw.split(">") if s.strip()]
    # A full path whose leaf exists under other parents: the category moved between
    # versions (the 2023 exports carry older paths), not a typo.
    if len(segments) >= 2 and normalise_key(segments[-1]) == normalise_key(fixed.category.name):
        return (
            fixed.category,
            "other_version",
            f"path of another taxonomy version; leaf found at {fixed.category.full_name}",
        )
    return (
        fixed.category,
        "corrected",
        f"corrected ({fixed.method}, score {fixed.score:.2f}) to {fixed.category.full_name}",
    )


def record_hash(record: LabelledRecord) -> str:
    """The product core's content hash, so the dataset dedupes exactly as serving caches."""
    product = Product(
        title=record.title[:1000],
        description_html=record.description[:200_000],
        product_type=record.product_type[:1000],
        vendor=record.vendor[:1000],
        tags=tuple(t[:1000] for t in record.tags[:250]),
        image_urls=tuple(record.image_urls[:20]),
        variant_options=tuple(VariantOption(name=k, values=v) for k, v in record.variant_options[:3] if k),
    )
    return content_hash(product)


# -- attributes --------------------------------------------------------------------------


def _merchant_attributes(
    record: LabelledRecord, category: Category, taxonomy: Taxonomy, normaliser: ValueNormaliser, counts: Counter[str]
) -> dict[str, set[str]]:
    """Merchant metafield handles and values ("male", "navy-blazer") -> taxonomy value names."""
    from transforms.evaluation.metrics import gold_attribute_candidates, normalise_gold_value

    out: dict[str, set[str]] = defaultdict(set)
    for handle, values in record.attributes:
        candidates = gold_attribute_candidates(taxonomy, normaliser, handle, category, None)
        for raw in values:
            counts["merchant_values"] += 1
            hit = normalise_gold_value(normaliser, candidates, raw) if candidates else None
            if hit is None:
                counts["merchant_values_unmappable"] += 1
                continue
            attribute, ids = hit
            for vid in ids:
                value = taxonomy.value(vid)
                if value is not None:
                    out[attribute.handle].add(value.name)
    return dict(out)


def consensus(opinions: Sequence[dict[str, set[str]]], k: int | None = None) -> tuple[dict[str, list[str]], int]:
    """Values named by at least k of the n sources that gave attributes (k=None: all n).

    Values compare case-insensitively; the first spelling seen is kept. Returns the kept
    attributes and how many distinct values were dropped for lack of agreement.
    """
    n = len(opinions)
    if n == 0:
        return {}, 0
    need = n if k is None else k
    votes: Counter[tuple[str, str]] = Counter()
    spelling: dict[tuple[str, str], str] = {}
    for op in opinions:
        seen = {(h, v.casefold()) for h, vs in op.items() for v in vs}
        for h, vs in op.items():
            for v in vs:
                spelling.setdefault((h, v.casefold()), v)
        votes.update(seen)
    kept: dict[str, list[str]] = defaultdict(list)
    dropped = 0
    for key, count in sorted(votes.items()):
        if count >= need:
            kept[key[0]].append(spelling[key])
        else:
            dropped += 1
    return dict(kept), dropped


# -- sampling and skew -------------------------------------------------------------------


def skew(counts: Counter[str] | dict[str, int]) -> dict[str, Any]:
    """Top-category share, Gini coefficient and normalised entropy of a category histogram."""
    values = sorted(v for v in counts.values() if v > 0)
    total = sum(values)
    n = len(values)
    if total == 0:
        return {"products": 0, "categories": 0, "top_share": None, "gini": None, "normalised_entropy": None}
    # Gini over categories: 0 when every category has as many products, near 1 when one has all.
    cum = sum((i + 1) * v for i, v in enumerate(values))
    gini = (2 * cum) / (n * total) - (n + 1) / n if n > 1 else 0.0
    entropy = -sum((v / total) * math.log(v / total) for v in values)
    return {
        "products": total,
        "categories": n,
        "top_share": round(values[-1] / total, 4),
        "gini": round(gini, 4),
        "normalised_entropy": round(entropy / math.log(n), 4) if n > 1 else 1.0,
    }


def cap_per_category(rows: Sequence[Row], cap: int | None, seed: int) -> list[Row]:
    """At most `cap` rows per category, drawn uniformly at random (seeded, stable)."""
    if cap is None:
        return list(rows)
    by_cat: dict[str, list[Row]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r.content_hash):
        by_cat[r.category.id].append(r)
    rng = random.Random(seed)
    out: list[Row] = []
    for cid in sorted(by_cat):
        group = by_cat[cid]
        out.extend(group if len(group) <= cap else rng.sample(group, cap))
    return out


def assign_splits(
    rows: Sequence[Row], fractions: tuple[float, float, float], by_store: bool, seed: int
) -> dict[str, int]:
    """Set `row.split`. Whole groups (content hash, or store with `by_store`) go to one
    split, so no group is in two; groups are shuffled with the seed and each goes to the
    split furthest below its target share."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[r.record.store if by_store else r.content_hash].append(r)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    total = len(rows)
    filled = dict.fromkeys(SPLITS, 0)
    # Seed every wanted split with one group first (train, then test, then validation):
    # with few groups (two stores) filling by deficit alone would put them all in train.
    wanted = [s for s in ("train", "test", "validation") if fractions[SPLITS.index(s)] > 0]
    for split, key in zip(wanted, list(keys)):
        for r in groups[key]:
            r.split = split
        filled[split] += len(groups[key])
        keys.remove(key)
    for key in keys:
        deficits = [(fractions[i] * total - filled[s], -i) for i, s in enumerate(SPLITS)]
        split = SPLITS[-max(deficits)[1]]
        for r in groups[key]:
            r.split = split
        filled[split] += len(groups[key])
    return filled


def annotation_sample(rows: Sequence[Row], per_vertical: int, seed: int) -> list[Row]:
    by_vertical: dict[str, list[Row]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r.content_hash):
        by_vertical[r.category.vertical].append(r)
    rng = random.Random(seed + 1)
    out: list[Row] = []
    for v in sorted(by_vertical):
        group = by_vertical[v]
        out.extend(group if len(group) <= per_vertical else rng.sample(group, per_vertical))
    return out


# -- the build ---------------------------------------------------------------------------


def _example(problem: Problem) -> dict[str, Any]:
    return {"source": problem.source, "line": problem.line, "reason": problem.reason}


def build_dataset(
    inputs: BuildInputs,
    taxonomy: Taxonomy,
    config: BuildConfig,
    *,
    judge: Judge | None = None,
    mapping: CategoryMapping | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> BuildResult:
    def step(what: str, done: int, total: int) -> None:
        if progress is not None:
            progress(what, done, total)

    # The same file may be read twice (as a predictions source and as the judge): count once.
    problems = list(dict.fromkeys(inputs.problems))
    corrector = CategoryCorrector(taxonomy)
    normaliser = ValueNormaliser(taxonomy)
    resolutions: Counter[str] = Counter()
    excluded_examples: dict[str, list[dict[str, str]]] = defaultdict(list)

    # 1-2. resolve labels and hash content.
    resolved: list[tuple[LabelledRecord, str, Category, str, str]] = []
    total = len(inputs.records)
    for i, rec in enumerate(inputs.records):
        step("resolving labels", i, total)
        try:
            h = record_hash(rec)
        except (ValidationError, ValueError) as exc:
            problems.append(Problem("malformed_row", rec.source, 0, f"{rec.product_id}: {str(exc).splitlines()[0]}"))
            continue
        category, how, reason = resolve_label(rec, taxonomy, corrector, mapping)
        resolutions[how] += 1
        if category is None:
            if len(excluded_examples[how]) < 5:
                excluded_examples[how].append({"product_id": rec.product_id, "label": rec.raw_label[:200]})
            continue
        resolved.append((rec, h, category, how, reason))
    step("resolving labels", total, total)

    # 3. dedupe by content hash; count conflicting labels for one content.
    groups: dict[str, list[tuple[LabelledRecord, str, Category, str, str]]] = defaultdict(list)
    for item in resolved:
        groups[item[1]].append(item)
    rows: list[Row] = []
    conflicts: list[dict[str, Any]] = []
    duplicates = 0
    for h, items in groups.items():
        duplicates += len(items) - 1
        votes = Counter(it[2].id for it in items)
        if len(votes) > 1:
            best = max(votes.items(), key=lambda kv: (kv[1], -[it[2].id for it in items].index(kv[0])))[0]
            chosen = next(it for it in items if it[2].id == best)
            note = "conflicting labels for the same content: " + " | ".join(
                f"{taxonomy.categories[c].full_name} x{n}" for c, n in votes.most_common()
            )
            conflicts.append({"content_hash": h, "labels": dict(votes), "kept": best})
        else:
            chosen, note = items[0], ""
        rec, _, category, how, reason = chosen
        row = Row(rec, h, category, how, label_reason=reason)
        row.label_reason = f"{reason}; {note}" if note else reason
        if note:
            row.label_status = "flagged"
        rows.append(row)

    # 4. vetted labels override; the judge decides the rest.
    by_product = {r.record.product_id: r for r in rows}
    reviewed_applied = 0
    reviewed_unmatched = 0
    reviewed_bad_category = 0
    vetted_ids: set[str] = set()
    # A vetted label may name the prediction it vetted; predictions files say whose it is.
    product_of_prediction = {
        op.prediction_id: op.product_id for preds in inputs.predictions for op in preds.values() if op.prediction_id
    }
    for v in inputs.reviewed:
        row = by_product.get(v.product_id or "") or by_product.get(product_of_prediction.get(v.prediction_id or "", ""))
        if row is None:
            reviewed_unmatched += 1
            continue
        cat = taxonomy.get(v.category_id) or taxonomy.by_full_name(v.category_id, localized=False)
        if cat is None:
            reviewed_bad_category += 1
            continue
        row.category, row.label_source, row.label_status = cat, "reviewed", "confirmed"
        row.label_reason = f"vetted by {v.vetted_by}"
        row.attributes = {h: list(vs) for h, vs in v.attributes.items()}
        vetted_ids.add(row.record.product_id)
        reviewed_applied += 1

    statuses_before_judge = Counter(r.label_status for r in rows)
    if judge is not None:
        todo = [r for r in rows if r.record.product_id not in vetted_ids]
        answers = []
        for start in range(0, len(todo), 256):
            step(f"judge ({judge.name})", start, len(todo))
            answers.extend(judge.answer([r.record for r in todo[start : start + 256]]))
        step(f"judge ({judge.name})", len(todo), len(todo))
        for r, ans in zip(todo, answers):
            conflicted = r.label_status == "flagged"
            v = decide(taxonomy, r.category, ans, judge.name, config.replace_threshold)
            r.category, r.label_source, r.label_status = v.category, v.label_source, v.status
            r.label_reason = f"{r.label_reason}; {v.reason}"
            if conflicted and v.status == "confirmed":
                r.label_status = "confirmed"  # the judge settled the conflict

    # 5. attribute consensus over the merchant and each predictions file.
    attr_counts: Counter[str] = Counter()
    for r in rows:
        if r.record.product_id in vetted_ids:
            continue
        opinions: list[dict[str, set[str]]] = []
        merchant = _merchant_attributes(r.record, r.category, taxonomy, normaliser, attr_counts)
        if r.record.attributes:
            opinions.append(merchant)
        for preds in inputs.predictions:
            op = preds.get(r.record.product_id)
            if op is not None:
                opinions.append({h: set(vs) for h, vs in op.attributes})
        kept, dropped = consensus(opinions, config.consensus_k)
        # Only handles this category has: a value of another category's attribute is noise.
        own = set(r.category.attribute_handles)
        outside = {h for h in kept if h not in own}
        attr_counts["values_outside_category"] += sum(len(kept[h]) for h in outside)
        r.attributes = {h: vs for h, vs in kept.items() if h in own}
        attr_counts["values_dropped_by_consensus"] += dropped
        attr_counts["values_kept"] += sum(len(v) for v in r.attributes.values())
        attr_counts["products_with_sources"] += bool(opinions)

    # 6. uniform sampling with a cap per category.
    before = Counter(r.category.full_name for r in rows)
    sampled = cap_per_category(rows, config.cap_per_category, config.seed)
    after = Counter(r.category.full_name for r in sampled)

    # 7. leak-free splits.
    split_sizes = assign_splits(sampled, config.split, config.split_by_store, config.seed)
    sampled.sort(key=lambda r: (SPLITS.index(r.split), r.content_hash))

    problem_counts = Counter(p.kind for p in problems)
    stats: dict[str, Any] = {
        "taxonomy_version": taxonomy.version,
        "config": config.model_dump(mode="json"),
        "judge": judge.name if judge is not None else None,
        "sources": inputs.sources,
        "records_read": len(inputs.records),
        "bad_input": {
            "malformed_rows": problem_counts.get("malformed_row", 0),
            "malformed_predictions": problem_counts.get("malformed_prediction", 0),
            "malformed_reviews": problem_counts.get("malformed_review", 0),
            "unreadable_files": problem_counts.get("unreadable_file", 0),
            "empty_inputs": problem_counts.get("empty_input", 0),
            "no_label": resolutions.get("no_label", 0),
            "unknown_categories": resolutions.get("unknown", 0),
            "other_taxonomy_labels": resolutions.get("other_taxonomy", 0),
            "other_version_labels": resolutions.get("other_version", 0),
            "corrected_labels": resolutions.get("corrected", 0),
            "conflicting_labels": len(conflicts),
            "duplicates_removed": duplicates,
            "categories_with_one_example": sum(1 for n in after.values() if n == 1),
            "reviewed_unmatched": reviewed_unmatched,
            "reviewed_unknown_category": reviewed_bad_category,
        },
        "problem_examples": [_example(p) for p in problems[:50]],
        "excluded_label_examples": dict(excluded_examples),
        "conflict_examples": conflicts[:20],
        "label_resolution": {k: resolutions.get(k, 0) for k in LABEL_RESOLUTIONS},
        "label_status": dict(Counter(r.label_status for r in sampled)),
        "label_status_before_judge": dict(statuses_before_judge),
        "label_status_all_rows": dict(Counter(r.label_status for r in rows)),
        "reviewed_applied": reviewed_applied,
        "attributes": dict(attr_counts),
        "deduplicated_products": len(rows),
        "sampled_products": len(sampled),
        "skew_before": skew(before),
        "skew_after": skew(after),
        "categories_before": dict(before.most_common()),
        "categories_after": dict(after.most_common()),
        "verticals_after": dict(Counter(r.category.vertical for r in sampled).most_common()),
        "splits": split_sizes,
        "split_by": "store" if config.split_by_store else "content_hash",
        # A wanted split left empty (fewer groups than splits) is said, not hidden.
        "empty_splits": [s for i, s in enumerate(SPLITS) if config.split[i] > 0 and not split_sizes[s]],
        "stores_by_split": {s: sorted({r.record.store for r in sampled if r.split == s}) for s in SPLITS},
    }
    return BuildResult(sampled, stats)


def write_outputs(result: BuildResult, output: Path, config: BuildConfig) -> dict[str, Path]:
    """train/validation/test Parquet, annotation_sample.csv, stats.json, dataset_card.md."""
    from training.dataset.card import render_card

    output.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for split in SPLITS:
        dicts = [r.to_dict() for r in result.rows if r.split == split]
        table = pa.Table.from_pylist(dicts, schema=PARQUET_SCHEMA)
        path = output / f"{split}.parquet"
        pq.write_table(table, path)
        written[split] = path
    sample = annotation_sample(result.rows, config.annotation_sample, config.seed)
    path = output / "annotation_sample.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "id",
                "content_hash",
                "vertical",
                "title",
                "category_id",
                "category_full_name",
                "label_status",
                "label_source",
                "verdict",
                "note",
            ]
        )
        for r in sample:
            w.writerow(
                [
                    r.record.product_id,
                    r.content_hash,
                    r.category.vertical,
                    r.record.title,
                    r.category.id,
                    r.category.full_name,
                    r.label_status,
                    r.label_source,
                    "",
                    "",
                ]
            )
    written["annotation_sample"] = path
    result.stats["annotation_sample"] = {"products": len(sample), "per_vertical": config.annotation_sample}
    path = output / "stats.json"
    path.write_text(json.dumps(result.stats, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    written["stats"] = path
    path = output / "dataset_card.md"
    path.write_text(render_card(result.stats))
    written["card"] = path
    return written
