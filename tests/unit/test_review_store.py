"""The review store on SQLite: migrations, idempotent feedback (also 1,000 concurrent
events), the queue, item views, the k-of-n decision rule, accounts, blind ratings, the
dashboard's statistics (Wilson intervals and Cohen's kappa against known values) and the
vetted labels.

The `check_*` functions are the store's contract: tests/integration/test_review_store_postgres.py
runs the same ones against a real PostgreSQL server."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select

from service.review.feedback import FeedbackIn, ServedRecord
from service.review.models import Base, Decision, Feedback, ReviewItem, ServedPrediction
from service.review.policy import Routing
from service.review.stats import (
    RatingRow,
    cohen_kappa,
    mean_pairwise_kappa,
    rate,
    wilson_interval,
)
from service.review.store import (
    DuplicateError,
    NotFoundError,
    QueueFilter,
    ReviewStateError,
    ReviewStore,
    hash_password,
    verify_password,
)

G = "gid://shopify/TaxonomyCategory/"
DRESSES = G + "aa-1-4"
SHIRTS = G + "aa-1-13-8"
WINE = G + "fb-1-1-7"
RED = "gid://shopify/TaxonomyValue/3"
BLUE = "gid://shopify/TaxonomyValue/2"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


# -- builders shared with the PostgreSQL tests ------------------------------------------------


def served_record(
    pid: str = "p1",
    category_id: str = SHIRTS,
    path: str = "Apparel & Accessories > Clothing > Clothing Tops > Shirts",
    model_version: str = "m1",
    served_at: datetime = T0,
    shop: str = "shop-1",
    product_id: str | None = None,
    title: str = "Linen shirt",
) -> ServedRecord:
    prediction = {
        "prediction_id": pid,
        "product_id": product_id or f"prod-{pid}",
        "shop_id": shop,
        "content_hash": "h",
        "model_version": model_version,
        "taxonomy_version": "2024-07",
        "category": {
            "id": category_id,
            "full_name": path,
            "score": 0.71,
            "candidates": [
                {"id": category_id, "full_name": path, "score": 0.71},
                {"id": DRESSES, "full_name": "Apparel & Accessories > Clothing > Dresses", "score": 0.2},
            ],
        },
        "attributes": [{"handle": "color", "name": "Color", "values": [{"id": RED, "name": "Red"}]}],
        "status": "ok",
        "predicted_at": served_at.isoformat(),
    }
    product = {
        "title": title,
        "description_html": "<p>A <b>light</b> shirt</p>",
        "image_urls": ["https://cdn.example/p.jpg"],
        "product_type": "Shirts",
        "vendor": "Acme",
        "tags": ["summer", "linen"],
    }
    return ServedRecord(prediction, product, served_at)


def feedback_in(pid: str = "p1", action: str = "correct", shop: str = "shop-1", **kw: Any) -> FeedbackIn:
    if action == "correct":
        kw.setdefault("category_id", DRESSES)
    return FeedbackIn(prediction_id=pid, shop_id=shop, action=action, **kw)  # type: ignore[arg-type]


def routing(
    status: str = "pending",
    reasons: tuple[str, ...] = ("correction", "disagreement"),
    category_id: str | None = DRESSES,
    path: str | None = "Apparel & Accessories > Clothing > Dresses",
    attributes: dict[str, list[str]] | None = None,
    k: int = 1,
    agree_on: tuple[str, ...] = (),
    sensitive: bool = False,
) -> Routing:
    label = {"category_id": category_id, "category_path": path, "attributes": attributes or {}} if category_id else None
    return Routing(
        status=status,  # type: ignore[arg-type]
        reasons=reasons,
        sensitive=sensitive,
        approvals_needed=k,
        label=label,
        second_opinion={"merchant_score": 0.05, "model_category_id": SHIRTS, "agrees": False, "judge": "test"},
        agree_on=agree_on,
    )


def add_people(store: ReviewStore) -> None:
    store.add_annotator("ann", "pw-ann")
    store.add_annotator("bob", "pw-bob")
    store.add_annotator("cy", "pw-cy")
    store.add_annotator("root", "pw-root", "admin")


# -- the contract (also run on PostgreSQL) ----------------------------------------------------


def check_schema_matches_models(store: ReviewStore) -> None:
    """The migrated schema is what the ORM classes declare (no autogenerate diff)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
    assert diff == [], diff
    assert version == "0001"
    assert set(inspect(store.engine).get_table_names()) >= {
        "served_predictions",
        "feedback",
        "review_items",
        "decisions",
        "annotators",
        "ratings",
    }


def check_feedback_round_trip(store: ReviewStore) -> None:
    s = served_record()
    first = store.record_feedback(s, feedback_in(reason="it is a dress"), routing(), T0)
    assert first.created and first.status == "pending" and first.reasons == ("correction", "disagreement")
    again = store.record_feedback(s, feedback_in(reason="it is a dress"), routing(), T0 + timedelta(seconds=5))
    assert not again.created and (again.item_id, again.feedback_id) == (first.item_id, first.feedback_id)
    # The stored routing stands on a replay, whatever the caller routes now.
    replay = store.record_feedback(s, feedback_in(), routing(status="auto_vetted", reasons=()), T0)
    assert replay.status == "pending" and not replay.created
    assert store.feedback_result("p1", "shop-1", "correct") == again
    assert store.feedback_result("p1", "shop-1", "accept") is None
    # Another action or shop on the same prediction is other feedback.
    other = store.record_feedback(s, feedback_in(action="delete"), routing(reasons=("delete",), category_id=None), T0)
    assert other.created and other.item_id != first.item_id
    assert store.has_prediction("p1") and not store.has_prediction("nope")

    view = store.item(first.item_id)
    assert view is not None
    assert view.product.title == "Linen shirt" and view.product.tags == ("summer", "linen")
    assert view.product.image_urls == ("https://cdn.example/p.jpg",)
    assert view.prediction.category_id == SHIRTS and view.prediction.score == pytest.approx(0.71)
    assert [c.id for c in view.prediction.candidates] == [SHIRTS, DRESSES]
    assert view.prediction.attributes[0].values == ((RED, "Red"),)
    assert view.feedback.action == "correct" and view.feedback.corrected_category_id == DRESSES
    assert view.feedback.corrected_category_path == "Apparel & Accessories > Clothing > Dresses"
    assert view.feedback.reason == "it is a dress"
    assert view.second_opinion is not None and view.second_opinion.agrees is False
    assert view.label is not None and view.label.category_id == DRESSES
    assert view.status == "pending" and view.approvals_needed == 1 and view.decisions == ()
    assert view.created_at == T0 and view.created_at.tzinfo is not None
    assert store.item(10_000) is None
    with pytest.raises(ValueError, match="given with served"):
        store.record_feedback(served_record("p2"), feedback_in("p1"), routing(), T0)


def check_concurrent_feedback(store: ReviewStore, events: int = 1000, distinct: int = 250, workers: int = 32) -> int:
    """`events` feedback events at once over `distinct` (prediction, shop, action) keys, some
    predictions shared by several keys: every key stored once, every event answered with
    its key's item, exactly one `created` per key. Returns the races the store lost (and
    resolved by re-reading)."""
    keys = []
    for i in range(distinct):
        pid = f"c{i // 2}"  # two keys per prediction: the served row is raced for too
        keys.append((pid, "accept" if i % 2 else "delete"))
    plan = [keys[i * distinct // events] for i in range(events)]  # replays side by side: real races
    barrier = threading.Barrier(workers)

    def send(j: int) -> Any:
        if j < workers:
            barrier.wait()  # the first wave starts together
        pid, action = plan[j]
        r = routing(status="pending", reasons=(action,), category_id=SHIRTS if action == "accept" else None)
        return store.record_feedback(served_record(pid), feedback_in(pid, action), r, T0)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(send, range(events)))
    assert len(results) == events
    by_key: dict[tuple[str, str], set[int]] = {}
    for r in results:
        by_key.setdefault((r.prediction_id, r.action), set()).add(r.item_id)
    assert len(by_key) == distinct and all(len(v) == 1 for v in by_key.values())
    created = Counter((r.prediction_id, r.action) for r in results if r.created)
    assert len(created) == distinct and set(created.values()) == {1}
    with store.engine.connect() as conn:
        n_fb = conn.execute(
            select(func.count()).select_from(Feedback).where(Feedback.prediction_id.like("c%"))
        ).scalar()
        n_sp = conn.execute(
            select(func.count()).select_from(ServedPrediction).where(ServedPrediction.prediction_id.like("c%"))
        ).scalar()
        n_items = conn.execute(
            select(func.count())
            .select_from(ReviewItem)
            .join(Feedback, ReviewItem.feedback_id == Feedback.id)
            .where(Feedback.prediction_id.like("c%"))
        ).scalar()
    assert (n_fb, n_items, n_sp) == (distinct, distinct, distinct // 2)
    return store.races_lost


def check_queue(store: ReviewStore) -> None:
    store.record_feedback(served_record("q1", model_version="m1"), feedback_in("q1"), routing(), T0)
    store.record_feedback(
        served_record(
            "q2", category_id=WINE, path="Food, Beverages & Tobacco > Beverages > Alcoholic Beverages > Wine"
        ),
        feedback_in("q2", action="accept"),
        routing(reasons=("sensitive",), category_id=WINE, sensitive=True),
        T0 + timedelta(minutes=1),
    )
    store.record_feedback(
        served_record("q3", model_version="m2"),
        feedback_in("q3", action="accept"),
        routing(status="not_sampled", reasons=(), category_id=SHIRTS),
        T0,
    )
    pending = store.queue(QueueFilter())
    assert [i.id for i in pending][:1] == [store.feedback_result("q2", "shop-1", "accept").item_id]  # type: ignore[union-attr]  # sensitive first
    assert {i.status for i in pending} == {"pending"}
    q1 = next(i for i in pending if i.title == "Linen shirt" and i.action == "correct")
    assert q1.corrected_category_id == DRESSES and q1.predicted_category_id == SHIRTS
    assert [i.action for i in store.queue(QueueFilter(sensitive=True))] == ["accept"]
    assert store.queue(QueueFilter(reason="sensitive"))[0].sensitive
    assert store.queue(QueueFilter(reason="sensitiv")) == []  # a whole reason, not a substring
    assert store.queue(QueueFilter(reason="%")) == []  # LIKE wildcards are escaped
    assert store.queue(QueueFilter(vertical="Food, Beverages & Tobacco"))[0].action == "accept"
    assert store.queue(QueueFilter(status="pending", model_version="m2")) == []
    assert len(store.queue(QueueFilter(status="not_sampled", model_version="m2"))) == 1
    assert len(store.queue(QueueFilter(status=None), limit=1)) == 1
    assert store.count(QueueFilter(status=None)) == 3
    assert len(store.queue(QueueFilter(status=None), limit=2, offset=2)) == 1
    facets = store.facets()
    assert facets["verticals"] == ["Apparel & Accessories", "Food, Beverages & Tobacco"]
    assert facets["reasons"] == ["correction", "disagreement", "sensitive"]
    assert facets["model_versions"] == ["m1", "m2"]


def check_decisions(store: ReviewStore) -> None:
    add_people(store)
    # k = 1: one approval vets; the item is closed afterwards.
    a = store.record_feedback(served_record("d1"), feedback_in("d1"), routing(), T0)
    v = store.decide(a.item_id, "ann", "skip", now=T0)
    assert v.status == "pending" and [d.action for d in v.decisions] == ["skip"]
    v = store.decide(a.item_id, "ann", "approve", now=T0 + timedelta(seconds=1), note="ok")
    assert v.status == "approved" and v.approved_by == ("ann",) and v.label is not None
    assert v.label.category_id == DRESSES
    with pytest.raises(ReviewStateError, match="approved, not pending"):
        store.decide(a.item_id, "bob", "approve")
    # An override category with its path.
    b = store.record_feedback(served_record("d2"), feedback_in("d2"), routing(), T0)
    v = store.decide(b.item_id, "bob", "approve", category_id=WINE, category_path="Food > Wine")
    assert v.label is not None and (v.label.category_id, v.label.category_path) == (WINE, "Food > Wine")
    assert v.decisions[-1].category_id == WINE
    # k = 2 on a subjective colour: the same annotator twice counts once; disagreeing
    # colours do not add up; three voters without two agreeing: rejected.
    c = store.record_feedback(
        served_record("d3"), feedback_in("d3"), routing(attributes={"color": [BLUE]}, k=2, agree_on=("color",)), T0
    )
    assert store.decide(c.item_id, "ann", "approve").status == "pending"
    v = store.decide(c.item_id, "ann", "approve")
    assert v.status == "pending" and v.approvals == 1
    v = store.decide(c.item_id, "bob", "approve", attributes={"color": [RED]})
    assert v.status == "pending" and v.approvals == 2
    v = store.decide(c.item_id, "cy", "reject")
    assert v.status == "rejected" and [d.annotator for d in v.decisions] == ["ann", "ann", "bob", "cy"]
    # k = 2: two annotators agreeing on the colour (one changes a non-subjective value) vet.
    d = store.record_feedback(
        served_record("d4"), feedback_in("d4"), routing(attributes={"color": [BLUE]}, k=2, agree_on=("color",)), T0
    )
    store.decide(d.item_id, "ann", "approve")
    v = store.decide(d.item_id, "cy", "approve", attributes={"fabric": ["gid://shopify/TaxonomyValue/9"]})
    assert v.status == "approved" and v.approved_by == ("ann", "cy")
    assert v.label is not None and dict(v.label.attributes) == {
        "color": (BLUE,),
        "fabric": ("gid://shopify/TaxonomyValue/9",),
    }
    # An annotator's reject then approve: the latest vote counts.
    e = store.record_feedback(served_record("d5"), feedback_in("d5"), routing(k=2), T0)
    store.decide(e.item_id, "ann", "reject")
    store.decide(e.item_id, "ann", "approve")
    assert store.decide(e.item_id, "bob", "approve").status == "approved"
    # An admin's reject rejects at once; an annotator's reject with k = 2 does not.
    f = store.record_feedback(served_record("d6"), feedback_in("d6"), routing(k=2), T0)
    assert store.decide(f.item_id, "ann", "reject").status == "pending"
    assert store.decide(f.item_id, "root", "reject").status == "rejected"
    # A delete has no proposed category: approving needs one.
    g = store.record_feedback(
        served_record("d7"), feedback_in("d7", action="delete"), routing(reasons=("delete",), category_id=None), T0
    )
    with pytest.raises(ReviewStateError, match="approve it with a category"):
        store.decide(g.item_id, "ann", "approve")
    assert store.decide(g.item_id, "ann", "approve", category_id=DRESSES).status == "approved"
    # Bad calls.
    with pytest.raises(NotFoundError):
        store.decide(99_999, "ann", "approve")
    h = store.record_feedback(served_record("d8"), feedback_in("d8"), routing(), T0)
    with pytest.raises(ReviewStateError, match="not an active annotator"):
        store.decide(h.item_id, "mallory", "approve")
    with pytest.raises(ValueError, match="approve, reject or skip"):
        store.decide(h.item_id, "ann", "delete")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="approve only"):
        store.decide(h.item_id, "ann", "reject", category_id=WINE)
    store.set_active("bob", False)
    with pytest.raises(ReviewStateError, match="not an active annotator"):
        store.decide(h.item_id, "bob", "approve")
    store.set_active("bob", True)
    with store.engine.connect() as conn:  # the audit trail is complete
        assert conn.execute(select(func.count()).select_from(Decision)).scalar() == 15


def check_accounts(store: ReviewStore) -> None:
    store.add_annotator("eve", "s3cret!", "annotator")
    store.add_annotator("ada", "adm1n", "admin")
    with pytest.raises(DuplicateError):
        store.add_annotator("eve", "other")
    with pytest.raises(ValueError, match="role"):
        store.add_annotator("zed", "pw", "owner")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="username"):
        store.add_annotator("has space", "pw")
    with pytest.raises(ValueError, match="password"):
        store.add_annotator("nopw", "")
    eve = store.authenticate("eve", "s3cret!")
    assert eve is not None and eve.role == "annotator" and not eve.is_admin
    assert store.authenticate("ada", "adm1n").is_admin  # type: ignore[union-attr]
    assert store.authenticate("eve", "wrong") is None
    assert store.authenticate("nobody", "s3cret!") is None
    store.set_active("eve", False)
    assert store.authenticate("eve", "s3cret!") is None
    store.set_password("ada", "new")
    assert store.authenticate("ada", "adm1n") is None and store.authenticate("ada", "new") is not None
    assert store.annotator("ada").role == "admin" and store.annotator("nobody") is None  # type: ignore[union-attr]
    assert [a.username for a in store.annotators()] == ["ada", "eve"]


def check_ratings(store: ReviewStore) -> None:
    add_people(store)
    assert store.next_for_rating("ann") is None
    assert store.record_served(served_record("r1", served_at=T0)) is True
    assert store.record_served(served_record("r1", served_at=T0)) is False
    store.record_served(served_record("r2", served_at=T0 + timedelta(hours=1)))
    store.record_feedback(served_record("r2"), feedback_in("r2"), routing(), T0)  # feedback must stay hidden
    sample = store.next_for_rating("ann")
    assert sample is not None and sample.prediction_id == "r2"  # the most recent first
    fields = set(vars(sample))
    assert fields == {"prediction_id", "product", "category_id", "category_path", "attributes"}  # blind
    store.add_rating("r2", "ann", "correct")
    with pytest.raises(DuplicateError):
        store.add_rating("r2", "ann", "wrong")
    with pytest.raises(ValueError, match="verdict"):
        store.add_rating("r1", "ann", "meh")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        store.add_rating("nope", "ann", "correct")
    assert store.next_for_rating("ann").prediction_id == "r1"  # type: ignore[union-attr]
    # Another annotator is offered what one person rated first (it makes a kappa pair).
    store.record_served(served_record("r3", served_at=T0 + timedelta(hours=2)))
    assert store.next_for_rating("bob").prediction_id == "r2"  # type: ignore[union-attr]
    assert store.next_for_rating("bob", since=T0 + timedelta(hours=3)) is None
    store.add_rating("r2", "bob", "correct")
    store.add_rating("r1", "ann", "wrong")
    store.add_rating("r1", "bob", "wrong")
    stats = store.dashboard()
    assert stats.kappa.pairs == 2 and stats.kappa.kappa == pytest.approx(1.0)
    assert stats.counts["ratings"] == 4 and stats.counts["served"] == 3


def check_dashboard_and_vetted(store: ReviewStore) -> None:
    add_people(store)
    for i in range(8):
        store.record_feedback(
            served_record(f"a{i}"), feedback_in(f"a{i}", action="accept"), routing("not_sampled", (), SHIRTS), T0
        )
    av = store.record_feedback(served_record("v1"), feedback_in("v1"), routing("auto_vetted", ("correction",)), T0)
    ap = store.record_feedback(served_record("v2"), feedback_in("v2"), routing(), T0)
    rj = store.record_feedback(served_record("v3", model_version="m2"), feedback_in("v3"), routing(), T0)
    store.record_feedback(served_record("v4"), feedback_in("v4", action="delete"), routing(category_id=None), T0)
    store.decide(ap.item_id, "ann", "approve")
    store.decide(rj.item_id, "root", "reject")
    stats = store.dashboard()
    assert (stats.acceptance.successes, stats.acceptance.trials) == (8, 12)
    assert stats.acceptance_by_model_version["m2"].trials == 1
    assert stats.acceptance_by_vertical["Apparel & Accessories"].successes == 8
    assert (stats.correction_rate.successes, stats.correction_rate.trials) == (3, 12)
    assert (stats.rejection_rate.successes, stats.rejection_rate.trials) == (1, 2)
    assert stats.counts["items_auto_vetted"] == 1 and stats.counts["feedback_delete"] == 1
    vetted = list(store.vetted_labels(batch=1))  # paging across batches
    assert [(v.item_id, v.how) for v in vetted] == [(av.item_id, "auto_vetted"), (ap.item_id, "approved")]
    assert vetted[1].annotators == ("ann",) and vetted[0].annotators == ()
    assert vetted[1].category_id == DRESSES and vetted[1].product.title == "Linen shirt"


# -- SQLite ------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReviewStore]:
    s = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}")
    yield s
    s.close()


def test_schema_matches_models(store: ReviewStore) -> None:
    check_schema_matches_models(store)


def test_migrations_are_idempotent_and_safe_to_race(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'raced.sqlite'}"
    stores: list[ReviewStore] = []
    lock = threading.Lock()

    def open_one() -> None:
        s = ReviewStore(url)
        with lock:
            stores.append(s)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stores) == 6
    check_schema_matches_models(stores[0])
    for s in stores:
        s.close()
    ReviewStore(url).close()  # and again on an up-to-date file


def test_in_memory_store(tmp_path: Path) -> None:
    with ReviewStore("sqlite://") as s:
        check_schema_matches_models(s)
        check_feedback_round_trip(s)


def test_feedback_round_trip(store: ReviewStore) -> None:
    check_feedback_round_trip(store)


def test_1000_concurrent_feedback_events(store: ReviewStore) -> None:
    check_concurrent_feedback(store)


def test_queue_filters_and_facets(store: ReviewStore) -> None:
    check_queue(store)


def test_decisions_k_of_n(store: ReviewStore) -> None:
    check_decisions(store)


def test_accounts(store: ReviewStore) -> None:
    check_accounts(store)


def test_blind_ratings(store: ReviewStore) -> None:
    check_ratings(store)


def test_dashboard_and_vetted_labels(store: ReviewStore) -> None:
    check_dashboard_and_vetted(store)


def test_store_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with ReviewStore(url) as s:
        r = s.record_feedback(served_record(), feedback_in(), routing(), T0)
    with ReviewStore(url) as s:
        assert s.feedback_result("p1", "shop-1", "correct") == dataclasses.replace(r, created=False)
        assert s.item(r.item_id).created_at == T0  # type: ignore[union-attr]


# -- passwords and statistics -------------------------------------------------------------------


def test_password_hashes_are_salted_and_checked() -> None:
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("pw", a) and not verify_password("pW", a)
    assert not verify_password("pw", "garbage") and not verify_password("pw", "pbkdf2$1$2$3$00$00")


def test_wilson_interval_known_values() -> None:
    # 0/10: upper = z^2 / (n + z^2); 5/10: (0.2366, 0.7634) (Newcombe 1998, Table I method 3 style).
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    # 81 of 263 (Newcombe's example): 0.2553 to 0.3662.
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    r = rate(85, 100)
    assert r.value == 0.85 and r.low < 0.85 < r.high
    assert rate(0, 0).value is None


def test_cohen_kappa_known_values() -> None:
    # Wikipedia's example: 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> kappa 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["x", "y"], ["x", "y"]) == pytest.approx(1.0)
    assert cohen_kappa(["x", "x"], ["x", "x"]) is None  # undefined: chance agreement is 1
    assert cohen_kappa(["x"], ["x"]) is None
    with pytest.raises(ValueError):
        cohen_kappa(["x"], ["x", "y"])


def test_mean_pairwise_kappa() -> None:
    rows = []
    verdicts_a = ["correct", "correct", "wrong", "partly", "wrong", "correct"]
    verdicts_b = ["correct", "wrong", "wrong", "partly", "wrong", "correct"]
    for i, (x, y) in enumerate(zip(verdicts_a, verdicts_b)):
        rows += [RatingRow(f"p{i}", "a", x), RatingRow(f"p{i}", "b", y), RatingRow(f"p{i}", "c", x)]
    result = mean_pairwise_kappa(rows)
    ab = cohen_kappa(verdicts_a, verdicts_b)
    assert result.annotator_pairs == 3 and result.pairs == 18
    assert result.kappa == pytest.approx((ab + 1.0 + ab) / 3)  # type: ignore[operator]
    assert mean_pairwise_kappa([RatingRow("p", "a", "correct")]).kappa is None
