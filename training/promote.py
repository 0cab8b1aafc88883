"""The evaluation gate before a model version ships (`productlens model promote`).

Both models answer the same golden file through the `evaluate` pipeline (in-process);
the candidate is refused when hierarchical F1 or attribute micro F1 drops by more than the
tolerance overall, or in any gold vertical with at least `min_vertical` products (a small
vertical's figure moves by chance). A side-by-side HTML report is written either way.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BASELINE", "Check", "GateResult", "resolve_model", "evaluate_model", "compare", "render_html", "promote"]

BASELINE = "product_baseline"
ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = ROOT / "model_repository"
METRICS = (("hF1", ("category", "hierarchical_f1")), ("attribute F1", ("attributes", "micro_f1")))


@dataclass(frozen=True)
class Check:
    slice: str  # "overall" or "vertical <name>"
    metric: str
    n: int
    baseline: float | None
    candidate: float | None
    tolerance: float

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.candidate is None:
            return None
        return self.candidate - self.baseline

    @property
    def failed(self) -> bool:
        # An undefined figure (nothing counted) cannot show a drop.
        return self.delta is not None and self.delta < -self.tolerance


@dataclass
class GateResult:
    candidate: str
    baseline: str
    checks: list[Check] = field(default_factory=list)
    candidate_metrics: dict[str, Any] = field(default_factory=dict)
    baseline_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return not any(c.failed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]


def resolve_model(spec: str, model_repository: Path = MODEL_REPOSITORY) -> str | Path:
    """`product_baseline`, or a trained model: a directory, or a name under the repository."""
    from transforms.model.trained import is_trained_model_dir

    if spec == BASELINE:
        return BASELINE
    for path in (Path(spec), model_repository / spec):
        if is_trained_model_dir(path):
            return path
    raise ValueError(f"{spec!r} is neither {BASELINE} nor a trained model directory (here or in {model_repository})")


def _factory(model: str | Path, taxonomy: str | None) -> Any:
    from transforms.model.client import InProcessBaseline
    from transforms.model.trained import InProcessTrained

    if model == BASELINE:
        return InProcessBaseline(taxonomy)
    return InProcessTrained(str(model), taxonomy)


def evaluate_model(
    model: str | Path, golden: str, out: Path, taxonomy: str | None, limit: int | None = None
) -> dict[str, Any]:
    from pipelines.evaluate import evaluation_options, run

    # Text only: the gate compares models, and remote images would make it depend on the network.
    options = evaluation_options(golden, str(out), taxonomy=taxonomy, limit=limit, images=False)
    return run(options, model=_factory(model, taxonomy)).metrics


def _get(m: dict[str, Any], path: tuple[str, ...]) -> float | None:
    for key in path:
        m = (m or {}).get(key)  # type: ignore[assignment]
    return m if isinstance(m, (int, float)) else None  # type: ignore[return-value]


def compare(baseline: dict[str, Any], candidate: dict[str, Any], tolerance: float, min_vertical: int) -> list[Check]:
    checks = [
        Check("overall", label, int(baseline.get("n", 0)), _get(baseline, path), _get(candidate, path), tolerance)
        for label, path in METRICS
    ]
    b_verticals = (baseline.get("category") or {}).get("per_vertical") or {}
    c_verticals = (candidate.get("category") or {}).get("per_vertical") or {}
    for name in sorted(b_verticals):
        b, c = b_verticals[name], c_verticals.get(name, {})
        n = int(b.get("n", 0))
        if n < min_vertical:
            continue
        for label, path in METRICS:
            checks.append(Check(f"vertical {name}", label, n, _get(b, path), _get(c, path), tolerance))
    return checks


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def _vertical_rows(result: GateResult, min_vertical: int) -> list[list[str]]:
    """Every vertical of either model, gated or not (n < min_vertical says why not)."""
    b_all = (result.baseline_metrics.get("category") or {}).get("per_vertical") or {}
    c_all = (result.candidate_metrics.get("category") or {}).get("per_vertical") or {}
    rows = []
    for name in sorted(set(b_all) | set(c_all)):
        b, c = b_all.get(name, {}), c_all.get(name, {})
        n = int(b.get("n", c.get("n", 0)))
        cells = [name, str(n)]
        for _, path in METRICS:
            bv, cv = _get(b, path), _get(c, path)
            cells += [_fmt(bv), _fmt(cv), "–" if bv is None or cv is None else f"{cv - bv:+.4f}"]
        cells.append("gated" if n >= min_vertical else f"not gated (n < {min_vertical})")
        rows.append(cells)
    return rows


def render_html(result: GateResult, golden: str, tolerance: float, min_vertical: int) -> str:
    e = html.escape
    verdict = "PROMOTED" if result.promoted else "REFUSED"
    checks = "".join(
        "<tr class='{cls}'><td>{s}</td><td>{m}</td><td>{n}</td><td>{b}</td><td>{c}</td><td>{d}</td><td>{v}</td></tr>".format(
            cls="fail" if c.failed else "ok",
            s=e(c.slice),
            m=e(c.metric),
            n=c.n,
            b=_fmt(c.baseline),
            c=_fmt(c.candidate),
            d="–" if c.delta is None else f"{c.delta:+.4f}",
            v="drop beyond tolerance" if c.failed else "ok",
        )
        for c in result.checks
    )
    verticals = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>"
        for row in _vertical_rows(result, min_vertical)
    )
    runs = "".join(
        f"<tr><td>{e(label)}</td><td>{e(str((m.get('run') or {}).get('model_version', '')))}</td>"
        f"<td>{e(str((m.get('run') or {}).get('taxonomy_version', '')))}</td><td>{m.get('n', '')}</td></tr>"
        for label, m in (("baseline", result.baseline_metrics), ("candidate", result.candidate_metrics))
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>promote {e(result.candidate)}: {verdict}</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}
tr.fail td{{background:#fdd}} .verdict{{font-size:1.4em}}</style></head><body>
<h1>Evaluation gate: {e(result.candidate)} against {e(result.baseline)}</h1>
<p class="verdict">{verdict}</p>
<p>golden file {e(golden)}; tolerance {tolerance}; verticals with at least {min_vertical} products are gated;
generated {e(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))}</p>
<h2>Models</h2><table><tr><th></th><th>model version</th><th>taxonomy</th><th>products</th></tr>{runs}</table>
<h2>Checks</h2><table><tr><th>slice</th><th>metric</th><th>n</th><th>baseline</th><th>candidate</th><th>Δ</th>
<th>verdict</th></tr>{checks}</table>
<h2>Per vertical</h2><table><tr><th>vertical</th><th>n</th><th>baseline hF1</th><th>candidate hF1</th><th>Δ</th>
<th>baseline attr F1</th><th>candidate attr F1</th><th>Δ</th><th></th></tr>{verticals}</table>
</body></html>
"""


def promote(
    candidate: str,
    baseline: str,
    golden: str,
    report: Path,
    *,
    taxonomy: str | None = None,
    tolerance: float = 0.01,
    min_vertical: int = 30,
    limit: int | None = None,
    model_repository: Path = MODEL_REPOSITORY,
    work_dir: Path | None = None,
) -> GateResult:
    """Evaluate both, compare, write the report; on success write `PROMOTED` into the
    candidate's directory (what a deployment reads to pick the version to serve)."""
    import tempfile

    cand, base = resolve_model(candidate, model_repository), resolve_model(baseline, model_repository)
    with tempfile.TemporaryDirectory(prefix="productlens-promote-", dir=work_dir) as tmp:
        b = evaluate_model(base, golden, Path(tmp) / "baseline", taxonomy, limit)
        c = evaluate_model(cand, golden, Path(tmp) / "candidate", taxonomy, limit)
    result = GateResult(candidate, baseline, compare(b, c, tolerance, min_vertical), c, b)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render_html(result, golden, tolerance, min_vertical), encoding="utf-8")
    if result.promoted and isinstance(cand, Path):
        marker = {
            "model": cand.name,
            "baseline": baseline,
            "golden": golden,
            "tolerance": tolerance,
            "min_vertical": min_vertical,
            "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "checks": [
                {"slice": k.slice, "metric": k.metric, "n": k.n, "baseline": k.baseline, "candidate": k.candidate}
                for k in result.checks
            ],
        }
        (cand / "PROMOTED").write_text(json.dumps(marker, indent=2) + "\n")
    return result
