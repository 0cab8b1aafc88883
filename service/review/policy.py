"""The vetting policy, as data (`policy.yaml`), and `route`: who must look at a feedback
event, why, and how many of them.

Merchant feedback is never fed straight into training (issue 15): a shoe corrected to
"sock" is cheap to trust, firearms versus airsoft versus toy guns is not, and people do not
even agree on colours. The rules, in the order `route` applies them:

1. the label: an accept proposes the prediction; a correction proposes the merchant's
   category (and attribute values, over the predicted ones when the category is unchanged);
   a delete proposes nothing (an annotator gives the category);
2. sensitive subtrees (the predicted or the merchant's category in one): always people;
3. corrections: the second opinion; agreement auto-vets where `auto_vet_on_agreement`
   allows (never sensitive, never with subjective values), disagreement goes to people;
4. accepts: a deterministic audit sample (hash of the prediction id: a replay routes the
   same way), at a higher rate while the model version is new;
5. subjective attributes (colour, pattern) in the label: k-of-n annotator agreement;
6. deletes: to people (configurable).

Keeping the rules in a file lets an operator tighten review (a new sensitive subtree, two
annotators on alcohol) without a release; `VettingPolicy.load` refuses a bad file with the
key that is wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from service.review.feedback import FeedbackIn, ServedRecord
    from service.review.second_opinion import Opinion
    from taxonomy.model import Taxonomy

__all__ = [
    "DEFAULT_POLICY",
    "REASONS",
    "AuditPolicy",
    "PolicyError",
    "Routing",
    "RoutingStatus",
    "SensitivePolicy",
    "VettingPolicy",
    "audit_sampled",
    "route",
]

DEFAULT_POLICY = Path(__file__).resolve().parent / "policy.yaml"
GID_PREFIX = "gid://shopify/TaxonomyCategory/"
_SEP = " > "
RoutingStatus = Literal["pending", "auto_vetted", "not_sampled"]
# Why an item was routed to people (the queue's "reason" filter).
REASONS = ("sensitive", "correction", "disagreement", "audit_sample", "subjective", "delete")


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the key."""


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
    sensitive_groups: tuple[str, ...] = ()


_STRICT = ConfigDict(extra="forbid", frozen=True)


def _entry(text: str) -> str:
    text = str(text).strip()
    if not text:
        raise ValueError("an empty category entry")
    if _SEP in text or text.startswith(GID_PREFIX):
        return text
    if text.replace("-", "").isalnum() and text[:2].isalpha() and text.islower():
        return GID_PREFIX + text  # a short id such as ma-2
    return text  # a one-level path ("Mature")


class SensitivePolicy(BaseModel):
    model_config = _STRICT
    approvals_needed: int = Field(default=1, ge=1, le=10)
    # group name -> category ids (short or full) or full-path prefixes
    subtrees: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("subtrees", mode="before")
    @classmethod
    def _normalise(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise ValueError("subtrees maps a group name to a list of category ids or path prefixes")
        out = {}
        for name, entries in v.items():
            if isinstance(entries, str):
                entries = [entries]
            if not isinstance(entries, list | tuple) or not entries:
                raise ValueError(f"group {name!r} needs a non-empty list of category ids or path prefixes")
            out[str(name)] = tuple(_entry(e) for e in entries)
        return out


class SecondOpinionPolicy(BaseModel):
    model_config = _STRICT
    agree_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    auto_vet_on_agreement: bool = True


class AuditPolicy(BaseModel):
    model_config = _STRICT
    new_model_rate: float = Field(default=0.10, ge=0.0, le=1.0)
    established_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    established_after: int = Field(default=1000, ge=0)

    def rate(self, accepts_seen: int) -> float:
        return self.new_model_rate if accepts_seen < self.established_after else self.established_rate


class SubjectivePolicy(BaseModel):
    model_config = _STRICT
    attributes: tuple[str, ...] = ("color", "pattern")
    approvals_needed: int = Field(default=2, ge=1, le=10)


class DeletesPolicy(BaseModel):
    model_config = _STRICT
    to_people: bool = True


class VettingPolicy(BaseModel):
    """`policy.yaml` validated. `VettingPolicy()` is the built-in default; `load()` reads the
    bundled file (the same defaults, with the sensitive subtrees)."""

    model_config = _STRICT
    version: Literal[1] = 1
    sensitive: SensitivePolicy = Field(default_factory=SensitivePolicy)
    second_opinion: SecondOpinionPolicy = Field(default_factory=SecondOpinionPolicy)
    audit: AuditPolicy = Field(default_factory=AuditPolicy)
    subjective: SubjectivePolicy = Field(default_factory=SubjectivePolicy)
    deletes: DeletesPolicy = Field(default_factory=DeletesPolicy)
    approvals_needed: int = Field(default=1, ge=1, le=10)

    @classmethod
    def load(cls, path: str | Path | None = None, taxonomy: Taxonomy | None = None) -> VettingPolicy:
        """Read and validate a policy file (the bundled `policy.yaml` when `path` is None);
        with `taxonomy`, also check every category id exists in it."""
        source = Path(path) if path is not None else DEFAULT_POLICY
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PolicyError(f"{source}: cannot read the vetting policy: {exc}") from exc
        except yaml.YAMLError as exc:
            raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
        return cls.parse(data if data is not None else {}, source=str(source), taxonomy=taxonomy)

    @classmethod
    def parse(cls, data: Any, source: str = "policy", taxonomy: Taxonomy | None = None) -> VettingPolicy:
        if not isinstance(data, Mapping):
            raise PolicyError(f"{source}: the policy must be a mapping of keys, got {type(data).__name__}")
        try:
            policy = cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise PolicyError(f"{source}: key {where!r}: {err.get('msg', 'invalid')}{more}") from exc
        if taxonomy is not None:
            policy.check(taxonomy, source)
        return policy

    def check(self, taxonomy: Taxonomy, source: str = "policy") -> None:
        """PolicyError naming the first sensitive entry the taxonomy does not know."""
        paths = {c.full_name for c in taxonomy.categories.values()}
        for name, entries in self.sensitive.subtrees.items():
            for e in entries:
                if e.startswith(GID_PREFIX):
                    if taxonomy.get(e) is None:
                        raise PolicyError(
                            f"{source}: key 'sensitive.subtrees.{name}': unknown category {e.removeprefix(GID_PREFIX)!r} "
                            f"in taxonomy {taxonomy.version}"
                        )
                elif not any(p == e or p.startswith(e + _SEP) for p in paths):
                    raise PolicyError(
                        f"{source}: key 'sensitive.subtrees.{name}': no category path starts with {e!r} "
                        f"in taxonomy {taxonomy.version}"
                    )

    def sensitive_groups(
        self, category_id: str | None, category_path: str | None = None, taxonomy: Taxonomy | None = None
    ) -> tuple[str, ...]:
        """The sensitive groups a category falls in (empty: not sensitive). With the
        taxonomy, by ancestry; without, by Shopify's hierarchical ids (`ma-2-2` is under
        `ma-2`) and path prefixes."""
        if not category_id and not category_path:
            return ()
        cid = GID_PREFIX + category_id if category_id and not category_id.startswith("gid://") else category_id
        lineage: set[str] = set()
        path = category_path
        if taxonomy is not None and cid:
            c = taxonomy.get(cid)
            if c is not None:
                lineage = {c.id, *c.ancestor_ids}
                path = path or c.full_name
        groups = []
        for name, entries in self.sensitive.subtrees.items():
            for e in entries:
                if e.startswith(GID_PREFIX):
                    hit = e in lineage if lineage else bool(cid) and (cid == e or cid.startswith(e + "-"))
                else:
                    hit = bool(path) and (path == e or path.startswith(e + _SEP))
                if hit:
                    groups.append(name)
                    break
        return tuple(groups)


def audit_sampled(prediction_id: str, rate: float) -> bool:
    """Deterministic: the same prediction is always in (or out of) the sample at a rate."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(b"productlens-audit\x1f" + prediction_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def route(
    policy: VettingPolicy,
    served: ServedRecord,
    feedback: FeedbackIn,
    opinion: Opinion | None,
    *,
    taxonomy: Taxonomy | None = None,
    accepts_seen: int = 0,
) -> Routing:
    """The routing of one validated feedback event (module docstring for the rules).
    `accepts_seen`: accepts already stored for the served model version (the audit rate)."""
    reasons: list[str] = []
    # 1. the proposed label
    label: dict[str, Any] | None = None
    predicted_attrs = served.attributes
    if feedback.action == "accept" and served.category_id:
        label = {
            "category_id": served.category_id,
            "category_path": served.category_path,
            "attributes": predicted_attrs,
        }
    elif feedback.action == "correct" and feedback.category_id:
        path = None
        if taxonomy is not None:
            c = taxonomy.get(feedback.category_id)
            path = c.full_name if c is not None else None
        attrs = dict(predicted_attrs) if feedback.category_id == served.category_id else {}
        attrs.update(feedback.attributes or {})
        label = {"category_id": feedback.category_id, "category_path": path, "attributes": attrs}

    # 2. sensitive subtrees (the prediction's or the merchant's category)
    groups = set(policy.sensitive_groups(served.category_id, served.category_path, taxonomy))
    if label is not None:
        groups |= set(policy.sensitive_groups(label["category_id"], label.get("category_path"), taxonomy))
    sensitive = bool(groups)
    if sensitive:
        reasons.append("sensitive")

    # 5. subjective attributes carried by the label
    subjective = tuple(
        h for h in policy.subjective.attributes if label is not None and (label.get("attributes") or {}).get(h)
    )

    status: RoutingStatus
    if feedback.action == "delete":
        reasons.append("delete")
        status = "pending" if (policy.deletes.to_people or sensitive) else "not_sampled"
    elif feedback.action == "correct":
        reasons.append("correction")
        agrees = opinion is not None and opinion.agrees
        if opinion is not None and not opinion.agrees:
            reasons.append("disagreement")
        if subjective:
            reasons.append("subjective")
        auto = agrees and policy.second_opinion.auto_vet_on_agreement and not sensitive and not subjective
        status = "auto_vetted" if auto else "pending"
    else:  # accept
        if label is None:
            status = "not_sampled"  # nothing was predicted: nothing to vet
        else:
            sampled = audit_sampled(served.prediction_id, policy.audit.rate(accepts_seen))
            if sampled:
                reasons.append("audit_sample")
            if (sampled or sensitive) and subjective:
                reasons.append("subjective")
            status = "pending" if (sampled or sensitive) else "not_sampled"

    k = policy.approvals_needed
    if sensitive:
        k = max(k, policy.sensitive.approvals_needed)
    if subjective and status == "pending":
        k = max(k, policy.subjective.approvals_needed)
    return Routing(
        status=status,
        reasons=tuple(reasons),
        sensitive=sensitive,
        approvals_needed=k,
        label=label,
        second_opinion=opinion.as_dict() if opinion is not None else None,
        agree_on=subjective if status == "pending" else (),
        sensitive_groups=tuple(sorted(groups)),
    )
