"""`productlens labels export`: only vetted labels leave the review store, in the golden
shape, with their provenance, and `productlens dataset build --labelled` accepts the file.
Also `productlens review add-user` (the password never a flag). The feedback goes in
through `process_feedback` with the bundled policy, so routing and export meet here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pipelines.review_cli import PASSWORD_ENV, register
from service.review.feedback import FeedbackError, FeedbackIn, ServedRecord, process_feedback
from service.review.labels import golden_record, latest_per_product, provenance
from service.review.policy import VettingPolicy
from service.review.second_opinion import CandidatesOpinion
from service.review.store import QueueFilter, ReviewStore
from taxonomy.model import Taxonomy
from transforms.evaluation.metrics import parse_golden, store_of

G = "gid://shopify/TaxonomyCategory/"
TSHIRTS = G + "aa-1-13-8"
DRESSES = G + "aa-1-4"
SKIRTS = G + "aa-1-15"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    from taxonomy.loader import load_taxonomy

    return load_taxonomy(None)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'review.sqlite'}"


@pytest.fixture
def store(db: str) -> Iterator[ReviewStore]:
    s = ReviewStore(db)
    yield s
    s.close()


def served(taxonomy: Taxonomy, pid: str, category_id: str, *, candidates: list[tuple[str, float]], shop: str = "gid://shopify/Shop/7", product: str | None = None, title: str = "Striped cotton tee") -> ServedRecord:  # fmt: skip
    c = taxonomy.get(category_id)
    assert c is not None
    cands = [{"id": i, "full_name": taxonomy.get(i).full_name, "score": s} for i, s in candidates]  # type: ignore[union-attr]
    prediction = {
        "prediction_id": pid,
        "product_id": product or f"prod-{pid}",
        "shop_id": shop,
        "model_version": "baseline-hybrid-3",
        "taxonomy_version": taxonomy.version,
        "category": {"id": c.id, "full_name": c.full_name, "score": candidates[0][1], "candidates": cands},
        "attributes": [],
        "status": "ok",
    }
    body = {
        "title": title,
        "description_html": "<p>Soft <b>cotton</b>.</p>",
        "image_urls": ["https://cdn.example/t.jpg"],
        "product_type": "Tops",
        "vendor": "Acme",
        "tags": ["cotton"],
    }
    return ServedRecord(prediction, body, T0)


def fill(store: ReviewStore, taxonomy: Taxonomy) -> dict[str, int]:
    """An auto-vetted correction, an approved correction with a colour (k = 2), a pending
    one, a rejected one and an unsampled accept."""
    policy = VettingPolicy.load(taxonomy=taxonomy)
    judge = CandidatesOpinion(taxonomy, policy.second_opinion.agree_threshold)
    store.add_annotator("ann", "pw")
    store.add_annotator("bob", "pw")
    store.add_annotator("root", "pw", "admin")
    ids: dict[str, int] = {}

    def send(name: str, s: ServedRecord, fb: FeedbackIn, at: datetime = T0) -> None:
        r = process_feedback(store, policy, judge, taxonomy, s, fb, at)
        ids[name] = r.item_id

    # The served candidates give dresses 0.4: the model agrees, the policy auto-vets.
    s1 = served(taxonomy, "p1", TSHIRTS, candidates=[(TSHIRTS, 0.5), (DRESSES, 0.4)], title="Jersey dress")
    send(
        "auto",
        s1,
        FeedbackIn(prediction_id="p1", shop_id="gid://shopify/Shop/7", action="correct", category_id="aa-1-4"),
    )
    # A disagreement with a subjective colour: two annotators must agree.
    s2 = served(taxonomy, "p2", TSHIRTS, candidates=[(TSHIRTS, 0.9)], title="Pleated skirt")
    body = FeedbackIn(
        prediction_id="p2", shop_id="gid://shopify/Shop/7", action="correct", category_id=SKIRTS, attributes={"color": ["navy"], "fabric": ["Cotton"]}
    )  # fmt: skip
    send("approved", s2, body)
    # Pending and rejected ones must not be exported.
    s3 = served(taxonomy, "p3", TSHIRTS, candidates=[(TSHIRTS, 0.9)])
    send("pending", s3, FeedbackIn(prediction_id="p3", shop_id="gid://shopify/Shop/7", action="delete"))
    s4 = served(taxonomy, "p4", TSHIRTS, candidates=[(TSHIRTS, 0.9)])
    send(
        "rejected",
        s4,
        FeedbackIn(prediction_id="p4", shop_id="gid://shopify/Shop/7", action="correct", category_id=SKIRTS),
    )
    # An accept outside the audit sample: stored, not vetted.
    s5 = next(
        served(taxonomy, p, TSHIRTS, candidates=[(TSHIRTS, 0.9)])
        for p in (f"acc{i}" for i in range(100))
        if not __import__("service.review.policy", fromlist=["audit_sampled"]).audit_sampled(p, 0.1)
    )
    send("accept", s5, FeedbackIn(prediction_id=s5.prediction_id, shop_id="gid://shopify/Shop/7", action="accept"))
    store.decide(ids["approved"], "ann", "approve", now=T0 + timedelta(minutes=1))
    store.decide(ids["approved"], "bob", "approve", now=T0 + timedelta(minutes=2))
    store.decide(ids["rejected"], "root", "reject")
    return ids


def test_routing_through_process_feedback(store: ReviewStore, taxonomy: Taxonomy) -> None:
    ids = fill(store, taxonomy)
    auto = store.item(ids["auto"])
    assert auto is not None and auto.status == "auto_vetted" and auto.second_opinion is not None
    assert auto.second_opinion.agrees and auto.second_opinion.judge == "served_candidates"
    approved = store.item(ids["approved"])
    assert approved is not None and approved.status == "approved" and approved.approvals_needed == 2
    assert set(approved.reasons) == {"correction", "disagreement", "subjective"}
    assert approved.feedback.corrected_category_path == taxonomy.get(SKIRTS).full_name  # type: ignore[union-attr]
    assert store.item(ids["accept"]).status == "not_sampled"  # type: ignore[union-attr]
    assert [i.id for i in store.queue(QueueFilter())] == [ids["pending"]]
    # A replay answers from the store; an unknown value is refused naming it.
    policy = VettingPolicy.load()
    again = process_feedback(
        store, policy, None, taxonomy, served(taxonomy, "p1", TSHIRTS, candidates=[(TSHIRTS, 1.0)]),
        FeedbackIn(prediction_id="p1", shop_id="gid://shopify/Shop/7", action="correct", category_id=DRESSES),
    )  # fmt: skip
    assert not again.created and again.status == "auto_vetted"
    with pytest.raises(FeedbackError, match="Plaid-ish"):
        process_feedback(
            store, policy, None, taxonomy, served(taxonomy, "p9", TSHIRTS, candidates=[(TSHIRTS, 1.0)]),
            FeedbackIn(prediction_id="p9", shop_id="gid://shopify/Shop/7", action="correct", category_id=DRESSES, attributes={"pattern": ["Plaid-ish"]}),
        )  # fmt: skip
    assert not store.has_prediction("p9")
    with pytest.raises(FeedbackError, match="not served to shop"):
        process_feedback(
            store, policy, None, taxonomy, served(taxonomy, "p8", TSHIRTS, candidates=[(TSHIRTS, 1.0)]),
            FeedbackIn(prediction_id="p8", shop_id="another-shop", action="accept"),
        )  # fmt: skip


def test_export_writes_only_vetted_labels_in_golden_shape(
    store: ReviewStore, db: str, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    ids = fill(store, taxonomy)
    app = typer.Typer()
    register(app)
    out = tmp_path / "vetted.jsonl"
    result = CliRunner().invoke(app, ["labels", "export", "--db", db, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 2 vetted labels" in result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [set(r) for r in lines] == [
        {"id", "title", "description", "image_urls", "vendor", "product_type", "gold_category_path",
         "gold_category_taxonomy", "gold_attributes", "source"}
    ] * 2  # fmt: skip
    auto, approved = lines
    assert auto["gold_category_path"] == "Apparel & Accessories > Clothing > Dresses"
    assert auto["gold_category_taxonomy"] == "shopify" and auto["gold_attributes"] == {}
    assert auto["id"] == "gid://shopify/Shop/7#prod-p1" and auto["description"] == "Soft cotton."
    assert (
        auto["source"]
        == f"productlens-review/gid%3A%2F%2Fshopify%2FShop%2F7/item-{ids['auto']}/auto_vetted/policy@baseline-hybrid-3"
    )
    assert approved["gold_category_path"] == taxonomy.get(SKIRTS).full_name  # type: ignore[union-attr]
    assert approved["gold_attributes"] == {"color": ["Navy"], "fabric": ["Cotton"]}
    assert f"/item-{ids['approved']}/approved/ann%2Cbob@" in approved["source"]
    # The dataset builder's store is the shop, and every line parses as a golden record.
    assert {store_of(r["source"]) for r in lines} == {"productlens-review/gid%3A%2F%2Fshopify%2FShop%2F7"}
    assert [parse_golden(r).gold_category_path for r in lines] == [r["gold_category_path"] for r in lines]


def test_dataset_build_accepts_the_export(store: ReviewStore, db: str, taxonomy: Taxonomy, tmp_path: Path) -> None:
    from pipelines.cli import app

    fill(store, taxonomy)
    # More vetted products, so every split gets some.
    policy = VettingPolicy.load()
    judge = CandidatesOpinion(taxonomy)
    for i in range(20):
        s = served(
            taxonomy, f"x{i}", TSHIRTS, candidates=[(TSHIRTS, 0.5), (DRESSES, 0.45)], title=f"Summer dress {i}", shop=f"shop-{i % 3}"
        )  # fmt: skip
        fb = FeedbackIn(prediction_id=f"x{i}", shop_id=f"shop-{i % 3}", action="correct", category_id=DRESSES)
        assert process_feedback(store, policy, judge, taxonomy, s, fb, T0).status == "auto_vetted"
    vetted = tmp_path / "vetted.jsonl"
    runner = CliRunner()
    sub = typer.Typer()
    register(sub)
    assert runner.invoke(sub, ["labels", "export", "--db", db, "-o", str(vetted)]).exit_code == 0
    assert len(vetted.read_text().splitlines()) == 22
    out = tmp_path / "dataset"
    result = runner.invoke(
        app, ["dataset", "build", "--labelled", str(vetted), "--output", str(out), "--cap-per-category", "0"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records_read"] == 22 and stats["bad_input"]["malformed_rows"] == 0
    assert stats["label_resolution"]["exact"] == 22 and stats["bad_input"]["unknown_categories"] == 0
    assert stats["attributes"]["values_kept"] == 2  # the approved skirt's colour and fabric
    import pyarrow.parquet as pq

    rows = sum(pq.read_table(p).num_rows for p in out.glob("*.parquet"))
    assert rows == 22


def test_latest_label_per_product_wins(store: ReviewStore, taxonomy: Taxonomy) -> None:
    policy = VettingPolicy.load()
    judge = CandidatesOpinion(taxonomy)
    for pid, at in (("old", T0), ("new", T0 + timedelta(days=1))):
        s = served(taxonomy, pid, TSHIRTS, candidates=[(TSHIRTS, 0.5), (DRESSES, 0.45)], product="same-product")
        fb = FeedbackIn(prediction_id=pid, shop_id="gid://shopify/Shop/7", action="correct", category_id=DRESSES)
        process_feedback(store, policy, judge, taxonomy, s, fb, at)
    kept, superseded = latest_per_product(store.vetted_labels())
    assert superseded == 1 and [k.prediction_id for k in kept] == ["new"]
    label = kept[0]
    assert provenance(label).endswith("/auto_vetted/policy@baseline-hybrid-3")
    # A category the export's taxonomy does not know is left out and counted.
    from dataclasses import replace

    from service.review.labels import ExportStats

    stats = ExportStats()
    assert golden_record(replace(label, category_id=G + "zz-9"), taxonomy, stats) is None
    assert stats.unknown_category == 1


def test_add_user_takes_the_password_from_the_environment(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    result = runner.invoke(app, ["review", "add-user", "alice", "--role", "admin", "--db", db])
    assert result.exit_code == 0, result.output
    with ReviewStore(db) as s:
        assert s.authenticate("alice", "from-env").role == "admin"  # type: ignore[union-attr]
    again = runner.invoke(app, ["review", "add-user", "alice", "--db", db])
    assert again.exit_code == 2 and "exists already" in again.output
    assert runner.invoke(app, ["review", "migrate", "--db", db]).exit_code == 0
    bad = runner.invoke(app, ["review", "add-user", "carol", "--role", "owner", "--db", db])
    assert bad.exit_code == 2 and "--role" in bad.output
    assert runner.invoke(app, ["review", "add-user", "--help"]).output.count("--password") == 0
    # Without the variable: an interactive prompt (twice, to confirm).
    monkeypatch.delenv(PASSWORD_ENV)
    prompted = runner.invoke(app, ["review", "add-user", "bob", "--db", db], input="typed\ntyped\n")
    assert prompted.exit_code == 0, prompted.output
    with ReviewStore(db) as s:
        assert s.authenticate("bob", "typed").role == "annotator"  # type: ignore[union-attr]
