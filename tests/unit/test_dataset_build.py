"""`productlens dataset build` / `score-annotations` (issue 13 item 1) on small fixtures."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from taxonomy.loader import SAMPLE_TAXONOMY_DIR, load_taxonomy
from training.dataset.annotations import score_annotations, wilson_interval
from training.dataset.build import (
    BuildConfig,
    BuildInputs,
    Row,
    assign_splits,
    build_dataset,
    cap_per_category,
    consensus,
    skew,
    write_outputs,
)
from training.dataset.judge import BaselineJudge, JudgeAnswer, PredictionsJudge, decide
from training.dataset.schema import PARQUET_SCHEMA
from training.dataset.sources import (
    LabelledRecord,
    read_labelled_jsonl,
    read_predictions,
    read_reviewed,
    read_shopify_csv,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "training"
TEE = "gid://shopify/TaxonomyCategory/aa-1-13-8"
SHORTS = "gid://shopify/TaxonomyCategory/aa-1-14"
RINGS = "gid://shopify/TaxonomyCategory/aa-6-9"
JEWELRY = "gid://shopify/TaxonomyCategory/aa-6"


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy(SAMPLE_TAXONOMY_DIR)


def _inputs(*, csv: bool = True, predictions: bool = False, reviewed: bool = False) -> BuildInputs:
    inputs = BuildInputs()
    readers = [read_labelled_jsonl(FIX / "golden_small.jsonl")]
    if csv:
        readers.append(read_shopify_csv(FIX / "shopify_export.csv", store="striker"))
    for got in readers:
        inputs.records += got.records
        inputs.problems += got.problems
    if predictions:
        opinions, problems = read_predictions(FIX / "predictions_a.jsonl")
        inputs.predictions.append(opinions)
        inputs.problems += problems
    if reviewed:
        inputs.reviewed, problems = read_reviewed(FIX / "reviewed.jsonl")
        inputs.problems += problems
    return inputs


# -- sources -----------------------------------------------------------------------------


def test_shopify_csv_groups_rows_by_handle_and_reads_metafields():
    got = read_shopify_csv(FIX / "shopify_export.csv", store="striker")
    by_id = {r.product_id: r for r in got.records}
    assert set(by_id) == {"striker#kit-home", "striker#kit-away", "striker#gold-band"}
    home = by_id["striker#kit-home"]
    assert home.title == "Home Kit 2025"
    assert "<" not in home.description and "home" in home.description
    assert home.image_urls == ("https://cdn.example.com/kit-home-1.jpg", "https://cdn.example.com/kit-home-2.jpg")
    assert dict(home.variant_options) == {"Size": ("S", "M", "L"), "Color": ("Red",)}
    assert dict(home.attributes) == {"color-pattern": ("red", "white"), "target-gender": ("male",)}
    assert home.tags == ("football", "home")
    # The current export's column name: "Age group (product.metafields.shopify.age-group)".
    assert dict(by_id["striker#kit-away"].attributes)["age-group"] == ("kids",)
    # "Title / Default Title" is Shopify's marker for no options.
    assert by_id["striker#gold-band"].variant_options == ()
    reasons = Counter(p.kind for p in got.problems)
    assert reasons == {"malformed_row": 3}  # empty Handle, too many cells, no title


def test_jsonl_reader_counts_malformed_and_empty():
    got = read_labelled_jsonl(FIX / "golden_small.jsonl")
    assert len(got.records) == 17
    assert [p.line for p in got.problems if p.kind == "malformed_row"] == [18, 19, 20]
    empty = read_labelled_jsonl(FIX / "empty.jsonl")
    assert empty.records == [] and [p.kind for p in empty.problems] == ["empty_input"]
    missing = read_labelled_jsonl(FIX / "does-not-exist.jsonl")
    assert [p.kind for p in missing.problems] == ["unreadable_file"]


def test_reviewed_and_predictions_readers():
    labels, problems = read_reviewed(FIX / "reviewed.jsonl")
    assert [v.product_id for v in labels] == ["store-a#shorts-2", "store-z#nothing", "store-a#shorts-1", None]
    assert labels[-1].prediction_id == "pred-ring-2"
    assert labels[0].attributes == {"color": ["Blue"]} and labels[0].vetted_by == "reviewer@example.com"
    assert [p.kind for p in problems] == ["malformed_review"]
    opinions, problems = read_predictions(FIX / "predictions_a.jsonl")
    assert opinions["store-a#tee-1"].category_id == TEE and opinions["store-a#tee-1"].probability == 0.95
    assert [p.kind for p in problems] == ["malformed_prediction"]


# -- consensus, sampling, skew, splits ----------------------------------------------------


def test_consensus_intersection_by_default_and_k_of_n():
    a = {"color": {"Red", "Blue"}, "fabric": {"Cotton"}}
    b = {"color": {"red"}, "fabric": {"Cotton"}}
    c = {"color": {"Red"}, "size": {"M"}}
    kept, dropped = consensus([a, b, c])
    assert kept == {"color": ["Red"]} and dropped == 3  # blue, cotton (2 of 3), M
    kept, _ = consensus([a, b, c], k=2)
    assert kept == {"color": ["Red"], "fabric": ["Cotton"]}
    kept, _ = consensus([a, b, c], k=1)
    assert kept["size"] == ["M"] and sorted(kept["color"]) == ["Blue", "Red"]
    assert consensus([]) == ({}, 0)
    # k larger than the sources present: nothing reaches agreement.
    assert consensus([a], k=2)[0] == {}


def _row(taxonomy, cid: str, i: int, store: str = "s") -> Row:
    rec = LabelledRecord(product_id=f"p{i}", store=store, title=f"product {i}")
    return Row(rec, f"{i:032x}", taxonomy.categories[cid], "exact")


def test_cap_per_category_is_uniform_seeded_and_reports_skew(taxonomy):
    rows = [_row(taxonomy, TEE, i) for i in range(50)] + [_row(taxonomy, RINGS, 100 + i) for i in range(5)]
    capped = cap_per_category(rows, 5, seed=1)
    assert Counter(r.category.id for r in capped) == {TEE: 5, RINGS: 5}
    assert [r.content_hash for r in capped] == [r.content_hash for r in cap_per_category(rows, 5, seed=1)]
    assert [r.content_hash for r in capped] != [r.content_hash for r in cap_per_category(rows, 5, seed=2)]
    before = skew(Counter(r.category.id for r in rows))
    after = skew(Counter(r.category.id for r in capped))
    assert before["top_share"] == round(50 / 55, 4) and after["top_share"] == 0.5
    assert after["gini"] == 0.0 and after["normalised_entropy"] == 1.0 and before["gini"] > 0.3
    assert cap_per_category(rows, None, 1) == rows
    assert skew({})["top_share"] is None


def test_gini_known_value():
    # Two categories with 1 and 3: mean absolute difference 1/2 ... G = 0.25.
    assert math.isclose(skew({"a": 1, "b": 3})["gini"], 0.25)


@pytest.mark.parametrize("by_store", [False, True])
def test_splits_have_no_leakage(taxonomy, by_store):
    rows = [_row(taxonomy, TEE, i, store=f"store{i % 7}") for i in range(200)]
    sizes = assign_splits(rows, (0.8, 0.1, 0.1), by_store=by_store, seed=3)
    assert sum(sizes.values()) == 200 and all(r.split for r in rows)
    where: dict[str, set[str]] = {}
    for r in rows:
        where.setdefault(r.content_hash, set()).add(r.split)
        if by_store:
            where.setdefault("store:" + r.record.store, set()).add(r.split)
    assert all(len(s) == 1 for s in where.values())
    if not by_store:
        assert 150 <= sizes["train"] <= 170 and sizes["validation"] >= 15 and sizes["test"] >= 15


def test_build_end_to_end_no_leakage_with_duplicates(taxonomy, tmp_path):
    # The duplicate content of ring-1 must end in one split only, under either key.
    for by_store in (False, True):
        cfg = BuildConfig(cap_per_category=None, split_by_store=by_store, seed=5)
        result = build_dataset(_inputs(), taxonomy, cfg)
        hashes = Counter(r.content_hash for r in result.rows)
        assert max(hashes.values()) == 1
        if by_store:
            stores: dict[str, set[str]] = {}
            for r in result.rows:
                stores.setdefault(r.record.store, set()).add(r.split)
            assert all(len(s) == 1 for s in stores.values())


# -- bad input ----------------------------------------------------------------------------


def test_every_bad_input_is_counted(taxonomy):
    inputs = _inputs(predictions=True, reviewed=True)
    more = read_labelled_jsonl(FIX / "empty.jsonl")
    inputs.problems += more.problems
    result = build_dataset(inputs, taxonomy, BuildConfig(cap_per_category=None))
    bad = result.stats["bad_input"]
    assert bad["malformed_rows"] == 6
    assert bad["malformed_predictions"] == 1
    assert bad["malformed_reviews"] == 1
    assert bad["empty_inputs"] == 1
    assert bad["unknown_categories"] == 1
    assert bad["other_taxonomy_labels"] == 1
    assert bad["no_label"] == 1
    assert bad["other_version_labels"] == 2  # "Shirts & Tops > T-Shirts" (tee-5 and kit-away)
    assert bad["conflicting_labels"] == 1 and bad["duplicates_removed"] == 1
    assert bad["categories_with_one_example"] >= 1  # the necklace, the dog toy
    assert bad["reviewed_unmatched"] == 1 and bad["reviewed_unknown_category"] == 1
    # The conflict's majority is a tie: the first label wins, and the row is flagged.
    ring = next(r for r in result.rows if r.record.title == "Antique Gold Ring")
    assert ring.category.id == RINGS and ring.label_status == "flagged"
    assert "conflicting labels" in ring.label_reason


def test_empty_input_builds_an_empty_dataset(taxonomy, tmp_path):
    inputs = BuildInputs()
    got = read_labelled_jsonl(FIX / "empty.jsonl")
    inputs.problems += got.problems
    cfg = BuildConfig()
    result = build_dataset(inputs, taxonomy, cfg)
    written = write_outputs(result, tmp_path, cfg)
    assert pq.read_table(written["train"]).num_rows == 0
    assert pq.read_table(written["train"]).schema.equals(PARQUET_SCHEMA, check_metadata=False)
    card = written["card"].read_text()
    assert "empty inputs" in card and "| 1 |" in card


# -- judge -------------------------------------------------------------------------------


def test_decide_rule(taxonomy):
    tee = taxonomy.categories[TEE]
    ring = taxonomy.categories[RINGS]
    assert decide(taxonomy, tee, JudgeAnswer(TEE, 0.2), "j").status == "confirmed"
    # An ancestor the judge backed off to is on the lineage.
    assert decide(taxonomy, ring, JudgeAnswer(JEWELRY, 0.5), "j").status == "confirmed"
    v = decide(taxonomy, tee, JudgeAnswer(SHORTS, 0.9), "j", threshold=0.8)
    assert (v.status, v.category.id, v.label_source) == ("replaced", SHORTS, "judge") and "0.90" in v.reason
    v = decide(taxonomy, tee, JudgeAnswer(SHORTS, 0.5), "j", threshold=0.8)
    assert (v.status, v.category.id) == ("flagged", TEE)
    assert decide(taxonomy, tee, None, "j").status == "flagged"
    assert decide(taxonomy, tee, JudgeAnswer("gid://nope", 1.0), "j").status == "flagged"


def test_predictions_judge_in_build(taxonomy):
    judge = PredictionsJudge(FIX / "predictions_a.jsonl")
    result = build_dataset(_inputs(csv=False), taxonomy, BuildConfig(cap_per_category=None), judge=judge)
    by_id = {r.record.product_id: r for r in result.rows}
    assert by_id["store-a#tee-1"].label_status == "confirmed"
    assert by_id["store-a#tee-2"].label_status == "replaced" and by_id["store-a#tee-2"].category.id == SHORTS
    assert by_id["store-a#tee-3"].label_status == "flagged"  # p=0.3, off lineage
    assert by_id["store-b#ring-1"].label_status == "confirmed"  # Jewelry is an ancestor
    assert by_id["store-a#tee-4"].label_status == "flagged" and "no answer" in by_id["store-a#tee-4"].label_reason


def test_baseline_judge_uses_rank_and_tree_ids(taxonomy):
    ids = (TEE, SHORTS)
    seen = []

    class FakeModel:
        retriever = SimpleNamespace(tree=SimpleNamespace(ids=ids))

        def rank(self, products):
            seen.extend(products)
            return [SimpleNamespace(index=1, probability=0.99) for _ in products]

    judge = BaselineJudge(taxonomy, model=FakeModel(), batch_size=2)
    recs = [LabelledRecord(product_id=f"p{i}", title=f"t {i}", variant_options=(("Size", ("S",)),)) for i in range(3)]
    answers = judge.answer(recs)
    assert [a.category_id for a in answers] == [SHORTS] * 3 and answers[0].probability == 0.99
    assert seen[0].variant_options == {"Size": ("S",)}


# -- attributes through the build --------------------------------------------------------


def test_merchant_metafields_normalised_and_intersected_with_predictions(taxonomy):
    result = build_dataset(_inputs(csv=False, predictions=True), taxonomy, BuildConfig(cap_per_category=None))
    by_id = {r.record.product_id: r for r in result.rows}
    # merchant {color: Red, target-gender: male} ∩ model {color: Red, target-gender: Male, fabric: Cotton}
    assert by_id["store-a#tee-1"].attributes == {"color": ["Red"], "target-gender": ["Male"]}
    # merchant Blue vs model Green: no agreement, nothing kept
    assert by_id["store-a#tee-2"].attributes == {}
    assert by_id["store-b#ring-1"].attributes == {"jewelry-material": ["Gold"]}
    assert result.stats["attributes"]["values_dropped_by_consensus"] >= 3


def test_reviewed_label_overrides(taxonomy):
    result = build_dataset(_inputs(csv=False, reviewed=True), taxonomy, BuildConfig(cap_per_category=None))
    row = next(r for r in result.rows if r.record.product_id == "store-a#shorts-2")
    assert (row.label_source, row.label_status, row.attributes) == ("reviewed", "confirmed", {"color": ["Blue"]})


def test_reviewed_label_by_prediction_id_joins_through_predictions(taxonomy):
    result = build_dataset(
        _inputs(csv=False, predictions=True, reviewed=True), taxonomy, BuildConfig(cap_per_category=None)
    )
    row = next(r for r in result.rows if r.record.product_id == "store-b#ring-2")
    assert row.category.full_name == "Apparel & Accessories > Jewelry > Necklaces"
    assert row.label_reason == "vetted by reviewer2@example.com"
    assert result.stats["reviewed_applied"] == 2


def test_hostile_csv_cells_are_counted_not_raised(tmp_path, monkeypatch):
    import training.dataset.sources as sources

    monkeypatch.setattr(sources, "MAX_CSV_FIELD", 131072)
    path = tmp_path / "hostile.csv"
    path.write_text(
        "Handle,Title,Product Category\n"
        "ok,Fine Product,Apparel & Accessories > Jewelry > Rings\n"
        f"big,{'x' * 200_000},Apparel & Accessories > Jewelry > Rings\n"
        "after,Never Read,Apparel & Accessories > Jewelry > Rings\n"
    )
    got = read_shopify_csv(path)
    assert [r.product_id for r in got.records] == ["hostile#ok"]
    assert [p.kind for p in got.problems] == ["malformed_row"] and "CSV error" in got.problems[0].reason
    not_csv = tmp_path / "notes.csv"
    not_csv.write_text("hello,world\n1,2\n")
    assert [p.kind for p in read_shopify_csv(not_csv).problems] == ["malformed_row", "empty_input"]


# -- annotations -------------------------------------------------------------------------


def test_wilson_interval_known_values():
    # Reference values (Wilson 1927; e.g. statsmodels proportion_confint(method="wilson")).
    p, lo, hi = wilson_interval(8, 10)
    assert p == 0.8 and math.isclose(lo, 0.4901624, abs_tol=1e-6) and math.isclose(hi, 0.9433178, abs_tol=1e-6)
    _, lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and math.isclose(hi, 0.2775328, abs_tol=1e-6)
    _, lo, hi = wilson_interval(10, 10)
    assert math.isclose(lo, 0.7224672, abs_tol=1e-6) and hi == 1.0
    _, lo, hi = wilson_interval(50, 100)
    assert math.isclose(lo, 0.4038315, abs_tol=1e-6) and math.isclose(hi, 0.5961685, abs_tol=1e-6)
    assert wilson_interval(0, 0) == (None, None, None)
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def test_score_annotations_counts_pending_malformed_duplicates():
    scores = score_annotations(FIX / "verdicts.csv")
    assert scores["overall"]["annotated"] == 4 and scores["overall"]["correct"] == 3
    assert scores["by_vertical"]["Apparel & Accessories"]["precision"] == round(2 / 3, 4)
    assert scores["not_annotated"] == 1 and scores["malformed_verdicts"] == 1 and scores["duplicate_verdicts"] == 1


# -- CLI ---------------------------------------------------------------------------------


def test_cli_build_and_score(tmp_path):
    from pipelines.cli import app

    out = tmp_path / "ds"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "dataset", "build",
            "--labelled", str(FIX / "golden_small.jsonl"),
            "--labelled", str(FIX / "empty.jsonl"),
            "--shopify-csv", str(FIX / "shopify_export.csv"),
            "--predictions", str(FIX / "predictions_a.jsonl"),
            "--reviewed", str(FIX / "reviewed.jsonl"),
            "--taxonomy", str(SAMPLE_TAXONOMY_DIR),
            "--cap-per-category", "3",
            "--split", "0.6/0.2/0.2",
            "--split-by-store",
            "--judge", str(FIX / "predictions_a.jsonl"),
            "--annotation-sample", "2",
            "--output", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for name in ("train.parquet", "validation.parquet", "test.parquet", "annotation_sample.csv", "stats.json"):
        assert (out / name).is_file()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["bad_input"]["malformed_rows"] == 6 and stats["split_by"] == "store"
    stores = [
        set(pq.read_table(out / f"{s}.parquet").column("store").to_pylist()) for s in ("train", "validation", "test")
    ]
    assert not (stores[0] & stores[1] or stores[0] & stores[2] or stores[1] & stores[2])
    card = (out / "dataset_card.md").read_text()
    for words in ("## Bad input", "malformed rows", "conflicting labels", "another Shopify taxonomy version", "Gini"):
        assert words in card
    table = pq.read_table(out / "train.parquet")
    assert table.schema.equals(PARQUET_SCHEMA, check_metadata=False)

    sample = out / "annotation_sample.csv"
    lines = sample.read_text().splitlines()
    verdicts = tmp_path / "verdicts.csv"
    verdicts.write_text("id,verdict\n" + "\n".join(f"{ln.split(',')[0]},correct" for ln in lines[1:]) + "\n")
    res = runner.invoke(app, ["dataset", "score-annotations", str(verdicts), "--sample", str(sample)])
    assert res.exit_code == 0, res.output
    assert '"precision": 1.0' in res.output


def test_cli_refuses_bad_flags(tmp_path):
    from pipelines.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["dataset", "build", "--output", str(tmp_path)])
    assert res.exit_code == 2
    res = runner.invoke(
        app,
        ["dataset", "build", "--labelled", str(FIX / "golden_small.jsonl"), "--split", "0.5/0.5", "-o", str(tmp_path)],
    )
    assert res.exit_code == 2 and "split" in res.output


def test_two_stores_by_store_fill_train_and_test_and_report_the_empty_split(taxonomy):
    rows = [_row(taxonomy, TEE, i, store="big" if i < 30 else "small") for i in range(40)]
    sizes = assign_splits(rows, (0.8, 0.1, 0.1), by_store=True, seed=1)
    assert sizes["train"] > 0 and sizes["test"] > 0 and sizes["validation"] == 0
    inputs = BuildInputs(records=[r.record.model_copy(update={"raw_label": TEE}) for r in rows])
    result = build_dataset(inputs, taxonomy, BuildConfig(cap_per_category=None, split_by_store=True))
    assert result.stats["empty_splits"] == ["validation"]


def test_cli_defaults_match_build_config():
    import inspect

    from pipelines.dataset_cli import build, parse_split

    params = inspect.signature(build).parameters
    d = BuildConfig()
    assert params["cap_per_category"].default == d.cap_per_category
    assert params["consensus_k"].default == d.consensus_k
    assert parse_split(params["split"].default) == d.split
    assert params["split_by_store"].default == d.split_by_store
    assert params["seed"].default == d.seed
    assert params["annotation_sample"].default == d.annotation_sample
    assert params["replace_threshold"].default == d.replace_threshold
