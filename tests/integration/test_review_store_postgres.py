"""The review store on a real PostgreSQL server (Debian's packages, started by
deploy/local/postgres/postgres.sh): migrations to head, the store's round trips, the
k-of-n decisions, idempotency under 1,000 concurrent feedback events (here the races are
real: several connections insert the same feedback at once and the losers re-read), and
the labels export. The checks are tests/unit/test_review_store.py's, run on SQLite there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from service.review.store import ReviewStore
from tests.integration.postgres_server import PostgresServer
from tests.unit import test_review_store as contract

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        yield pg


@pytest.fixture
def store(server: PostgresServer) -> Iterator[ReviewStore]:
    """A fresh database per test (dropped afterwards), migrated by the store itself."""
    admin = ReviewStore(server.url, migrate=False)
    name = f"t_{abs(hash(server.url + str(id(admin)))) % 10**9}"
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.url.rsplit("/", 1)[0] + "/" + name
    s = ReviewStore(url)
    yield s
    s.close()
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.close()


def test_server_script_round_trip(server: PostgresServer) -> None:
    assert server.running()
    assert server.url.startswith("postgresql+psycopg://productlens@127.0.0.1:")


def test_migrations_to_head_match_the_models(store: ReviewStore) -> None:
    contract.check_schema_matches_models(store)
    ReviewStore(store.url).close()  # again: already at head, nothing to do


def test_migrations_raced_by_several_stores(server: PostgresServer, store: ReviewStore) -> None:
    import threading

    url = store.url.rsplit("/", 1)[0] + "/race_" + store.url.rsplit("/", 1)[1]
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"'))
    opened: list[ReviewStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(ReviewStore(url))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(opened) == 4
    contract.check_schema_matches_models(opened[0])
    for s in opened:
        s.close()


def test_feedback_round_trip(store: ReviewStore) -> None:
    contract.check_feedback_round_trip(store)


def test_1000_concurrent_feedback_events(store: ReviewStore) -> None:
    races = contract.check_concurrent_feedback(store, events=1000, distinct=250, workers=32)
    print(f"unique-constraint races lost and re-read: {races}")


def test_queue_filters_and_facets(store: ReviewStore) -> None:
    contract.check_queue(store)


def test_decisions_k_of_n(store: ReviewStore) -> None:
    contract.check_decisions(store)


def test_accounts(store: ReviewStore) -> None:
    contract.check_accounts(store)


def test_blind_ratings(store: ReviewStore) -> None:
    contract.check_ratings(store)


def test_dashboard_and_vetted_labels(store: ReviewStore) -> None:
    contract.check_dashboard_and_vetted(store)


def test_labels_export_from_postgres(store: ReviewStore, tmp_path: Path) -> None:
    from service.review.labels import export_labels
    from taxonomy.loader import load_taxonomy

    contract.check_dashboard_and_vetted(store)
    out = tmp_path / "vetted.jsonl"
    stats = export_labels(store, out, load_taxonomy(None))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert stats.written == len(lines) == 2
    assert {r["gold_category_path"] for r in lines} == {"Apparel & Accessories > Clothing > Dresses"}
    assert all(r["source"].startswith("productlens-review/shop-1/item-") for r in lines)
