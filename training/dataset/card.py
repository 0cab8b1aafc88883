"""The dataset card: a Markdown page rendered from `stats.json`, so the card never says
something the numbers do not."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["render_card", "BAD_INPUT_LABELS"]

# Every bad-input count, with the words the card uses; all are shown, zeros included, so a
# reader sees that a kind was checked rather than forgotten.
BAD_INPUT_LABELS: dict[str, str] = {
    "malformed_rows": "malformed rows (not parseable, or a product without a usable title)",
    "malformed_predictions": "malformed prediction lines",
    "malformed_reviews": "malformed vetted-label lines",
    "unreadable_files": "unreadable input files",
    "empty_inputs": "empty inputs (a file with no usable record)",
    "no_label": "products without a category label (excluded)",
    "unknown_categories": "labels naming no category of this taxonomy version (excluded)",
    "other_taxonomy_labels": "labels in another taxonomy (Google, other) without a mapping (excluded)",
    "other_version_labels": "labels in another Shopify taxonomy version (mapped, kept)",
    "corrected_labels": "labels corrected by the category corrector (kept)",
    "conflicting_labels": "contents carrying conflicting labels (majority kept, flagged)",
    "duplicates_removed": "duplicate contents removed (same content hash)",
    "categories_with_one_example": "categories with one example after sampling",
    "reviewed_unmatched": "vetted labels naming no product of the inputs",
    "reviewed_unknown_category": "vetted labels naming no category of this taxonomy version",
}

LICENCE_NOTE = (
    "Merchant exports carry no licence unless their source says otherwise: treat them as all rights "
    "reserved by their merchants. A dataset built from `../shared/datasets` is for internal measurement "
    "only; a model trained on it must not be shipped (see that folder's README)."
)


def _cell(x: Any) -> str:
    text = "—" if x is None else str(x)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def render_card(stats: dict[str, Any], top: int = 25) -> str:
    cfg = stats.get("config", {})
    lines = [
        "# Dataset card",
        "",
        f"Taxonomy version: `{stats.get('taxonomy_version')}`. Judge: `{stats.get('judge') or 'none'}` "
        f"(replaces at probability >= `{cfg.get('replace_threshold')}`). "
        f"Split by: `{stats.get('split_by')}`. Seed: `{cfg.get('seed')}`.",
        "",
        "## Sources",
        "",
    ]
    lines += _table(
        ["kind", "file", "records", "problems"],
        [(s.get("kind"), s.get("path"), s.get("records"), s.get("problems")) for s in stats.get("sources", [])],
    )
    lines += ["", "## Licence", "", LICENCE_NOTE, "", "## Counts", ""]
    lines += _table(
        ["what", "count"],
        [
            ("records read", stats.get("records_read")),
            ("products after dedupe (usable labels)", stats.get("deduplicated_products")),
            ("products after sampling", stats.get("sampled_products")),
            ("vetted labels applied", stats.get("reviewed_applied")),
            *((f"split: {k}", v) for k, v in (stats.get("splits") or {}).items()),
        ],
    )
    lines += ["", "## Bad input", "", "Nothing below was dropped silently; each row is counted here.", ""]
    bad = stats.get("bad_input", {})
    lines += _table(["kind", "count"], [(label, bad.get(key, 0)) for key, label in BAD_INPUT_LABELS.items()])
    examples = stats.get("problem_examples") or []
    if examples:
        lines += ["", "Examples:", ""]
        lines += _table(["file", "line", "reason"], [(e["source"], e["line"], e["reason"]) for e in examples[:10]])
    excluded = stats.get("excluded_label_examples") or {}
    if excluded:
        lines += ["", "Excluded labels (examples):", ""]
        lines += _table(
            ["resolution", "product", "label"],
            [(k, e["product_id"], e["label"]) for k, es in excluded.items() for e in es],
        )
    lines += ["", "## Labels", "", "How merchant labels resolved against the taxonomy:", ""]
    lines += _table(["resolution", "records"], list((stats.get("label_resolution") or {}).items()))
    lines += ["", "Label status (confirmed / replaced / flagged / unreviewed), before and after sampling:", ""]
    everyone, kept = stats.get("label_status_all_rows") or {}, stats.get("label_status") or {}
    lines += _table(["status", "all products", "sampled"], [(k, everyone.get(k, 0), kept.get(k, 0)) for k in everyone])
    attrs = stats.get("attributes") or {}
    k = cfg.get("consensus_k")
    lines += [
        "",
        "## Attributes",
        "",
        f"Consensus: a value is kept when {'all' if k is None else f'at least {k}'} of the sources that gave "
        "attributes for a product agree.",
        "",
    ]
    lines += _table(["what", "count"], sorted(attrs.items()))
    before, after = stats.get("skew_before") or {}, stats.get("skew_after") or {}
    lines += [
        "",
        "## Distribution before and after sampling",
        "",
        f"Cap per category: `{cfg.get('cap_per_category')}`. The skew removed:",
        "",
    ]
    lines += _table(
        ["", "products", "categories", "top-category share", "Gini", "normalised entropy"],
        [
            ("before", *(before.get(x) for x in ("products", "categories", "top_share", "gini", "normalised_entropy"))),
            ("after", *(after.get(x) for x in ("products", "categories", "top_share", "gini", "normalised_entropy"))),
        ],
    )
    cb, ca = stats.get("categories_before") or {}, stats.get("categories_after") or {}
    lines += ["", f"Top {top} categories:", ""]
    lines += _table(["category", "before", "after"], [(c, n, ca.get(c, 0)) for c, n in list(cb.items())[:top]])
    lines += ["", "Verticals after sampling:", ""]
    lines += _table(["vertical", "products"], list((stats.get("verticals_after") or {}).items()))
    lines += ["", "## Splits", ""]
    if stats.get("empty_splits"):
        lines += [
            f"**Empty splits: {', '.join(stats['empty_splits'])}** (fewer {stats.get('split_by')} groups than splits).",
            "",
        ]
    lines += _table(
        ["split", "products", "stores"],
        [
            (s, n, ", ".join((stats.get("stores_by_split") or {}).get(s, []))[:300])
            for s, n in (stats.get("splits") or {}).items()
        ],
    )
    sample = stats.get("annotation_sample")
    if sample:
        lines += [
            "",
            "## Annotation sample",
            "",
            f"{sample['products']} products (up to {sample['per_vertical']} per vertical) in "
            "`annotation_sample.csv`; fill `verdict` with correct/incorrect and run "
            "`productlens dataset score-annotations`.",
        ]
    return "\n".join(lines) + "\n"
