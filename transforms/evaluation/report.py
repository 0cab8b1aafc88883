"""report.html: one self-contained page from metrics.json.

No external assets, no scripts: inline CSS and charts as inline SVG drawn here, so the
page opens anywhere (a CI artefact, an air-gapped laptop) and diffs as text. Every string
from the data is HTML-escaped. Sections: headline table, rates, per-vertical hF1 bars, the
depth curve (hP/hR/hF by gold depth), per-store table, calibration of the category score
(ECE, reliability diagram and table), hP/hR/hF1 against coverage, back-off, confusion
pairs, attributes, unmappable gold labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

__all__ = [
    "COLOURS",
    "bar_chart_svg",
    "line_chart_svg",
    "render_report",
]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
.meta{color:#59636e;font-size:.9rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#59636e;font-size:.85rem;max-width:900px}
svg text{font-family:inherit}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
"""

COLOURS = {
    "hP": "#0969da",
    "hR": "#bf8700",
    "hF1": "#1a7f37",
    "bar": "#1a7f37",
    "rate": "#cf222e",
    "accuracy": "#8250df",
    "lineage acc.": "#1a7f37",
    "confidence": "#6e7781",
}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return escape(str(x))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], table_id: str = "", numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i >= numeric_from else ""
            cells.append(f"<td{cls}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def bar_chart_svg(
    rows: Sequence[tuple[str, float | None, str]],
    chart_id: str,
    title: str,
    *,
    max_value: float = 1.0,
    colour: str = COLOURS["bar"],
    as_percent: bool = False,
    width: int = 640,
) -> str:
    """Horizontal bars, one per (label, value, note); a None value is drawn as 'n/a'."""
    label_w, bar_w, row_h, top = 260, width - 260 - 110, 22, 28
    height = top + row_h * max(1, len(rows)) + 24
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-size="14" font-weight="600">{escape(title)}</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + bar_w * tick
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 20}" stroke="#d0d7de" stroke-width="1"/>'
        )
        tick_label = f"{tick * max_value * 100:.3g}%" if as_percent else f"{tick * max_value:.3g}"
        parts.append(
            f'<text x="{x:.1f}" y="{height - 6}" font-size="10" text-anchor="middle" fill="#59636e">{tick_label}</text>'
        )
    if not rows:
        parts.append(f'<text x="{label_w}" y="{top + 14}" font-size="12" fill="#59636e">no data</text>')
    for i, (label, value, note) in enumerate(rows):
        y = top + i * row_h
        short = label if len(label) <= 40 else "…" + label[-39:]
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" text-anchor="end"><title>{escape(label)}</title>{escape(short)}</text>'
        )
        if value is None:
            parts.append(
                f'<text x="{label_w + 4}" y="{y + 15}" font-size="12" fill="#59636e">n/a {escape(note)}</text>'
            )
            continue
        w = max(0.0, min(1.0, value / max_value if max_value else 0.0)) * bar_w
        shown = _pct(value) if as_percent else f"{value:.3f}"
        parts.append(
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}"/>'
        )
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" font-size="12">{shown} {escape(note)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart_svg(
    x_labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    chart_id: str,
    title: str,
    *,
    notes: Sequence[str] = (),
    x_title: str = "gold depth (1 = vertical)",
    width: int = 640,
    height: int = 300,
) -> str:
    """Lines over categorical x (0..1 on y); a None point breaks the line."""
    left, right, top, bottom = 48, 110, 30, 48
    pw, ph = width - left - right, height - top - bottom
    n = len(x_labels)

    def px(i: int) -> float:
        return left + (pw * (i + 0.5) / n if n else 0)

    def py(v: float) -> float:
        return top + ph * (1 - max(0.0, min(1.0, v)))

    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-size="14" font-weight="600">{escape(title)}</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = py(tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#d0d7de" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#59636e">{tick:.2f}</text>'
        )
    for i, label in enumerate(x_labels):
        parts.append(
            f'<text x="{px(i):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">{escape(label)}</text>'
        )
        if i < len(notes) and notes[i]:
            parts.append(
                f'<text x="{px(i):.1f}" y="{top + ph + 30}" font-size="10" text-anchor="middle" fill="#59636e">{escape(notes[i])}</text>'
            )
    if not n:
        parts.append(f'<text x="{left + 8}" y="{top + 20}" font-size="12" fill="#59636e">no data</text>')
    for k, (name, values) in enumerate(series.items()):
        colour = COLOURS.get(name, "#6e7781")
        segment: list[str] = []
        segments: list[list[str]] = []
        for i, v in enumerate(values):
            if v is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{px(i):.1f},{py(v):.1f}")
            parts.append(
                f'<circle class="point" cx="{px(i):.1f}" cy="{py(v):.1f}" r="3.5" fill="{colour}"><title>{escape(name)} {escape(x_labels[i])}: {v:.3f}</title></circle>'
            )
        if segment:
            segments.append(segment)
        for seg in segments:
            if len(seg) > 1:
                parts.append(
                    f'<polyline class="series" points="{" ".join(seg)}" fill="none" stroke="{colour}" stroke-width="2"/>'
                )
        ly = top + 10 + k * 18
        parts.append(f'<rect x="{left + pw + 14}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{left + pw + 32}" y="{ly + 1}" font-size="12">{escape(name)}</text>')
    parts.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 4}" font-size="11" text-anchor="middle" fill="#59636e">{escape(x_title)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _group_rows(groups: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, g in groups.items():
        c, a = g["category"], g["attributes"]
        rows.append(
            [
                escape(name),
                str(g["n"]),
                str(c["n"]),
                _fmt(c["accuracy"]),
                _fmt(c["hierarchical_precision"]),
                _fmt(c["hierarchical_recall"]),
                _fmt(c["hierarchical_f1"]),
                _fmt(a["micro_f1"]),
                _fmt((c.get("calibration") or {}).get("ece")),
                _pct(g["correction_rate"]),
                _pct(g["unresolved_rate"]),
            ]
        )
    return rows


_GROUP_HEADERS = ("", "n", "scored", "accuracy", "hP", "hR", "hF1", "attribute F1", "ECE", "corrected", "unresolved")


def _calibration_sections(c: dict[str, Any]) -> list[str]:
    """Calibration (ECE, reliability diagram and table), the coverage curve and back-off.
    Empty for a metrics.json written before these existed."""
    cal, coverage, back_off = c.get("calibration"), c.get("coverage"), c.get("back_off")
    if not cal:
        return []
    bins = cal.get("reliability") or []
    filled = [b for b in bins if b["n"]]
    reliability_chart = line_chart_svg(
        [f"{b['lower']:.2f}" for b in filled],
        {
            "confidence": [b["mean_confidence"] for b in filled],
            "lineage acc.": [b["lineage_accuracy"] for b in filled],
            "accuracy": [b["exact_accuracy"] for b in filled],
        },
        "chart-reliability",
        "Reliability: mean confidence and accuracy per score bin",
        notes=[f"n={b['n']}" for b in filled],
        x_title="score bin (lower edge; empty bins left out)",
    )
    reliability = _table(
        ("score bin", "n", "mean confidence", "lineage accuracy", "exact accuracy"),
        [
            [
                f"[{b['lower']:.3f}, {b['upper']:.3f}{']' if b['upper'] >= 1 else ')'}",
                str(b["n"]),
                _fmt(b["mean_confidence"]),
                _fmt(b["lineage_accuracy"]),
                _fmt(b["exact_accuracy"]),
            ]
            for b in bins
        ],
        table_id="reliability",
    )
    sections = [
        "<h2>Calibration of the category score</h2>",
        f'<p class="note">ECE {_fmt(cal["ece"])} (exact node: {_fmt(cal["ece_exact"])}) · MCE {_fmt(cal["mce"])} · '
        f"Brier {_fmt(cal['brier'])} · mean confidence {_fmt(cal['mean_confidence'])} against lineage accuracy "
        f"{_fmt(cal['lineage_accuracy'])} over {cal['n']} scored answers, {cal['bins']} equal-width bins. An answer "
        "is right when its category is the gold category or one of its ancestors (a backed-off answer on the gold "
        "lineage is right); the exact-node reading counts only the gold category itself.</p>",
        f'<div class="charts">{reliability_chart}</div>',
        reliability,
    ]
    if coverage:
        coverage_chart = line_chart_svg(
            [f"{round(100 * r['target'])}%" for r in coverage],
            {
                "accuracy": [r["accuracy"] for r in coverage],
                "hP": [r["hierarchical_precision"] for r in coverage],
                "hR": [r["hierarchical_recall"] for r in coverage],
                "hF1": [r["hierarchical_f1"] for r in coverage],
            },
            "chart-coverage",
            "Accuracy and hP / hR / hF1 against coverage",
            notes=["–" if r["threshold"] is None else f"≥{r['threshold']:.3f}" for r in coverage],
            x_title="target coverage (the highest-scored products; score threshold below)",
        )
        sections += [
            "<h2>Quality against coverage</h2>",
            '<p class="note">Products sorted by score, highest first; each row answers only the products at or '
            "above the threshold (ties all go in) and scores them like a whole set. Coverage is over products with a "
            "gold category in the taxonomy: one without a predicted category is never covered.</p>",
            f'<div class="charts">{coverage_chart}</div>',
            _table(
                ("target", "coverage", "covered", "threshold", "accuracy", "lineage accuracy", "hP", "hR", "hF1"),
                [
                    [
                        _pct(r["target"]),
                        _pct(r["coverage"]),
                        str(r["n"]),
                        _fmt(r["threshold"], 4),
                        _fmt(r["accuracy"]),
                        _fmt(r["lineage_accuracy"]),
                        _fmt(r["hierarchical_precision"]),
                        _fmt(r["hierarchical_recall"]),
                        _fmt(r["hierarchical_f1"]),
                    ]
                    for r in coverage
                ],
                table_id="coverage",
            ),
        ]
    if back_off is not None:
        rest = back_off["not_backed_off"]
        rows = [
            [
                f"depth {r['from_depth']} → {'?' if r['to_depth'] is None else r['to_depth']}",
                str(r["n"]),
                _fmt(r["accuracy"]),
                _fmt(r["lineage_accuracy"]),
                _fmt(r["hierarchical_precision"]),
                _fmt(r["hierarchical_recall"]),
                _fmt(r["hierarchical_f1"]),
            ]
            for r in back_off["by_depth"]
        ]
        for label, r in (("all backed off", back_off), ("not backed off", rest)):
            rows.append(
                [
                    label,
                    str(r["n"]),
                    _fmt(r["accuracy"]),
                    _fmt(r["lineage_accuracy"]),
                    _fmt(r["hierarchical_precision"]),
                    _fmt(r["hierarchical_recall"]),
                    _fmt(r["hierarchical_f1"]),
                ]
            )
        sections += [
            "<h2>Back-off</h2>",
            f'<p class="note">Backed-off answers: {back_off["n"]} ({_pct(back_off["rate"])} of the scored answers). '
            "Each backed off from a leaf that was not probable enough to an ancestor (from the leaf's depth to the "
            "answered depth, 1 = vertical).</p>",
            _table(
                ("back-off", "n", "accuracy", "lineage accuracy", "hP", "hR", "hF1"),
                rows,
                table_id="back-off",
            ),
        ]
    return sections


def render_report(metrics: dict[str, Any]) -> str:
    c, a = metrics["category"], metrics["attributes"]
    run = metrics.get("run") or {}
    latency = metrics.get("latency") or {}
    un = metrics["unmappable"]
    title = "productlens evaluation"
    meta = " · ".join(
        escape(f"{k} {v}")
        for k, v in (
            ("model", run.get("model_version") or "?"),
            ("taxonomy", run.get("taxonomy_version") or "?"),
            ("golden", run.get("golden") or "?"),
            ("limit", run.get("limit")),
            ("predictions", run.get("predictions")),
            ("mapping", run.get("mapping")),
            ("images", run.get("images")),
            ("finished", run.get("finished_at")),
        )
        if v is not None
    )
    headline = _table(
        ("metric", "value"),
        [
            ["products (n)", str(metrics["n"])],
            ["with a gold category in the taxonomy", str(c["n"])],
            ["category accuracy (exact node)", _fmt(c["accuracy"])],
            ["hierarchical precision (hP)", _fmt(c["hierarchical_precision"])],
            ["hierarchical recall (hR)", _fmt(c["hierarchical_recall"])],
            ["hierarchical F1 (hF1)", _fmt(c["hierarchical_f1"])],
            ["attribute micro precision", _fmt(a["micro_precision"])],
            ["attribute micro recall", _fmt(a["micro_recall"])],
            ["attribute micro F1", _fmt(a["micro_f1"])],
            ["category score ECE (gold lineage, 15 bins)", _fmt((c.get("calibration") or {}).get("ece"))],
            ["category score ECE (exact node)", _fmt((c.get("calibration") or {}).get("ece_exact"))],
            ["backed-off answers", str((c.get("back_off") or {}).get("n", "–"))],
            ["correction rate", _pct(metrics["correction_rate"])],
            ["unresolved rate", _pct(metrics["unresolved_rate"])],
            ["no prediction (dead-lettered)", str(metrics["status_counts"].get("missing", 0))],
            ["unmappable gold categories", str(un["categories"]["count"])],
            ["unmappable gold attribute values", str(un["attribute_values"]["count"])],
            ["seconds per product", _fmt(latency.get("seconds_per_product"), 4)],
            ["products per second", _fmt(latency.get("products_per_s"), 2)],
            ["model calls per product", _fmt(metrics.get("model_calls_per_product"), 2)],
        ],
        table_id="headline",
    )
    rates = bar_chart_svg(
        [
            ("corrected category", metrics["correction_rate"], f"({metrics['status_counts'].get('corrected', 0)})"),
            (
                "unresolved (to review)",
                metrics["unresolved_rate"],
                f"({metrics['status_counts'].get('unresolved', 0)})",
            ),
            ("no prediction", metrics.get("missing_rate"), f"({metrics['status_counts'].get('missing', 0)})"),
        ],
        "chart-rates",
        "Correction and unresolved rates",
        colour=COLOURS["rate"],
        as_percent=True,
        max_value=max(
            0.1,
            *(v or 0.0 for v in (metrics["correction_rate"], metrics["unresolved_rate"], metrics.get("missing_rate"))),
        ),
    )
    verticals = c["per_vertical"]
    vertical_chart = bar_chart_svg(
        [(name, g["category"]["hierarchical_f1"], f"n={g['category']['n']}") for name, g in verticals.items()],
        "chart-vertical-hf1",
        "Hierarchical F1 per gold vertical",
    )
    depths = c["per_depth"]
    depth_chart = line_chart_svg(
        list(depths),
        {
            "hP": [g["category"]["hierarchical_precision"] for g in depths.values()],
            "hR": [g["category"]["hierarchical_recall"] for g in depths.values()],
            "hF1": [g["category"]["hierarchical_f1"] for g in depths.values()],
        },
        "chart-depth",
        "Hierarchical P / R / F1 by gold depth",
        notes=[f"n={g['category']['n']}" for g in depths.values()],
    )
    confusion = _table(
        ("gold", "predicted", "count"),
        [[escape(p["gold"]), escape(p["predicted"]), str(p["count"])] for p in c["confusion_pairs"]],
        table_id="confusion",
        numeric_from=2,
    )
    attributes = _table(
        ("attribute", "products", "gold values", "predicted values", "precision", "recall", "F1"),
        [
            [
                escape(h),
                str(r["products"]),
                str(r["gold_values"]),
                str(r["predicted_values"]),
                _fmt(r["precision"]),
                _fmt(r["recall"]),
                _fmt(r["f1"]),
            ]
            for h, r in a["per_attribute"].items()
        ],
        table_id="attributes",
    )
    unmappable_cats = _table(
        ("gold taxonomy", "gold path", "count"),
        [[escape(r["taxonomy"]), escape(r["path"]), str(r["count"])] for r in un["categories"]["by_path"]],
        table_id="unmappable-categories",
        numeric_from=2,
    )
    reasons = ", ".join(f"{escape(k)}: {v}" for k, v in un["categories"]["by_reason"].items()) or "none"
    handle_rows = [[escape(h), str(r["records"]), str(r["values"])] for h, r in un["attribute_handles"].items()]
    value_rows = [
        [escape(h), escape(v), str(n)]
        for h, values in un["attribute_values"]["by_handle"].items()
        for v, n in values.items()
    ]
    inputs = metrics.get("inputs", {})
    input_notes = ", ".join(f"{escape(k)}: {v}" for k, v in inputs.items() if k != "examples" and k != "golden" and v)
    sections = [
        f'<h1>{title}</h1><p class="meta">{meta}</p>',
        "<h2>Headline</h2>",
        headline,
        '<p class="note">Accuracy: the predicted category is the gold category. hP/hR/hF1: Kiritchenko et al., '
        "micro-averaged over the gold category and its ancestors (the vertical counts; the implicit root above "
        "the verticals does not). An unresolved or missing prediction counts as an empty set: it lowers recall, "
        "not precision. Attribute scores cover the attributes each gold record annotates; predicted values on "
        f"other attributes are not scored ({a.get('unannotated_predicted_values', 0)} of them). "
        "Definitions: docs/EVALUATION.md.</p>",
        "<h2>Rates</h2>",
        rates,
        "<h2>Per vertical and per depth</h2>",
        f'<div class="charts">{vertical_chart}{depth_chart}</div>',
        _table(("gold vertical", *_GROUP_HEADERS[1:]), _group_rows(verticals), table_id="per-vertical"),
        _table(
            ("gold depth", *_GROUP_HEADERS[1:]),
            _group_rows({f"depth {k}": v for k, v in depths.items()}),
            table_id="per-depth",
        ),
        "<h2>Per store</h2>",
        _table(("store", *_GROUP_HEADERS[1:]), _group_rows(metrics["per_store"]), table_id="per-store"),
        *_calibration_sections(c),
        f"<h2>Top {len(c['confusion_pairs'])} confusion pairs</h2>",
        confusion,
        "<h2>Attributes</h2>",
        f'<p class="note">micro P {_fmt(a["micro_precision"])} · R {_fmt(a["micro_recall"])} · F1 {_fmt(a["micro_f1"])} '
        f"over {a['products']} products with gold attributes.</p>",
        attributes,
        "<h2>Unmappable gold labels</h2>",
        f'<p class="note">Gold categories that are not in taxonomy {escape(str(run.get("taxonomy_version") or ""))} '
        f"and not in a mapping file are left out of the category metrics, never dropped silently: "
        f"{un['categories']['count']} ({reasons}). Gold attribute values that map to no taxonomy value are left out "
        f"of the attribute scores: {un['attribute_values']['count']}.</p>",
        unmappable_cats,
        _table(
            ("gold attribute handle (no taxonomy attribute)", "records", "values"),
            handle_rows,
            table_id="unmappable-handles",
        ),
        _table(("gold attribute handle", "value", "count"), value_rows, table_id="unmappable-values", numeric_from=2),
    ]
    if input_notes:
        sections.append(f'<p class="note">Input notes: {input_notes}.</p>')
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )
