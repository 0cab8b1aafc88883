"""Post-hoc correction against the taxonomy: categories after step 1, values after step 2.

This is the guarantee that no prediction names a category id, attribute handle or value
the taxonomy does not have: whatever the model said, only taxonomy objects come out.

The correction itself is the product core's (`transforms.core.correct`,
`transforms.core.validate`, Beam-free); the DoFns here hold the per-process taxonomy,
corrector and normaliser, and turn the core's results into Beam outputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam

from transforms.core.correct import STAGE as CORRECT_STAGE
from transforms.core.correct import correct_category
from transforms.core.validate import STAGE as VALIDATE_STAGE
from transforms.core.validate import validate_attributes
from transforms.dead_letters import BeamMetrics, guard_stage, member_dead_letters, tagged
from transforms.records import DeadLetter, WorkItem
from transforms.shared import shared_corrector, shared_normaliser, shared_taxonomy

__all__ = ["CorrectCategory", "ValidateAttributes"]


def _outputs(result: WorkItem | DeadLetter, item: WorkItem) -> Iterator[Any]:
    """The next WorkItem on the main output, or the dead letter (once more for every
    product that shared the item's model path, as `guard_stage` does)."""
    if isinstance(result, DeadLetter):
        letter = tagged(result)
        yield letter
        yield from member_dead_letters(letter, item)
    else:
        yield result


class CorrectCategory(beam.DoFn):
    """WorkItem with raw_category -> WorkItem with `category`, on the main output either
    way: when no category can be trusted it carries category None and a warning (status
    "unresolved", it goes to review). Counted under `correction/category_*` by the core."""

    def __init__(self, taxonomy_path: str | None) -> None:
        self.taxonomy_path = taxonomy_path
        self.metrics = BeamMetrics()

    def setup(self) -> None:
        self.corrector = shared_corrector(self.taxonomy_path)

    @guard_stage(CORRECT_STAGE)
    def process(self, item: WorkItem) -> Iterator[Any]:
        yield from _outputs(correct_category(item, self.corrector, self.metrics), item)


class ValidateAttributes(beam.DoFn):
    """raw_attributes -> attributes: unknown handles dropped, values normalised to the
    allowed values of the category's attributes or dropped, all counted (`correction/`)."""

    def __init__(self, taxonomy_path: str | None) -> None:
        self.taxonomy_path = taxonomy_path
        self.metrics = BeamMetrics()

    def setup(self) -> None:
        self.taxonomy = shared_taxonomy(self.taxonomy_path)
        self.normaliser = shared_normaliser(self.taxonomy_path)

    @guard_stage(VALIDATE_STAGE)
    def process(self, item: WorkItem) -> Iterator[Any]:
        yield from _outputs(validate_attributes(item, self.taxonomy, self.normaliser, self.metrics), item)
