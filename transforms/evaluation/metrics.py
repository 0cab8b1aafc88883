"""Evaluation: golden products against predictions, as pure metric functions and Beam transforms.

The metrics (definitions in docs/EVALUATION.md):

* category exact match: the predicted category is the gold category (same node; a gold
  label above the leaves is matched only by that same node);
* hierarchical precision / recall / F1 (Kiritchenko et al.): for each product
  α = the predicted category and its ancestors, β = the gold category and its ancestors.
  Shopify's taxonomy has no single root above its 26 verticals: the implicit root is the
  empty path, and that is what is excluded, so the vertical (level 0) counts as a member of
  α and β. Micro-averaged: hP = Σ|α∩β| / Σ|α|, hR = Σ|α∩β| / Σ|β|, hF = 2·hP·hR / (hP + hR)
  (computed as 2·Σ|α∩β| / (Σ|α| + Σ|β|), the same number, defined whenever anything was
  counted). An unresolved prediction, or a product without a prediction (dead-lettered),
  has α = ∅: it adds |β| to the recall denominator and nothing to the precision
  denominator, so it hurts recall, not precision.
* attribute precision / recall / F1 per attribute, micro F1 over all values, with gold
  values normalised to taxonomy values (`taxonomy.values.ValueNormaliser`); gold values
  that map to no taxonomy value are reported as unmappable, never dropped silently;
* correction and unresolved rates from the prediction status; top-N confusion pairs;
* calibration of the category score (`PredictedCategory.score`, the probability that the
  answered node is right): expected calibration error over 15 equal-width bins, where an
  answer is right when its node is on the gold lineage (the gold category or one of its
  ancestors), with a reliability table, overall and per slice; the exact-node version too;
* hP / hR / hF1 against coverage: products sorted by score, the top 10 %, 20 %, … 100 %
  scored like the whole set, with the score threshold of each cut; and a back-off summary
  (answers that backed off from a leaf to an ancestor: how many, from which depth to
  which, their hP / hR);
* gold labels from another taxonomy are mapped through a `taxonomy.mapping.CategoryMapping`
  when given, else counted and shown as unmappable (excluded from the category metrics).

The pure part (`parse_golden`, `resolve_gold_category`, `hierarchical_counts`,
`score_attributes`, `score_product`, `EvalAccumulator`) has no Beam in it; the Beam part
(`ReadGolden`, `ParseGolden`, `ReadPredictions`, `EvaluatePredictions`,
`EvaluationCombineFn`) wires it up. The aggregation is one `CombineFn` whose accumulator
holds only sums and bounded example lists, so it merges in any order to the same result.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.metrics import Metrics
from pydantic import ValidationError

from taxonomy.mapping import CategoryMapping
from taxonomy.model import Attribute, Category, Taxonomy
from taxonomy.values import METAFIELD_KEYS, ValueNormaliser, slug
from transforms.records import Prediction

__all__ = [
    "GOLDEN_FIELDS",
    "GOLD_TAXONOMIES",
    "GOLDEN_EVENT_TIME",
    "UNKNOWN_STORE",
    "GoldenRecordError",
    "GoldenProduct",
    "store_of",
    "parse_golden",
    "golden_event",
    "GoldCategory",
    "UNMAPPABLE_REASONS",
    "resolve_gold_category",
    "lineage_ids",
    "HierarchicalCounts",
    "hierarchical_counts",
    "ratio",
    "f1_from_counts",
    "hierarchical_scores",
    "prf",
    "SCORE_SCALE",
    "CALIBRATION_BINS",
    "COVERAGE_PERCENTS",
    "ScoreHistogram",
    "quantise_score",
    "calibration_bin",
    "merge_histograms",
    "calibration_summary",
    "coverage_curve",
    "gold_attribute_candidates",
    "AttributeOutcome",
    "normalise_gold_value",
    "score_attributes",
    "MISSING",
    "UNRESOLVED_LABEL",
    "MISSING_LABEL",
    "ProductScore",
    "predicted_category",
    "score_product",
    "InputNote",
    "EXAMPLES_KEPT",
    "GroupStats",
    "EvalAccumulator",
    "compute_metrics",
    "INVALID",
    "NOTES",
    "EvaluationCombineFn",
    "ReadGolden",
    "first_lines",
    "ParseGolden",
    "ParsePrediction",
    "ReadPredictions",
    "ScoreProducts",
    "EvaluatePredictions",
]

# -- golden records ---------------------------------------------------------------------

GOLDEN_FIELDS = (
    "id",
    "title",
    "description",
    "image_urls",
    "vendor",
    "product_type",
    "gold_category_path",
    "gold_category_taxonomy",
    "gold_attributes",
    "source",
)
GOLD_TAXONOMIES = ("shopify", "google", "other")
# Fixed so that evaluation events are reproducible; no metric depends on it.
GOLDEN_EVENT_TIME = "1970-01-01T00:00:00+00:00"
UNKNOWN_STORE = "(unknown)"
# The Product record's own limits (transforms/records.py): longer golden fields are cut
# rather than failing validation, so every golden product reaches the model.
_MAX_TITLE = 1000
_MAX_DESCRIPTION = 200_000
_MAX_IMAGES = 50


class GoldenRecordError(ValueError):
    """A golden record is not in the datasets' shape (see ../shared/datasets/README.md)."""


@dataclass(frozen=True)
class GoldenProduct:
    id: str
    title: str
    description: str = ""
    image_urls: tuple[str, ...] = ()
    vendor: str = ""
    product_type: str = ""
    gold_category_path: str = ""
    gold_category_taxonomy: str = "shopify"
    # Sorted (handle, values) pairs: hashable and stable under pickling.
    gold_attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    source: str = ""

    @property
    def store(self) -> str:
        return store_of(self.source)


def store_of(source: str) -> str:
    """`owner/repo/path@commit` -> `owner/repo` (the store a record was exported from)."""
    text = (source or "").split("@", 1)[0].strip().strip("/")
    parts = [p for p in text.split("/") if p]
    if len(parts) >= 2:
        return f"{parts[0]}/{parts[1]}"
    return parts[0] if parts else UNKNOWN_STORE


def _str(data: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise GoldenRecordError(f"field {key!r} is missing")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "id":
        return str(value)
    if not isinstance(value, str):
        raise GoldenRecordError(f"field {key!r} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise GoldenRecordError(f"field {key!r} is empty")
    return value


def parse_golden(data: Any) -> GoldenProduct:
    """A golden record (dict, JSON text or bytes) -> GoldenProduct; GoldenRecordError if malformed."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GoldenRecordError(f"not UTF-8 text (byte {exc.start})") from exc
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise GoldenRecordError(f"not JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise GoldenRecordError(f"a golden record must be a JSON object, got {type(data).__name__}")
    images = data.get("image_urls")
    images = [] if images is None else images
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not all(isinstance(u, str) for u in images):
        raise GoldenRecordError("field 'image_urls' must be a list of strings")
    attributes = data.get("gold_attributes")
    attributes = {} if attributes is None else attributes
    if not isinstance(attributes, dict):
        raise GoldenRecordError("field 'gold_attributes' must be an object {handle: [values]}")
    pairs: list[tuple[str, tuple[str, ...]]] = []
    for handle, values in attributes.items():
        if isinstance(values, (str, int, float)) and not isinstance(values, bool):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, (str, int, float)) for v in values):
            raise GoldenRecordError(f"gold_attributes[{handle!r}] must be a list of strings")
        pairs.append((str(handle), tuple(str(v) for v in values)))
    gold_taxonomy = _str(data, "gold_category_taxonomy").strip().casefold() or "shopify"
    return GoldenProduct(
        id=_str(data, "id", required=True).strip(),
        title=_str(data, "title"),
        description=_str(data, "description"),
        image_urls=tuple(images),
        vendor=_str(data, "vendor"),
        product_type=_str(data, "product_type"),
        gold_category_path=_str(data, "gold_category_path").strip(),
        gold_category_taxonomy=gold_taxonomy,
        gold_attributes=tuple(sorted(pairs)),
        source=_str(data, "source"),
    )


def golden_event(golden: GoldenProduct, *, include_images: bool = True) -> dict[str, Any]:
    """The product event the normal flow predicts from: event and product id = golden id."""
    product: dict[str, Any] = {
        "title": golden.title[:_MAX_TITLE],
        "description_html": golden.description[:_MAX_DESCRIPTION],
        "product_type": golden.product_type,
        "vendor": golden.vendor,
        "image_urls": list(golden.image_urls[:_MAX_IMAGES]) if include_images else [],
    }
    return {
        "event_id": golden.id,
        "type": "create",
        "product_id": golden.id,
        "shop_id": golden.store,
        "occurred_at": GOLDEN_EVENT_TIME,
        "product": product,
    }


# -- gold categories ----------------------------------------------------------------------


@dataclass(frozen=True)
class GoldCategory:
    category: Category | None
    method: str  # "exact" | "mapped" | "unmappable"
    reason: str = ""  # why unmappable (see UNMAPPABLE_REASONS)


UNMAPPABLE_REASONS = {
    "no_gold_category": "the record has no gold category",
    "not_in_taxonomy": "a Shopify path that is not in the loaded taxonomy version",
    "not_in_mapping": "not in the loaded taxonomy version, nor in the mapping file",
    "google_taxonomy": "a Google product taxonomy label and no mapping for it",
    "other_taxonomy": "a label from another taxonomy and no mapping for it",
}


def resolve_gold_category(
    golden: GoldenProduct, taxonomy: Taxonomy, mapping: CategoryMapping | None = None
) -> GoldCategory:
    """The gold label as a category of `taxonomy`: an explicit mapping wins, then an exact
    Shopify path or id; never fuzzy (a guessed gold label would grade the model against a
    guess)."""
    path = golden.gold_category_path
    if not path:
        return GoldCategory(None, "unmappable", "no_gold_category")
    if mapping is not None:
        mapped = mapping.resolve(path, taxonomy)
        if mapped is not None:
            return GoldCategory(mapped, "mapped")
    if golden.gold_category_taxonomy == "shopify":
        found = taxonomy.by_full_name(path) or taxonomy.get(path)
        if found is not None:
            return GoldCategory(found, "exact")
    if mapping is not None and golden.gold_category_taxonomy == "shopify":
        return GoldCategory(None, "unmappable", "not_in_mapping")
    if golden.gold_category_taxonomy == "shopify":
        return GoldCategory(None, "unmappable", "not_in_taxonomy")
    if golden.gold_category_taxonomy == "google":
        return GoldCategory(None, "unmappable", "google_taxonomy")
    return GoldCategory(None, "unmappable", "other_taxonomy")


# -- hierarchical metrics ---------------------------------------------------------------------


def lineage_ids(taxonomy: Taxonomy, category: Category | None) -> frozenset[str]:
    """α or β: the category and all its ancestors, vertical included; ∅ for no category."""
    if category is None:
        return frozenset()
    return frozenset(c.id for c in taxonomy.lineage(category))


@dataclass(frozen=True)
class HierarchicalCounts:
    intersection: int  # |α ∩ β|
    predicted: int  # |α|
    gold: int  # |β|


def hierarchical_counts(taxonomy: Taxonomy, predicted: Category | None, gold: Category) -> HierarchicalCounts:
    alpha = lineage_ids(taxonomy, predicted)
    beta = lineage_ids(taxonomy, gold)
    return HierarchicalCounts(len(alpha & beta), len(alpha), len(beta))


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when nothing was counted (undefined, not 0)."""
    return numerator / denominator if denominator else None


def f1_from_counts(tp: float, fp: float, fn: float) -> float | None:
    """2·tp / (2·tp + fp + fn): the harmonic mean of P and R, also defined (as 0) when one
    of them is undefined but something was counted; None when nothing was."""
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else None


def hierarchical_scores(
    intersection: int, predicted: int, gold: int
) -> tuple[float | None, float | None, float | None]:
    """Micro hP, hR, hF from the sums Σ|α∩β|, Σ|α|, Σ|β|."""
    return (
        ratio(intersection, predicted),
        ratio(intersection, gold),
        f1_from_counts(intersection, predicted - intersection, gold - intersection),
    )


def prf(tp: int, fp: int, fn: int) -> tuple[float | None, float | None, float | None]:
    return ratio(tp, tp + fp), ratio(tp, tp + fn), f1_from_counts(tp, fp, fn)


# -- attributes ----------------------------------------------------------------------------

# Shopify category-metafield keys that hold the values of several taxonomy attributes
# ("color-pattern" holds Color and Pattern values): the reverse of METAFIELD_KEYS.
_METAFIELD_ATTRIBUTES: dict[str, tuple[str, ...]] = {}
for _base, _keys in METAFIELD_KEYS.items():
    for _key in _keys:
        _METAFIELD_ATTRIBUTES[_key] = (*_METAFIELD_ATTRIBUTES.get(_key, ()), _base)


def gold_attribute_candidates(
    taxonomy: Taxonomy,
    normaliser: ValueNormaliser,
    handle: str,
    gold_category: Category | None,
    predicted_category: Category | None,
) -> list[Attribute]:
    """The taxonomy attributes a gold attribute handle may mean, strongest first: the gold
    category's attribute, the predicted category's, then the global attribute of that handle
    (or name) and, for a metafield key such as `color-pattern`, every attribute it holds."""
    found: list[Attribute] = []

    def add(a: Attribute | None) -> None:
        if a is not None and all(a.handle != b.handle for b in found):
            found.append(a)

    key = slug(handle)
    for category in (gold_category, predicted_category):
        if category is not None:
            add(normaliser.attribute_for(category, handle))
    # A bare word that the category qualifies ("Size" for a shoe is shoe-size, "Material" for
    # a shoe footwear-material; "Material" of a garment is its fabric), when exactly one fits.
    for category in (gold_category, predicted_category):
        if category is not None and not found:
            own = taxonomy.attributes_of(category)
            qualified = [a for a in own if a.handle.endswith("-" + key)]
            qualified = qualified or [a for a in own if key == "material" and a.handle == "fabric"]
            if len(qualified) == 1:
                add(qualified[0])
    add(taxonomy.attributes.get(handle) or taxonomy.attributes.get(key))
    for base in _METAFIELD_ATTRIBUTES.get(key, ()):
        add(taxonomy.attributes.get(base))
    if not found:
        named = [a for a in taxonomy.attributes.values() if slug(a.name) == key and not a.extended]
        # "Gender" names target-gender: the one attribute whose handle ends with the word.
        named = named or [a for a in taxonomy.attributes.values() if a.handle.endswith("-" + key) and not a.extended]
        if len(named) == 1:
            add(named[0])
    return found


@dataclass(frozen=True)
class AttributeOutcome:
    # (attribute handle, tp, fp, fn), one row per attribute the gold annotates with at least
    # one mappable value; handles are the taxonomy's (`color`), not the gold file's.
    per_attribute: tuple[tuple[str, int, int, int], ...] = ()
    # (gold handle, raw value) that map to no value of any candidate attribute.
    unmappable_values: tuple[tuple[str, str], ...] = ()
    # (gold handle, number of values) whose handle names no taxonomy attribute at all.
    unmappable_handles: tuple[tuple[str, int], ...] = ()
    # Predicted values on attributes the gold does not annotate: not scored (gold
    # attributes are partial: a merchant fills in a few), counted.
    unannotated_predicted: int = 0

    @property
    def tp(self) -> int:
        return sum(r[1] for r in self.per_attribute)

    @property
    def fp(self) -> int:
        return sum(r[2] for r in self.per_attribute)

    @property
    def fn(self) -> int:
        return sum(r[3] for r in self.per_attribute)


def normalise_gold_value(
    normaliser: ValueNormaliser, candidates: Sequence[Attribute], raw: str
) -> tuple[Attribute, list[str]] | None:
    """The first candidate attribute that takes the whole raw value, with the value ids.

    A gold value may be written as a merchant writes it rather than as a value name: a size
    code ("2xl" is XXL, "4XL" "xxxxl"), a size with its system and width ("9 M US"), a pure
    material ("100% Cotton"), a shade handle ("sky-blue" is Blue), several colours ("Black/White"),
    or a localized or variant word ("rojo", "Men's", "golden"). Each reading is tried in turn;
    a value that none takes stays unmappable, never guessed."""
    import re  # local: only this function's readings need it

    from model_repository.product_baseline.attributes import english_value_words

    text = " ".join(str(raw).split())
    # A range ("16-18") is one value only where the attribute has it by name; the handle rule
    # would read it as "16" with Shopify's de-duplication suffix.
    span = re.fullmatch(r"(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)", text)
    is_range = bool(span) and float(span.group(2)) > float(span.group(1))

    def take(attribute: Attribute, texts: Sequence[str]) -> list[str] | None:
        matches, rejected = normaliser.normalise_many(attribute, texts)
        if is_range and any(m.method != "exact" for m in matches):
            return None
        return [m.value.id for m in matches] if matches and not rejected else None

    readings: list[list[str]] = [[raw]]
    code = re.fullmatch(r"([2-6])\s*x\s*([sl])|(x{2,6})([sl])", text, re.I)
    if code:
        n = int(code.group(1)) if code.group(1) else len(code.group(3))
        letter = (code.group(2) or code.group(4)).casefold()
        readings += [["x" * n + letter], [f"{n}x{letter}"]]
    sized = re.fullmatch(r"(?:(?:us|eu|uk)\s*)?(\d+(?:[.,]5)?)(?:\s*[a-z]{1,2})?(?:\s*(?:us|eu|uk))?", text, re.I)
    if sized and sized.group(1) != text:
        readings.append([sized.group(1).replace(",", ".")])
    pure = re.fullmatch(r"100\s*%\s*(.+)", text)
    if pure:
        readings.append([pure.group(1)])
    readings += [[english] for english in english_value_words(text)]
    if "/" in text:
        readings.append([p for p in text.split("/") if p.strip()])
    for texts in readings:
        for attribute in candidates:
            ids = take(attribute, texts)
            if ids:
                return attribute, ids
    # A shade ("sky-blue", "jet black") is its last word's colour, unless another word is a
    # colour too ("blue-green" names two).
    words = [w for w in re.split(r"[\s_-]+", text) if w]
    for attribute in candidates:
        if len(words) >= 2 and "color" in (attribute.handle, attribute.base_handle):
            ids = take(attribute, [words[-1]])
            if ids and not any(take(attribute, [w]) for w in words[:-1]):
                return attribute, ids
    return None


def score_attributes(
    taxonomy: Taxonomy,
    normaliser: ValueNormaliser,
    gold_attributes: Iterable[tuple[str, Iterable[str]]],
    predicted: Iterable[tuple[str, Iterable[str]]],
    gold_category: Category | None,
    predicted_category: Category | None,
) -> AttributeOutcome:
    """Per-attribute TP/FP/FN of value ids. `predicted` is (handle, value ids) as in a
    Prediction. An attribute the gold annotates but the prediction lacks (also because the
    predicted category does not have it) counts its gold values as misses."""
    gold_sets: dict[str, set[str]] = {}
    unmappable_values: list[tuple[str, str]] = []
    unmappable_handles: list[tuple[str, int]] = []
    for handle, raw_values in gold_attributes:
        values = [str(v) for v in raw_values if str(v).strip()]
        candidates = gold_attribute_candidates(taxonomy, normaliser, handle, gold_category, predicted_category)
        if not candidates:
            unmappable_handles.append((handle, len(values)))
            continue
        for raw in values:
            hit = normalise_gold_value(normaliser, candidates, raw)
            if hit is None:
                unmappable_values.append((handle, raw))
                continue
            attribute, ids = hit
            gold_sets.setdefault(attribute.handle, set()).update(ids)
    predicted_sets: dict[str, set[str]] = {}
    for handle, ids in predicted:
        predicted_sets.setdefault(handle, set()).update(ids)
    rows = []
    for handle in sorted(gold_sets):
        g, p = gold_sets[handle], predicted_sets.get(handle, set())
        rows.append((handle, len(g & p), len(p - g), len(g - p)))
    unannotated = sum(len(ids) for h, ids in predicted_sets.items() if h not in gold_sets)
    return AttributeOutcome(tuple(rows), tuple(unmappable_values), tuple(unmappable_handles), unannotated)


# -- one product --------------------------------------------------------------------------------

MISSING = "missing"  # no prediction for a golden product (it ended as a dead letter)
UNRESOLVED_LABEL = "(unresolved)"
MISSING_LABEL = "(no prediction)"


@dataclass(frozen=True)
class ProductScore:
    product_id: str
    store: str
    status: str  # ok | corrected | unresolved | missing
    gold_label: str  # the gold path as written
    gold_taxonomy: str
    gold_resolution: str  # exact | mapped | unmappable
    unmappable_reason: str = ""
    gold_path: str | None = None  # the resolved gold category's full name
    gold_vertical: str | None = None
    gold_depth: int | None = None  # 1 = a vertical
    predicted_path: str | None = None
    exact: bool = False
    h_intersection: int = 0
    h_predicted: int = 0
    h_gold: int = 0
    attributes: AttributeOutcome | None = None  # None: the gold has no attributes
    predicted_category_unknown: bool = False  # a predicted id the taxonomy lacks
    # The category score the model answered with (None: no category, so nothing to
    # calibrate or rank), whether the answered node is on the gold lineage (the gold or an
    # ancestor: what a calibrated score is the probability of), the answered node's depth
    # (1 = a vertical; None when unknown to the taxonomy) and the depth of the leaf the
    # model backed off from (None: it did not back off).
    score: float | None = None
    on_lineage: bool = False
    predicted_depth: int | None = None
    backed_off_from_depth: int | None = None

    @property
    def scored(self) -> bool:
        return self.gold_path is not None


def predicted_category(taxonomy: Taxonomy, prediction: Prediction | None) -> tuple[Category | None, bool]:
    """The prediction's category in `taxonomy` and whether it named one the taxonomy lacks."""
    if prediction is None or prediction.category is None:
        return None, False
    found = taxonomy.get(prediction.category.id) or taxonomy.by_full_name(prediction.category.full_name)
    return found, found is None


def score_product(
    golden: GoldenProduct,
    prediction: Prediction | None,
    taxonomy: Taxonomy,
    normaliser: ValueNormaliser,
    mapping: CategoryMapping | None = None,
) -> ProductScore:
    gold = resolve_gold_category(golden, taxonomy, mapping)
    pred_cat, unknown = predicted_category(taxonomy, prediction)
    status = MISSING if prediction is None else str(prediction.status.value)
    if prediction is None:
        predicted_label = MISSING_LABEL
    elif pred_cat is None:
        predicted_label = UNRESOLVED_LABEL if prediction.category is None else prediction.category.full_name
    else:
        predicted_label = pred_cat.full_name
    attributes = None
    if golden.gold_attributes:
        predicted_values = (
            [(a.handle, [v.id for v in a.values]) for a in prediction.attributes] if prediction is not None else []
        )
        attributes = score_attributes(
            taxonomy, normaliser, golden.gold_attributes, predicted_values, gold.category, pred_cat
        )
    base = dict(
        product_id=golden.id,
        store=golden.store,
        status=status,
        gold_label=golden.gold_category_path,
        gold_taxonomy=golden.gold_category_taxonomy,
        gold_resolution=gold.method,
        unmappable_reason=gold.reason,
        predicted_path=predicted_label,
        attributes=attributes,
        predicted_category_unknown=unknown,
    )
    if gold.category is None:
        return ProductScore(**base)  # type: ignore[arg-type]
    counts = hierarchical_counts(taxonomy, pred_cat, gold.category)
    answered = prediction.category if prediction is not None else None
    return ProductScore(
        **base,  # type: ignore[arg-type]
        gold_path=gold.category.full_name,
        gold_vertical=gold.category.vertical,
        gold_depth=gold.category.level + 1,
        exact=pred_cat is not None and pred_cat.id == gold.category.id,
        h_intersection=counts.intersection,
        h_predicted=counts.predicted,
        h_gold=counts.gold,
        score=answered.score if answered is not None else None,
        on_lineage=pred_cat is not None and pred_cat.id in lineage_ids(taxonomy, gold.category),
        predicted_depth=pred_cat.level + 1 if pred_cat is not None else None,
        backed_off_from_depth=answered.backed_off_from_depth if answered is not None else None,
    )


# -- aggregation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputNote:
    """Something about the inputs that is not a product score but must be counted:
    an invalid golden line, a prediction with no golden product, a duplicate."""

    kind: str  # golden_invalid | prediction_invalid | prediction_without_gold | duplicate_prediction | duplicate_gold
    detail: str = ""


EXAMPLES_KEPT = 10


def _keep_examples(examples: list[dict[str, str]], more: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The EXAMPLES_KEPT smallest by id: the same examples whatever the merge order."""
    merged = {json.dumps(e, sort_keys=True): e for e in (*examples, *more)}
    return [merged[k] for k in sorted(merged, key=lambda k: (merged[k].get("id", ""), k))][:EXAMPLES_KEPT]


# -- calibration and coverage ---------------------------------------------------------------------

# Scores are kept as integers in units of 1/SCORE_SCALE. The pipeline writes category
# scores rounded to 4 decimals (transforms/core/correct.py), so this loses nothing there,
# and integer sums are exact: accumulators merge in any order to the same bits, which float
# sums would not.
SCORE_SCALE = 10_000
CALIBRATION_BINS = 15
# Coverage levels as whole percents, so that the cut sizes are exact integers.
COVERAGE_PERCENTS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
# A score histogram: quantised score -> [products, exact matches, answers on the gold
# lineage, Σ|α∩β|, Σ|α|, Σ|β|]. At most SCORE_SCALE + 1 keys, so the accumulator stays
# bounded however many products are evaluated, and both the calibration bins and the
# coverage curve are read off it exactly.
ScoreHistogram = dict[int, list[int]]
_COUNT, _EXACT, _LINEAGE, _INTER, _PRED, _GOLD = range(6)


def quantise_score(score: float) -> int:
    """A score in [0, 1] as an integer number of 1/SCORE_SCALE (clamped: a score is a probability)."""
    return min(SCORE_SCALE, max(0, round(score * SCORE_SCALE)))


def calibration_bin(quantised: int, bins: int = CALIBRATION_BINS) -> int:
    """The equal-width bin of a quantised score: bin k holds [k/bins, (k+1)/bins), and the
    last bin also holds 1.0. Integer arithmetic, so a score on an edge has one bin."""
    return min(quantised * bins // SCORE_SCALE, bins - 1)


def _histogram_row(s: ProductScore) -> list[int]:
    return [1, int(s.exact), int(s.on_lineage), s.h_intersection, s.h_predicted, s.h_gold]


def _add_row(into: list[int], row: Sequence[int]) -> None:
    for i, v in enumerate(row):
        into[i] += v


def merge_histograms(mine: ScoreHistogram, theirs: ScoreHistogram) -> None:
    for key, row in theirs.items():
        _add_row(mine.setdefault(key, [0] * 6), row)


def _slice_scores(row: Sequence[int]) -> dict[str, Any]:
    """Accuracy, lineage accuracy and micro hP / hR / hF1 of a summed histogram row."""
    hp, hr, hf = hierarchical_scores(row[_INTER], row[_PRED], row[_GOLD])
    return {
        "n": row[_COUNT],
        "accuracy": ratio(row[_EXACT], row[_COUNT]),
        "lineage_accuracy": ratio(row[_LINEAGE], row[_COUNT]),
        "hierarchical_precision": hp,
        "hierarchical_recall": hr,
        "hierarchical_f1": hf,
    }


def calibration_summary(
    histogram: ScoreHistogram, bins: int = CALIBRATION_BINS, *, reliability: bool = False
) -> dict[str, Any]:
    """Expected calibration error of the category score over `bins` equal-width bins:
    ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b|, with an answer right when its
    node is on the gold lineage (`ece`) or, the stricter reading, the gold node itself
    (`ece_exact`). Also the largest bin gap (`mce`, over non-empty bins) and the Brier
    score (lineage). With `reliability`, the per-bin table. None where nothing was scored."""
    per_bin = [[0, 0, 0, 0] for _ in range(bins)]  # products, Σ quantised score, lineage, exact
    brier = 0
    for q, row in histogram.items():
        b = per_bin[calibration_bin(q, bins)]
        b[0] += row[_COUNT]
        b[1] += q * row[_COUNT]
        b[2] += row[_LINEAGE]
        b[3] += row[_EXACT]
        brier += row[_LINEAGE] * (SCORE_SCALE - q) ** 2 + (row[_COUNT] - row[_LINEAGE]) * q**2
    n = sum(b[0] for b in per_bin)
    # Σ_b |correct_b · SCALE − Σ score_b| / (N · SCALE) equals Σ_b (n_b/N)|acc_b − conf_b|,
    # computed in integers up to the one division.
    gaps = [abs(b[2] * SCORE_SCALE - b[1]) for b in per_bin]
    gaps_exact = [abs(b[3] * SCORE_SCALE - b[1]) for b in per_bin]
    out: dict[str, Any] = {
        "bins": bins,
        "n": n,
        "mean_confidence": ratio(sum(b[1] for b in per_bin), n * SCORE_SCALE),
        "lineage_accuracy": ratio(sum(b[2] for b in per_bin), n),
        "exact_accuracy": ratio(sum(b[3] for b in per_bin), n),
        "ece": ratio(sum(gaps), n * SCORE_SCALE),
        "ece_exact": ratio(sum(gaps_exact), n * SCORE_SCALE),
        "mce": max((g / (b[0] * SCORE_SCALE) for g, b in zip(gaps, per_bin) if b[0]), default=None),
        "brier": ratio(brier, n * SCORE_SCALE**2),
    }
    if reliability:
        out["reliability"] = [
            {
                "bin": k,
                "lower": round(k / bins, 6),
                "upper": round((k + 1) / bins, 6),
                "n": b[0],
                "mean_confidence": ratio(b[1], b[0] * SCORE_SCALE),
                "lineage_accuracy": ratio(b[2], b[0]),
                "exact_accuracy": ratio(b[3], b[0]),
            }
            for k, b in enumerate(per_bin)
        ]
    return out


def coverage_curve(
    histogram: ScoreHistogram, products: int, percents: Sequence[int] = COVERAGE_PERCENTS
) -> list[dict[str, Any]]:
    """Selective scores: for each target coverage c, answer only the products whose score
    is at least the threshold that covers ⌈c · products⌉ of them (ties at the threshold all
    go in, so `coverage` may exceed the target) and score those like a whole set.
    `products` is the denominator: every product with a resolved gold category, so a
    product the model gave no category (unresolved, dead-lettered) is never covered and
    the 100 % row reaches the answered share only."""
    if products <= 0:
        return []
    keys = sorted(histogram, reverse=True)
    covered = [0] * 6
    i = 0
    rows = []
    for pct in percents:
        target = -(-pct * products // 100)  # ceil, in integers
        while i < len(keys) and covered[_COUNT] < target:
            _add_row(covered, histogram[keys[i]])
            i += 1
        rows.append(
            {
                "target": pct / 100,
                "coverage": covered[_COUNT] / products,
                "threshold": keys[i - 1] / SCORE_SCALE if i else None,
                **_slice_scores(covered),
            }
        )
    return rows


@dataclass
class GroupStats:
    """Sums for one slice of the products (all, a store, a vertical, a depth)."""

    n: int = 0
    scored: int = 0  # gold category resolved
    exact: int = 0
    h_intersection: int = 0
    h_predicted: int = 0
    h_gold: int = 0
    predicted: int = 0  # a prediction exists
    corrected: int = 0
    unresolved: int = 0
    missing: int = 0
    attr_products: int = 0
    attr_tp: int = 0
    attr_fp: int = 0
    attr_fn: int = 0
    # Scored products that have a category score, by score: calibration and coverage.
    scores: ScoreHistogram = field(default_factory=dict)

    def add(self, s: ProductScore) -> None:
        self.n += 1
        if s.status == MISSING:
            self.missing += 1
        else:
            self.predicted += 1
            self.corrected += s.status == "corrected"
            self.unresolved += s.status == "unresolved"
        if s.scored:
            self.scored += 1
            self.exact += s.exact
            self.h_intersection += s.h_intersection
            self.h_predicted += s.h_predicted
            self.h_gold += s.h_gold
            if s.score is not None:
                _add_row(self.scores.setdefault(quantise_score(s.score), [0] * 6), _histogram_row(s))
        if s.attributes is not None and s.attributes.per_attribute:
            self.attr_products += 1
            self.attr_tp += s.attributes.tp
            self.attr_fp += s.attributes.fp
            self.attr_fn += s.attributes.fn

    def merge(self, other: GroupStats) -> None:
        for name in self.__dataclass_fields__:
            if name == "scores":
                merge_histograms(self.scores, other.scores)
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        hp, hr, hf = hierarchical_scores(self.h_intersection, self.h_predicted, self.h_gold)
        ap, ar, af = prf(self.attr_tp, self.attr_fp, self.attr_fn)
        return {
            "n": self.n,
            "category": {
                "n": self.scored,
                "exact_matches": self.exact,
                "accuracy": ratio(self.exact, self.scored),
                "hierarchical_precision": hp,
                "hierarchical_recall": hr,
                "hierarchical_f1": hf,
                "sums": {"intersection": self.h_intersection, "predicted": self.h_predicted, "gold": self.h_gold},
                "calibration": calibration_summary(self.scores),
            },
            "attributes": {
                "products": self.attr_products,
                "micro_precision": ap,
                "micro_recall": ar,
                "micro_f1": af,
                "tp": self.attr_tp,
                "fp": self.attr_fp,
                "fn": self.attr_fn,
            },
            "predicted": self.predicted,
            "correction_rate": ratio(self.corrected, self.predicted),
            "unresolved_rate": ratio(self.unresolved, self.predicted),
            "missing_rate": ratio(self.missing, self.n),
        }


@dataclass
class EvalAccumulator:
    overall: GroupStats = field(default_factory=GroupStats)
    per_store: dict[str, GroupStats] = field(default_factory=dict)
    per_vertical: dict[str, GroupStats] = field(default_factory=dict)
    per_depth: dict[int, GroupStats] = field(default_factory=dict)
    per_attribute: dict[str, list[int]] = field(default_factory=dict)  # handle -> [tp, fp, fn, products]
    status: Counter = field(default_factory=Counter)
    gold_resolution: Counter = field(default_factory=Counter)
    confusion: Counter = field(default_factory=Counter)  # (gold path, predicted label) -> count
    unmappable_categories: Counter = field(default_factory=Counter)  # (reason, taxonomy, path)
    unmappable_category_examples: list[dict[str, str]] = field(default_factory=list)
    unmappable_handles: Counter = field(default_factory=Counter)  # handle -> records
    unmappable_handle_values: Counter = field(default_factory=Counter)  # handle -> values
    unmappable_values: Counter = field(default_factory=Counter)  # (gold handle, raw) -> count
    unmappable_value_examples: list[dict[str, str]] = field(default_factory=list)
    unannotated_predicted: int = 0
    predicted_category_unknown: int = 0
    notes: Counter = field(default_factory=Counter)
    note_examples: list[dict[str, str]] = field(default_factory=list)
    # Scored back-off answers: (depth backed off from, depth answered; 0 when the answered
    # id is unknown to the taxonomy) -> a histogram row (products, exact, lineage, sums).
    back_off: dict[tuple[int, int], list[int]] = field(default_factory=dict)

    def add(self, item: ProductScore | InputNote) -> EvalAccumulator:
        if isinstance(item, InputNote):
            self.notes[item.kind] += 1
            if item.detail:
                self.note_examples = _keep_examples(self.note_examples, [{"id": item.detail[:200], "kind": item.kind}])
            return self
        s = item
        self.overall.add(s)
        self.per_store.setdefault(s.store, GroupStats()).add(s)
        self.status[s.status] += 1
        self.gold_resolution[s.gold_resolution] += 1
        self.predicted_category_unknown += s.predicted_category_unknown
        if s.scored:
            assert s.gold_vertical is not None and s.gold_depth is not None and s.gold_path is not None
            self.per_vertical.setdefault(s.gold_vertical, GroupStats()).add(s)
            self.per_depth.setdefault(s.gold_depth, GroupStats()).add(s)
            if not s.exact:
                self.confusion[(s.gold_path, s.predicted_path or UNRESOLVED_LABEL)] += 1
            if s.backed_off_from_depth is not None:
                key = (s.backed_off_from_depth, s.predicted_depth or 0)
                _add_row(self.back_off.setdefault(key, [0] * 6), _histogram_row(s))
        else:
            self.unmappable_categories[(s.unmappable_reason, s.gold_taxonomy, s.gold_label)] += 1
            self.unmappable_category_examples = _keep_examples(
                self.unmappable_category_examples,
                [
                    {
                        "id": s.product_id,
                        "path": s.gold_label,
                        "taxonomy": s.gold_taxonomy,
                        "reason": s.unmappable_reason,
                    }
                ],
            )
        if s.attributes is not None:
            a = s.attributes
            for handle, tp, fp, fn in a.per_attribute:
                row = self.per_attribute.setdefault(handle, [0, 0, 0, 0])
                row[0] += tp
                row[1] += fp
                row[2] += fn
                row[3] += 1
            for handle, count in a.unmappable_handles:
                self.unmappable_handles[handle] += 1
                self.unmappable_handle_values[handle] += count
            for handle, raw in a.unmappable_values:
                self.unmappable_values[(handle, raw)] += 1
            if a.unmappable_values:
                self.unmappable_value_examples = _keep_examples(
                    self.unmappable_value_examples,
                    [{"id": s.product_id, "handle": h, "value": v} for h, v in a.unmappable_values],
                )
            self.unannotated_predicted += a.unannotated_predicted
        return self

    def merge(self, other: EvalAccumulator) -> EvalAccumulator:
        self.overall.merge(other.overall)
        for mine, theirs in (
            (self.per_store, other.per_store),
            (self.per_vertical, other.per_vertical),
            (self.per_depth, other.per_depth),
        ):
            for key, stats in theirs.items():
                mine.setdefault(key, GroupStats()).merge(stats)  # type: ignore[arg-type]
        for handle, row in other.per_attribute.items():
            mine_row = self.per_attribute.setdefault(handle, [0, 0, 0, 0])
            for i, v in enumerate(row):
                mine_row[i] += v
        for name in (
            "status",
            "gold_resolution",
            "confusion",
            "unmappable_categories",
            "unmappable_handles",
            "unmappable_handle_values",
            "unmappable_values",
            "notes",
        ):
            getattr(self, name).update(getattr(other, name))
        self.unmappable_category_examples = _keep_examples(
            self.unmappable_category_examples, other.unmappable_category_examples
        )
        self.unmappable_value_examples = _keep_examples(self.unmappable_value_examples, other.unmappable_value_examples)
        self.note_examples = _keep_examples(self.note_examples, other.note_examples)
        self.unannotated_predicted += other.unannotated_predicted
        self.predicted_category_unknown += other.predicted_category_unknown
        for key, row in other.back_off.items():
            _add_row(self.back_off.setdefault(key, [0] * 6), row)
        return self

    def back_off_summary(self) -> dict[str, Any]:
        """How many scored answers backed off, from which depth to which, and how they and
        the other answers score (accuracy, lineage accuracy, hP / hR / hF1)."""
        backed = [0] * 6
        for row in self.back_off.values():
            _add_row(backed, row)
        answered = [0] * 6  # every scored product with a category score
        for row in self.overall.scores.values():
            _add_row(answered, row)
        others = [a - b for a, b in zip(answered, backed)]
        return {
            **_slice_scores(backed),
            "rate": ratio(backed[_COUNT], answered[_COUNT]),
            "by_depth": [
                {"from_depth": f, "to_depth": t or None, **_slice_scores(row)}
                for (f, t), row in sorted(self.back_off.items())
            ],
            "not_backed_off": _slice_scores(others),
        }

    def to_metrics(self, top_n: int = 20) -> dict[str, Any]:
        """The metrics.json document (without the run-level parts that `run` adds)."""
        o = self.overall.to_dict()
        category = dict(o["category"])
        category["per_vertical"] = {k: self.per_vertical[k].to_dict() for k in sorted(self.per_vertical)}
        category["per_depth"] = {str(k): self.per_depth[k].to_dict() for k in sorted(self.per_depth)}
        category["gold_resolution"] = {k: self.gold_resolution.get(k, 0) for k in ("exact", "mapped", "unmappable")}
        category["confusion_pairs"] = [
            {"gold": g, "predicted": p, "count": c}
            for (g, p), c in sorted(self.confusion.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
        ]
        category["predicted_not_in_taxonomy"] = self.predicted_category_unknown
        category["calibration"] = calibration_summary(self.overall.scores, reliability=True)
        category["coverage"] = coverage_curve(self.overall.scores, self.overall.scored)
        category["back_off"] = self.back_off_summary()
        per_attribute = {}
        for handle in sorted(self.per_attribute):
            tp, fp, fn, products = self.per_attribute[handle]
            p, r, f = prf(tp, fp, fn)
            per_attribute[handle] = {
                "products": products,
                "gold_values": tp + fn,
                "predicted_values": tp + fp,
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": p,
                "recall": r,
                "f1": f,
            }
        attributes = dict(o["attributes"])
        attributes["per_attribute"] = per_attribute
        attributes["unannotated_predicted_values"] = self.unannotated_predicted
        by_reason: Counter = Counter()
        by_path: Counter = Counter()
        for (reason, taxonomy_name, path), c in self.unmappable_categories.items():
            by_reason[reason] += c
            by_path[(taxonomy_name, path)] += c
        values_by_handle: dict[str, dict[str, int]] = {}
        for (handle, raw), c in sorted(self.unmappable_values.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])):
            values_by_handle.setdefault(handle, {})
            if len(values_by_handle[handle]) < 50:
                values_by_handle[handle][raw] = c
        return {
            "n": o["n"],
            "category": category,
            "attributes": attributes,
            "correction_rate": o["correction_rate"],
            "unresolved_rate": o["unresolved_rate"],
            "missing_rate": o["missing_rate"],
            "status_counts": {k: self.status.get(k, 0) for k in ("ok", "corrected", "unresolved", MISSING)},
            "per_store": {k: self.per_store[k].to_dict() for k in sorted(self.per_store)},
            "unmappable": {
                "categories": {
                    "count": sum(by_reason.values()),
                    "by_reason": dict(sorted(by_reason.items())),
                    "by_path": [
                        {"taxonomy": t, "path": p, "count": c}
                        for (t, p), c in sorted(by_path.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
                    ],
                    "examples": self.unmappable_category_examples,
                },
                "attribute_handles": {
                    h: {"records": self.unmappable_handles[h], "values": self.unmappable_handle_values[h]}
                    for h in sorted(self.unmappable_handles)
                },
                "attribute_values": {
                    "count": sum(self.unmappable_values.values()),
                    "by_handle": values_by_handle,
                    "examples": self.unmappable_value_examples,
                },
            },
            "inputs": {
                "golden": o["n"],
                **{
                    k: self.notes.get(k, 0)
                    for k in (
                        "golden_invalid",
                        "duplicate_gold",
                        "prediction_invalid",
                        "prediction_without_gold",
                        "duplicate_prediction",
                    )
                },
                "examples": self.note_examples,
            },
        }


def compute_metrics(items: Iterable[ProductScore | InputNote], top_n: int = 20) -> dict[str, Any]:
    """The metrics of a list of scores, without Beam (tests, notebooks)."""
    acc = EvalAccumulator()
    for item in items:
        acc.add(item)
    return acc.to_metrics(top_n)


# -- Beam ------------------------------------------------------------------------------------------

INVALID = "invalid"
NOTES = "notes"


class EvaluationCombineFn(beam.CombineFn):
    """ProductScore | InputNote -> the metrics dict (one per window)."""

    def __init__(self, top_n: int = 20) -> None:
        self.top_n = top_n

    def create_accumulator(self) -> EvalAccumulator:
        return EvalAccumulator()

    def add_input(self, accumulator: EvalAccumulator, element: ProductScore | InputNote) -> EvalAccumulator:
        return accumulator.add(element)

    def merge_accumulators(self, accumulators: Iterable[EvalAccumulator]) -> EvalAccumulator:
        accumulators = iter(accumulators)
        first = next(accumulators, None) or EvalAccumulator()
        for acc in accumulators:
            first.merge(acc)
        return first

    def extract_output(self, accumulator: EvalAccumulator) -> dict[str, Any]:
        return accumulator.to_metrics(self.top_n)


class ReadGolden(beam.PTransform):
    """Golden JSONL lines as bytes. With `limit`, the first `limit` non-blank lines, read in
    the launching process (a limit is for small runs; the full file is read by Beam)."""

    def __init__(self, pattern: str, limit: int | None = None) -> None:
        super().__init__()
        self.pattern = pattern
        self.limit = limit

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:  # type: ignore[override]
        if self.limit is not None:
            return pbegin | "FirstLines" >> beam.Create(first_lines(self.pattern, self.limit))
        return (
            pbegin
            | "ReadJsonl" >> beam.io.ReadFromText(self.pattern, coder=BytesCoder(), strip_trailing_newlines=True)
            | "DropBlankLines" >> beam.Filter(lambda line: bool(line.strip()))
        )


def first_lines(pattern: str, limit: int) -> list[bytes]:
    from apache_beam.io.filesystems import FileSystems

    out: list[bytes] = []
    for match in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(match.path) as fh:
            for line in fh:
                if len(out) >= limit:
                    return out
                if line.strip():
                    out.append(line.rstrip(b"\r\n"))
    return out


class ParseGolden(beam.DoFn):
    """bytes -> GoldenProduct; a malformed line -> the `invalid` output as an InputNote."""

    def __init__(self) -> None:
        self.golden = Metrics.counter("evaluation", "golden")
        self.invalid = Metrics.counter("evaluation", "golden_invalid")

    def process(self, line: bytes) -> Iterator[Any]:
        try:
            golden = parse_golden(line)
        except GoldenRecordError as exc:
            self.invalid.inc()
            yield beam.pvalue.TaggedOutput(INVALID, InputNote("golden_invalid", f"{exc}: {line[:80]!r}"))
            return
        self.golden.inc()
        yield golden


class ParsePrediction(beam.DoFn):
    """A predictions JSONL line (bytes) or Parquet row (dict) -> Prediction; else `invalid`."""

    def __init__(self) -> None:
        self.invalid = Metrics.counter("evaluation", "prediction_invalid")

    def process(self, element: bytes | dict[str, Any]) -> Iterator[Any]:
        try:
            if isinstance(element, dict):
                yield Prediction.model_validate(element)
            else:
                yield Prediction.model_validate_json(element)
        except (ValidationError, ValueError) as exc:
            self.invalid.inc()
            yield beam.pvalue.TaggedOutput(INVALID, InputNote("prediction_invalid", str(exc).splitlines()[0][:200]))


class ReadPredictions(beam.PTransform):
    """Existing predictions (a backfill's predictions.jsonl or .parquet) -> Prediction, plus
    the `invalid` notes."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:  # type: ignore[override]
        from transforms.io.files import ReadEvents

        return (
            pbegin
            | "Read" >> ReadEvents(self.pattern)
            | "Parse" >> beam.ParDo(ParsePrediction()).with_outputs(INVALID, main="predictions")
        )


def _latest(predictions: Sequence[Prediction]) -> Prediction:
    return max(predictions, key=lambda p: (p.predicted_at, p.prediction_id))


class ScoreProducts(beam.DoFn):
    """(product id, {"gold": [GoldenProduct], "pred": [Prediction]}) -> ProductScore; the
    `notes` output gets an InputNote for a prediction without a golden product and for
    each duplicate."""

    def __init__(self, taxonomy_path: str | None, mapping: CategoryMapping | None = None) -> None:
        self.taxonomy_path = taxonomy_path
        self.mapping = mapping
        self.scored = Metrics.counter("evaluation", "scored")
        self.missing = Metrics.counter("evaluation", "missing_predictions")
        self.unmappable = Metrics.counter("evaluation", "unmappable_gold_categories")

    def setup(self) -> None:
        from transforms.shared import shared_normaliser, shared_taxonomy

        self.taxonomy = shared_taxonomy(self.taxonomy_path)
        self.normaliser = shared_normaliser(self.taxonomy_path)

    def process(self, element: tuple[str, Mapping[str, Iterable[Any]]]) -> Iterator[Any]:
        product_id, grouped = element
        golds = list(grouped.get("gold", ()))
        predictions = list(grouped.get("pred", ()))
        if not golds:
            yield beam.pvalue.TaggedOutput(NOTES, InputNote("prediction_without_gold", product_id))
            return
        for _ in golds[1:]:
            yield beam.pvalue.TaggedOutput(NOTES, InputNote("duplicate_gold", product_id))
        for _ in predictions[1:]:
            yield beam.pvalue.TaggedOutput(NOTES, InputNote("duplicate_prediction", product_id))
        golden = min(golds, key=repr)  # a deterministic pick among duplicates
        prediction = _latest(predictions) if predictions else None
        score = score_product(golden, prediction, self.taxonomy, self.normaliser, self.mapping)
        self.scored.inc()
        self.missing.inc(prediction is None)
        self.unmappable.inc(not score.scored)
        yield score


class EvaluatePredictions(beam.PTransform):
    """{"golden": PCollection[GoldenProduct], "predictions": PCollection[Prediction],
    optional "notes": PCollection[InputNote]} -> {"scores": ProductScore, "metrics": one dict}."""

    def __init__(self, taxonomy_path: str | None, mapping: CategoryMapping | None = None, top_n: int = 20) -> None:
        super().__init__()
        self.taxonomy_path = taxonomy_path
        self.mapping = mapping
        self.top_n = top_n

    def expand(self, inputs: Mapping[str, beam.PCollection]) -> dict[str, beam.PCollection]:  # type: ignore[override]
        golden = inputs["golden"] | "KeyGolden" >> beam.Map(lambda g: (g.id, g))
        predictions = inputs["predictions"] | "KeyPredictions" >> beam.Map(lambda p: (p.product_id, p))
        scored = (
            {"gold": golden, "pred": predictions}
            | "Join" >> beam.CoGroupByKey()
            | "Score" >> beam.ParDo(ScoreProducts(self.taxonomy_path, self.mapping)).with_outputs(NOTES, main="scores")
        )
        parts = [scored.scores, scored[NOTES]]
        if "notes" in inputs:
            parts.append(inputs["notes"])
        metrics = (
            tuple(parts)
            | "WithNotes" >> beam.Flatten()
            | "Metrics" >> beam.CombineGlobally(EvaluationCombineFn(self.top_n))
        )
        return {"scores": scored.scores, "metrics": metrics}
