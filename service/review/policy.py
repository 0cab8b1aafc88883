"""Vetting policy (placeholder until the full policy lands; the `Routing` shape is final)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Routing", "RoutingStatus"]

RoutingStatus = Literal["pending", "auto_vetted", "not_sampled"]


@dataclass(frozen=True)
class Routing:
    """Where a feedback event goes. `status`: `pending` (people must look), `auto_vetted`
    (the label is vetted without people), `not_sampled` (stored, not vetted, not exported).
    `label`: the proposed label `{"category_id", "category_path", "attributes": {handle: [value ids]}}`
    (None for a delete: an annotator must give the category). `agree_on`: attribute handles
    whose values approving annotators must agree on (subjective attributes)."""

    status: RoutingStatus
    reasons: tuple[str, ...]
    sensitive: bool = False
    approvals_needed: int = 1
    label: Mapping[str, Any] | None = None
    second_opinion: Mapping[str, Any] | None = None
    agree_on: tuple[str, ...] = field(default=())
