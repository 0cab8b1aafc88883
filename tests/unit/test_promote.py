"""productlens model promote: train -> the gate passes a model against itself and refuses
a deliberately worse one (exit 1, an HTML report that escapes what it prints)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.test_train_model import (
    KIT_PATH,
    RING_PATH,
    SNEAKER,
    fixture_records,
    train_cli,
    trained,  # noqa: F401 - the module-scoped fixture, reused here
    write_parquet,
)

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A directory name with markup: the report must escape the path it prints.
    path = tmp_path_factory.mktemp("gold") / "<i>golden&.jsonl"
    rows = [(f"{t} away kit 2025", "Football Kit", KIT_PATH, {}) for t in ("Roma", "Lazio", "Inter", "Valencia")]
    rows += [(f"{m} stacking ring", "Rings", RING_PATH, {"color": ["silver"]}) for m in ("Silver", "Sterling", "Opal")]
    with path.open("w") as f:
        for i, (title, kind, category, attributes) in enumerate(rows):
            record = {
                "id": f"fixture/store#{i}",
                "title": title,
                "description": "",
                "product_type": kind,
                "vendor": "Fixture",
                "gold_category_path": category,
                "gold_attributes": attributes,
                "source": "fixture/store/products_export.csv",
            }
            f.write(json.dumps(record) + "\n")
    return path


@pytest.fixture(scope="module")
def worse(trained: Path) -> Path:  # noqa: F811 - the imported fixture
    """A model that always answers Sneakers: every training label is Sneakers, alpha 1."""
    data = write_parquet(trained.parent / "worse.parquet", fixture_records(category_for_all=SNEAKER))
    result = train_cli(data, "always-sneakers", trained.parent, "--alpha", "1")
    assert result.exit_code == 0, result.output
    return trained.parent / "always-sneakers"


def _promote(candidate: Path | str, baseline: Path | str, golden: Path, report: Path, *extra: str) -> object:
    from pipelines.cli import app
    from taxonomy.loader import SAMPLE_TAXONOMY_DIR

    args = ["model", "promote", "--candidate", str(candidate), "--baseline", str(baseline), "--golden", str(golden)]
    args += ["--taxonomy", str(SAMPLE_TAXONOMY_DIR), "--report", str(report), *extra]
    return CliRunner().invoke(app, args)


def test_promote_passes_a_model_against_itself(trained: Path, golden: Path, tmp_path: Path) -> None:  # noqa: F811
    report = tmp_path / "report.html"
    result = _promote(trained, trained, golden, report, "--min-vertical", "3")
    assert result.exit_code == 0, result.output
    marker = json.loads((trained / "PROMOTED").read_text())
    assert marker["model"] == trained.name and all(c["baseline"] == c["candidate"] for c in marker["checks"])
    assert "PROMOTED" in report.read_text()


def test_promote_refuses_a_worse_candidate(trained: Path, worse: Path, golden: Path, tmp_path: Path) -> None:  # noqa: F811
    report = tmp_path / "report.html"
    result = _promote(worse, trained, golden, report, "--min-vertical", "3")
    assert result.exit_code == 1, result.output
    assert not (worse / "PROMOTED").exists()
    text = report.read_text()
    assert "REFUSED" in text and "drop beyond tolerance" in text
    assert "&lt;i&gt;golden&amp;.jsonl" in text and "<i>golden" not in text
    assert "Apparel &amp; Accessories" in text  # the vertical's name, escaped


def test_gate_rules() -> None:
    from training.promote import compare

    def metrics(hf1: float, attr: float | None, verticals: dict[str, tuple[int, float]]) -> dict:
        return {
            "n": 100,
            "category": {
                "hierarchical_f1": hf1,
                "per_vertical": {
                    v: {"n": n, "category": {"hierarchical_f1": f}, "attributes": {}} for v, (n, f) in verticals.items()
                },
            },
            "attributes": {"micro_f1": attr},
        }

    base = metrics(0.80, 0.50, {"Big": (40, 0.8), "Small": (5, 0.9)})
    # Within tolerance overall; a small vertical's drop is not gated; no attribute figure: no drop.
    ok = compare(base, metrics(0.795, None, {"Big": (40, 0.795), "Small": (5, 0.1)}), 0.01, 30)
    assert not any(c.failed for c in ok)
    # A large vertical dropping beyond the tolerance refuses even when overall improves.
    bad = compare(base, metrics(0.85, 0.6, {"Big": (40, 0.7), "Small": (5, 0.9)}), 0.01, 30)
    assert [(c.slice, c.metric) for c in bad if c.failed] == [("vertical Big", "hF1")]


def test_promote_rejects_unknown_models(golden: Path, tmp_path: Path) -> None:
    result = _promote(tmp_path / "nothing", "product_baseline", golden, tmp_path / "r.html")
    assert result.exit_code == 2 and "neither" in result.output


def test_a_dataset_split_can_be_the_golden_set(trained: Path, golden: Path, tmp_path: Path) -> None:  # noqa: F811
    """`dataset build` writes test.parquet; promote reads it as golden records directly."""
    records = [json.loads(line) for line in golden.read_text().splitlines()]
    split = write_parquet(
        tmp_path / "test.parquet",
        [
            {
                "product_id": r["id"],
                "store": "fixture/store",
                "title": r["title"],
                "product_type": r["product_type"],
                "category_full_name": r["gold_category_path"],
                "attributes": json.dumps(r["gold_attributes"]),
                "source": r["source"],
                "split": "test",
            }
            for r in records
        ],
    )
    result = _promote(trained, trained, split, tmp_path / "report" / "r.html")
    assert result.exit_code == 0, result.output
    assert f"golden set: {len(records)} products" in result.output
    written = [json.loads(line) for line in (tmp_path / "report" / "test.golden.jsonl").read_text().splitlines()]
    assert [(w["id"], w["gold_category_path"], w["gold_attributes"]) for w in written] == [
        (r["id"], r["gold_category_path"], r["gold_attributes"]) for r in records
    ]


def test_a_malformed_golden_file_is_a_usage_error_before_any_model_runs(trained: Path, tmp_path: Path) -> None:  # noqa: F811
    bad = tmp_path / "golden.jsonl"
    bad.write_text("not json\n")
    result = _promote(trained, "product_baseline", bad, tmp_path / "r.html")
    assert result.exit_code == 2 and "line 1" in result.output
    garbage = tmp_path / "split.parquet"
    garbage.write_text("not parquet")
    result = _promote(trained, "product_baseline", garbage, tmp_path / "r.html")
    assert result.exit_code == 2 and "not a dataset split" in result.output
