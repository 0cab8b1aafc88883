"""Attribute validation against the taxonomy, Beam-free: after step 2.

The other half of the guarantee: only the category's own attributes, and only their
allowed values, reach a prediction; what the model said otherwise is dropped, counted and
flagged with a warning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from taxonomy.model import Taxonomy
from taxonomy.values import ValueNormaliser
from transforms.core.dead_letters import guarded
from transforms.core.metrics import NO_METRICS, MetricsSink
from transforms.records import DeadLetter, PredictedAttribute, PredictedValue, WorkItem

__all__ = ["STAGE", "validate_attributes"]

STAGE = "validate_attributes"


def _validate(item: WorkItem, taxonomy: Taxonomy, normaliser: ValueNormaliser, metrics: MetricsSink) -> WorkItem:
    if item.category is None:  # unresolved: nothing to validate
        return item
    category = taxonomy.get(item.category.id)
    assert category is not None
    allowed = {a.handle for a in taxonomy.attributes_of(category)}
    out: list[PredictedAttribute] = []
    warnings = list(item.warnings)
    # Counted once the item is done: a product that fails half-way is a dead letter only.
    # (values_dropped is counted, 0 included, for every attribute whose values were
    # normalised: the counter exists exactly when some attribute was checked.)
    counts: Counter[str] = Counter()
    for handle, raws in item.raw_attributes:
        attribute = normaliser.attribute_for(category, handle)
        if attribute is None or attribute.handle not in allowed:
            counts["attribute_handles_dropped"] += 1
            warnings.append(f"attribute {handle!r} is not an attribute of {category.full_name}; dropped")
            continue
        matches, rejected = normaliser.normalise_many(attribute, list(raws))
        counts["values_dropped"] += len(rejected)
        if rejected:
            warnings.append(f"{attribute.handle}: values {list(rejected)} are not allowed; dropped")
        if not matches:
            continue
        corrected = any(m.corrected for m in matches) or attribute.handle != handle
        for m in matches:
            counts["values_corrected" if m.corrected else "values_exact"] += 1
        out.append(
            PredictedAttribute(
                handle=attribute.handle,
                name=attribute.name,
                values=tuple(PredictedValue(id=m.value.id, name=m.value.name) for m in matches),
                corrected=corrected,
                raw=tuple(raws),
            )
        )
    validated = replace(item, attributes=tuple(out), warnings=tuple(warnings))
    for name, n in counts.items():
        metrics.inc("correction", name, n)
    return validated


def validate_attributes(
    item: WorkItem, taxonomy: Taxonomy, normaliser: ValueNormaliser, metrics: MetricsSink = NO_METRICS
) -> WorkItem | DeadLetter:
    """raw_attributes -> attributes: handles the category does not have are dropped, values
    are normalised to the attribute's allowed values or dropped, all counted
    (`correction/values_exact`, `values_corrected`, `values_dropped`,
    `attribute_handles_dropped`) and flagged. An unresolved item passes unchanged."""
    return guarded(STAGE, metrics, _validate, item, taxonomy, normaliser, metrics)
