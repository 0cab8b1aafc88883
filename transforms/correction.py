"""Post-hoc correction against the taxonomy: categories after step 1, values after step 2.

This is the guarantee that no prediction names a category id, attribute handle or value
the taxonomy does not have: whatever the model said, only taxonomy objects come out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.records import (
    PredictedAttribute,
    PredictedCategory,
    PredictedValue,
    WorkItem,
)
from transforms.dead_letters import guard_stage
from transforms.shared import shared_corrector, shared_normaliser, shared_taxonomy


class CorrectCategory(beam.DoFn):
    """WorkItem with raw_category -> WorkItem with `category` (main output), or to the
    `unresolved` output when no category can be trusted (it goes to review)."""

    def __init__(self, taxonomy_path: str | None) -> None:
        self.taxonomy_path = taxonomy_path
        self.exact = Metrics.counter("correction", "category_exact")
        self.corrected = Metrics.counter("correction", "category_corrected")
        self.unresolved = Metrics.counter("correction", "category_unresolved")

    def setup(self) -> None:
        self.corrector = shared_corrector(self.taxonomy_path)

    @guard_stage("correct_category")
    def process(self, item: WorkItem) -> Iterator[Any]:
        result = self.corrector.correct(item.raw_category)
        if result.category is None:
            self.unresolved.inc()
            warning = f"category {item.raw_category!r} matches no taxonomy category (best score {result.score:.2f})"
            # Stays on the main output (category None): later steps pass it through, so the
            # flow needs no Flatten (on Prism a Flatten breaks the fused stage that makes the
            # stream's offset commits follow its writes).
            yield replace(item, warnings=(*item.warnings, warning))
            return
        (self.corrected if result.corrected else self.exact).inc()
        # A corrected path is only as sure as both the model and the match.
        score = item.confidence * result.score if result.corrected else item.confidence
        yield replace(
            item,
            category=PredictedCategory(
                id=result.category.id,
                full_name=result.category.full_name,
                score=round(min(1.0, max(0.0, score)), 4),
                corrected=result.corrected,
                raw=item.raw_category,
            ),
        )


class ValidateAttributes(beam.DoFn):
    """raw_attributes -> attributes: unknown handles dropped, values normalised to the
    allowed values of the category's attributes or dropped, all counted."""

    def __init__(self, taxonomy_path: str | None) -> None:
        self.taxonomy_path = taxonomy_path
        self.kept = Metrics.counter("correction", "values_exact")
        self.values_corrected = Metrics.counter("correction", "values_corrected")
        self.values_dropped = Metrics.counter("correction", "values_dropped")
        self.handles_dropped = Metrics.counter("correction", "attribute_handles_dropped")

    def setup(self) -> None:
        self.taxonomy = shared_taxonomy(self.taxonomy_path)
        self.normaliser = shared_normaliser(self.taxonomy_path)

    @guard_stage("validate_attributes")
    def process(self, item: WorkItem) -> Iterator[WorkItem]:
        if item.category is None:  # unresolved: nothing to validate
            yield item
            return
        category = self.taxonomy.get(item.category.id)
        assert category is not None
        allowed = {a.handle for a in self.taxonomy.attributes_of(category)}
        out: list[PredictedAttribute] = []
        warnings = list(item.warnings)
        for handle, raws in item.raw_attributes:
            attribute = self.normaliser.attribute_for(category, handle)
            if attribute is None or attribute.handle not in allowed:
                self.handles_dropped.inc()
                warnings.append(f"attribute {handle!r} is not an attribute of {category.full_name}; dropped")
                continue
            matches, rejected = self.normaliser.normalise_many(attribute, list(raws))
            self.values_dropped.inc(len(rejected))
            if rejected:
                warnings.append(f"{attribute.handle}: values {list(rejected)} are not allowed; dropped")
            if not matches:
                continue
            corrected = any(m.corrected for m in matches) or attribute.handle != handle
            for m in matches:
                (self.values_corrected if m.corrected else self.kept).inc()
            out.append(
                PredictedAttribute(
                    handle=attribute.handle,
                    name=attribute.name,
                    values=tuple(PredictedValue(id=m.value.id, name=m.value.name) for m in matches),
                    corrected=corrected,
                    raw=tuple(raws),
                )
            )
        yield replace(item, attributes=tuple(out), warnings=tuple(warnings))
