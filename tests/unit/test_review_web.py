"""The review web app (service/review/web.py) in-process against a temp SQLite ReviewStore:
login and sessions, roles, CSRF, decisions and their audit trail, the taxonomy search over
English and localized names, escaping of merchant text, the rating page and the dashboard."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape

from service.review.feedback import FeedbackIn, ServedRecord
from service.review.policy import Routing
from service.review.security import COOKIE_NAME, SessionCodec
from service.review.store import FeedbackResult, ReviewStore
from service.review.taxonomy_search import CategoryIndex, fold, index_for
from service.review.web import mount_review
from taxonomy.loader import load_taxonomy
from taxonomy.model import Taxonomy

PASSWORD = "correct horse battery"
SECRET = "test-secret-key-of-32-characters!"
SNEAKERS = "Apparel & Accessories > Shoes > Sneakers"
SOCKS = "Apparel & Accessories > Clothing > Socks"
HOSTILE = "Evil <script>alert('x')</script> sneaker"


# -- seeding helpers (also used by tests/e2e/test_review_app.py) ----------------------------


def served_record(
    taxonomy: Taxonomy,
    prediction_id: str,
    title: str,
    path: str,
    *,
    model_version: str = "baseline-2024-07.1",
    shop_id: str = "shop-1",
    score: float = 0.81,
    candidates: Sequence[tuple[str, float]] = (),
    image_urls: Sequence[str] = (),
    served_at: datetime | None = None,
    **product: Any,
) -> ServedRecord:
    c = taxonomy.by_full_name(path)
    assert c is not None, path
    prediction = {
        "prediction_id": prediction_id,
        "product_id": f"prod-{prediction_id}",
        "shop_id": shop_id,
        "content_hash": f"hash-{prediction_id}",
        "model_version": model_version,
        "taxonomy_version": taxonomy.version,
        "status": "ok",
        "category": {
            "id": c.id,
            "full_name": c.full_name,
            "score": score,
            "candidates": [
                {"id": taxonomy.by_full_name(p).id, "full_name": p, "score": s}  # type: ignore[union-attr]
                for p, s in candidates
            ],
        },
        "attributes": [
            {"handle": "color", "name": "Color", "values": [{"id": "gid://shopify/TaxonomyValue/1", "name": "Black"}]}
        ],
        "predicted_at": datetime.now(UTC).isoformat(),
    }
    product = {
        "title": title,
        "description_html": "<p>Breathable <b>mesh</b> upper.</p><p>Rubber sole.</p>",
        "vendor": "Acme Outdoor",
        "product_type": "Footwear",
        "tags": ["summer", "running"],
        "image_urls": list(image_urls),
        **product,
    }
    return ServedRecord(prediction, product, served_at=served_at or datetime.now(UTC))


def seed_feedback(
    store: ReviewStore,
    taxonomy: Taxonomy,
    record: ServedRecord,
    action: str,
    path: str | None = None,
    *,
    reasons: Sequence[str] = ("correction", "disagreement"),
    sensitive: bool = False,
    status: str = "pending",
    reason: str | None = None,
    received_at: datetime | None = None,
) -> FeedbackResult:
    """Merchant feedback stored with a fixed routing (the policy has its own tests)."""
    category_id = taxonomy.by_full_name(path).id if path else None  # type: ignore[union-attr]
    fb = FeedbackIn(
        prediction_id=record.prediction_id,
        shop_id=record.shop_id,
        action=action,
        category_id=category_id,
        reason=reason,
    )
    label = None
    if action != "delete":
        label = {
            "category_id": category_id or record.category_id,
            "category_path": path or record.category_path,
            "attributes": {},
        }
    opinion = None
    if action == "correct":
        opinion = {"merchant_score": 0.08, "model_category_id": record.category_id, "agrees": False}
    routing = Routing(
        status=status,  # type: ignore[arg-type]
        reasons=tuple(reasons),
        sensitive=sensitive,
        label=label,
        second_opinion=opinion,
    )
    return store.record_feedback(record, fb, routing, received_at)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    token = csrf_of(client.get("/review/login").text)
    r = client.post(
        "/review/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/review/"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    # The bundled full taxonomy: 13 locales (the sample fixture has none).
    return load_taxonomy()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReviewStore]:
    s = ReviewStore(f"sqlite:///{tmp_path / 'review.sqlite'}")
    s.add_annotator("ann", PASSWORD, "annotator")
    s.add_annotator("boss", PASSWORD, "admin")
    yield s
    s.close()


@pytest.fixture
def app(store: ReviewStore, taxonomy: Taxonomy) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/ping")
    def ping() -> dict[str, str]:
        return {"ok": "yes"}

    mount_review(app, store, lambda: taxonomy, secret_key=SECRET)
    return app


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url="http://testserver")


@pytest.fixture
def correction(store: ReviewStore, taxonomy: Taxonomy) -> FeedbackResult:
    record = served_record(
        taxonomy, "pred-1", "Trail running shoe", SNEAKERS, candidates=[(SNEAKERS, 0.81), (SOCKS, 0.07)]
    )
    return seed_feedback(store, taxonomy, record, "correct", SOCKS, reason="these are socks, not shoes")


# -- sessions and roles -----------------------------------------------------------------------


def test_pages_redirect_to_login_and_api_answers_401(client: TestClient, correction: FeedbackResult) -> None:
    for path in ("/review/", "/review/rate", f"/review/items/{correction.item_id}", "/review/dashboard"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/review/login?next=")
    assert client.get("/review/api/categories?q=sock").status_code == 401
    assert client.get("/review/api/categories/root/children").status_code == 401


def test_login_sets_a_signed_httponly_lax_cookie_scoped_to_review(client: TestClient) -> None:
    token = csrf_of(client.get("/review/login").text)
    r = client.post(
        "/review/login",
        data={"username": "ann", "password": PASSWORD, "csrf_token": token, "next": "/review/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/review/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    for attr in ("HttpOnly", "SameSite=Lax", "Path=/review", "Max-Age="):
        assert attr in cookie
    page = client.get("/review/")
    assert page.status_code == 200 and "ann" in page.text
    # Login rotates the CSRF token (no session fixation).
    assert csrf_of(page.text) != token


def test_wrong_password_is_401_and_no_session(client: TestClient) -> None:
    token = csrf_of(client.get("/review/login").text)
    r = client.post(
        "/review/login",
        data={"username": "ann", "password": "wrong", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 401
    assert "Wrong username or password" in r.text
    assert client.get("/review/", follow_redirects=False).status_code == 303


def test_repeated_failures_are_slowed_down(client: TestClient) -> None:
    token = csrf_of(client.get("/review/login").text)
    codes = [
        client.post("/review/login", data={"username": "ann", "password": "nope", "csrf_token": token}).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]


def test_login_does_not_redirect_off_site(client: TestClient) -> None:
    token = csrf_of(client.get("/review/login").text)
    r = client.post(
        "/review/login",
        data={"username": "ann", "password": PASSWORD, "csrf_token": token, "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/review/"


def test_logout_ends_the_session(client: TestClient) -> None:
    login(client, "ann")
    token = csrf_of(client.get("/review/").text)
    r = client.post("/review/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]
    assert client.get("/review/", follow_redirects=False).status_code == 303


def test_tampered_or_expired_cookie_is_no_session(client: TestClient) -> None:
    login(client, "ann")
    raw = client.cookies.get(COOKIE_NAME)
    assert raw
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, raw)
    assert client.get("/review/", follow_redirects=False).status_code == 200  # the cookie as issued
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, raw[:-2] + ("AA" if not raw.endswith("AA") else "BB"))
    assert client.get("/review/", follow_redirects=False).status_code == 303
    # A validly signed session issued longer ago than its lifetime.
    old = SessionCodec(SECRET).dumps({"user": "ann", "csrf": "t", "iat": 1})
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, old)
    assert client.get("/review/", follow_redirects=False).status_code == 303


def test_annotator_gets_403_on_admin_pages(client: TestClient) -> None:
    login(client, "ann")
    assert client.get("/review/dashboard").status_code == 403
    assert client.get("/review/users").status_code == 403
    token = csrf_of(client.get("/review/").text)
    r = client.post("/review/users", data={"csrf_token": token, "username": "mallory", "password": "x" * 12})
    assert r.status_code == 403


def test_deactivated_account_loses_its_session(client: TestClient, store: ReviewStore) -> None:
    login(client, "ann")
    store.set_active("ann", False)
    assert client.get("/review/", follow_redirects=False).status_code == 303


def test_admin_adds_an_annotator(client: TestClient, store: ReviewStore) -> None:
    login(client, "boss")
    token = csrf_of(client.get("/review/users").text)
    r = client.post(
        "/review/users",
        data={"csrf_token": token, "username": "newbie", "password": "long-enough-1", "role": "annotator"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert store.annotator("newbie") is not None


def test_security_headers_on_review_pages_only(client: TestClient) -> None:
    r = client.get("/review/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"
    api = client.get("/v1/ping")
    assert "content-security-policy" not in api.headers and "set-cookie" not in api.headers
    # No inline script anywhere: every <script> has a src.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", r.text) == []


# -- CSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "wrong-token"])
def test_forged_decision_is_403_and_changes_nothing(
    client: TestClient, store: ReviewStore, correction: FeedbackResult, token: str | None
) -> None:
    login(client, "ann")
    data = {"action": "approve"}
    if token is not None:
        data["csrf_token"] = token
    r = client.post(f"/review/items/{correction.item_id}/decision", data=data, follow_redirects=False)
    assert r.status_code == 403
    item = store.item(correction.item_id)
    assert item is not None and item.status == "pending" and item.decisions == ()


def test_cross_origin_post_is_403_even_with_the_token(
    client: TestClient, store: ReviewStore, correction: FeedbackResult
) -> None:
    login(client, "ann")
    token = csrf_of(client.get(f"/review/items/{correction.item_id}").text)
    r = client.post(
        f"/review/items/{correction.item_id}/decision",
        data={"action": "reject", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert store.item(correction.item_id).status == "pending"  # type: ignore[union-attr]


def test_login_form_needs_the_csrf_token(client: TestClient) -> None:
    client.get("/review/login")
    r = client.post("/review/login", data={"username": "ann", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403


def test_forged_rating_and_logout_are_403(client: TestClient, store: ReviewStore, correction: FeedbackResult) -> None:
    login(client, "ann")
    r = client.post("/review/rate", data={"prediction_id": "pred-1", "verdict": "wrong", "csrf_token": "x"})
    assert r.status_code == 403
    assert store.dashboard().counts["ratings"] == 0
    assert client.post("/review/logout", data={}).status_code == 403
    assert client.get("/review/", follow_redirects=False).status_code == 200


# -- the queue, the item, decisions -------------------------------------------------------------


def test_queue_lists_pending_items_with_filters(
    client: TestClient, store: ReviewStore, taxonomy: Taxonomy, correction: FeedbackResult
) -> None:
    gun = served_record(
        taxonomy,
        "pred-2",
        "Spring airsoft pistol",
        "Sporting Goods > Outdoor Recreation > Hunting & Shooting > Airsoft > Airsoft Guns",
        model_version="vlm-2",
    )
    seed_feedback(store, taxonomy, gun, "accept", reasons=("sensitive",), sensitive=True)
    login(client, "ann")
    page = client.get("/review/").text
    assert "Trail running shoe" in page and "Spring airsoft pistol" in page
    assert str(escape(SOCKS)) in page  # the merchant's category
    assert "2 pending" in page
    only = client.get("/review/?sensitive=yes").text
    assert "Spring airsoft pistol" in only and "Trail running shoe" not in only
    by_version = client.get("/review/?model_version=vlm-2").text
    assert "Spring airsoft pistol" in by_version and "Trail running shoe" not in by_version
    by_reason = client.get("/review/?reason=correction").text
    assert "Trail running shoe" in by_reason and "Spring airsoft pistol" not in by_reason
    assert "Sporting Goods" in client.get("/review/?vertical=Sporting+Goods").text


def test_item_page_shows_prediction_candidates_correction_and_shortcuts(
    client: TestClient, correction: FeedbackResult
) -> None:
    login(client, "ann")
    page = client.get(f"/review/items/{correction.item_id}").text
    for text in (
        "Trail running shoe",
        "Breathable",  # description as text
        "0.81",
        "0.07",
        "these are socks, not shoes",
        "disagrees",
        'id="category-search"',
        "<kbd>a</kbd> approve",
        "<kbd>/</kbd>",
    ):
        assert text in page, text
    assert "<b>mesh</b>" not in page  # the merchant's HTML is shown as text
    # The picker defaults to the merchant's correction.
    assert re.search(r'id="category-id" value="gid://shopify/TaxonomyCategory/aa-1-18"', page)


def test_approve_with_a_chosen_category_lands_in_the_audit_trail_and_vetted_labels(
    client: TestClient, store: ReviewStore, taxonomy: Taxonomy, correction: FeedbackResult
) -> None:
    other = served_record(taxonomy, "pred-3", "Wool hiking socks", SOCKS)
    second = seed_feedback(store, taxonomy, other, "accept", reasons=("audit_sample",))
    login(client, "ann")
    token = csrf_of(client.get(f"/review/items/{correction.item_id}").text)
    crew = taxonomy.by_full_name("Apparel & Accessories > Clothing > Socks > Crew Socks")
    assert crew is not None
    r = client.post(
        f"/review/items/{correction.item_id}/decision",
        data={
            "action": "approve",
            "category_id": crew.id.rsplit("/", 1)[1],
            "note": "crew length",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/review/items/{second.item_id}"  # the next pending item
    item = store.item(correction.item_id)
    assert item is not None and item.status == "approved"
    (d,) = item.decisions
    assert (d.annotator, d.action, d.category_id, d.note) == ("ann", "approve", crew.id, "crew length")
    labels = {v.prediction_id: v for v in store.vetted_labels()}
    assert labels["pred-1"].category_id == crew.id
    assert labels["pred-1"].annotators == ("ann",)
    page = client.get(f"/review/items/{correction.item_id}").text
    assert "Approved item #" in page or "approved" in page
    assert "crew length" in page and "Crew Socks" in page  # the audit trail


def test_reject_and_skip(client: TestClient, store: ReviewStore, correction: FeedbackResult) -> None:
    login(client, "ann")
    token = csrf_of(client.get(f"/review/items/{correction.item_id}").text)
    r = client.post(
        f"/review/items/{correction.item_id}/decision",
        data={"action": "skip", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert store.item(correction.item_id).status == "pending"  # type: ignore[union-attr]
    r = client.post(
        f"/review/items/{correction.item_id}/decision",
        data={"action": "reject", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/review/"  # nothing left: back to the queue
    item = store.item(correction.item_id)
    assert item is not None and item.status == "rejected"
    assert [d.action for d in item.decisions] == ["skip", "reject"]
    # Deciding again is refused with a message, not a crash.
    r = client.post(f"/review/items/{correction.item_id}/decision", data={"action": "approve", "csrf_token": token})
    assert r.status_code == 200 and "not pending" in r.text


def test_unknown_category_or_action_is_refused(
    client: TestClient, store: ReviewStore, correction: FeedbackResult
) -> None:
    login(client, "ann")
    token = csrf_of(client.get(f"/review/items/{correction.item_id}").text)
    url = f"/review/items/{correction.item_id}/decision"
    assert client.post(url, data={"action": "approve", "category_id": "zz-999", "csrf_token": token}).status_code == 400
    assert client.post(url, data={"action": "delete-all", "csrf_token": token}).status_code == 422
    assert store.item(correction.item_id).decisions == ()  # type: ignore[union-attr]
    assert client.get("/review/items/99999").status_code == 404


def test_a_delete_needs_a_category_picked_by_the_annotator(
    client: TestClient, store: ReviewStore, taxonomy: Taxonomy
) -> None:
    record = served_record(taxonomy, "pred-d", "Foam dart blaster", SNEAKERS)
    result = seed_feedback(store, taxonomy, record, "delete", reasons=("delete",))
    login(client, "ann")
    page = client.get(f"/review/items/{result.item_id}").text
    assert 'id="category-id" value=""' in page and "none chosen" in page
    token = csrf_of(page)
    url = f"/review/items/{result.item_id}/decision"
    r = client.post(url, data={"action": "approve", "category_id": "", "csrf_token": token})
    assert r.status_code == 200 and "approve it with a category" in r.text
    assert store.item(result.item_id).status == "pending"  # type: ignore[union-attr]
    toys = taxonomy.by_full_name("Toys & Games > Toys > Toy Weapons & Gadgets")
    assert toys is not None
    r = client.post(
        url, data={"action": "approve", "category_id": toys.id, "csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    assert {v.prediction_id: v.category_id for v in store.vetted_labels()}["pred-d"] == toys.id


def test_pages_work_while_the_taxonomy_loads(
    store: ReviewStore, taxonomy: Taxonomy, correction: FeedbackResult
) -> None:
    app = FastAPI()
    mount_review(app, store, lambda: None, secret_key=SECRET)
    client = TestClient(app)
    login(client, "ann")
    assert client.get(f"/review/items/{correction.item_id}").status_code == 200
    r = client.get("/review/api/categories", params={"q": "sock"})
    assert r.status_code == 503 and "loading" in r.json()["detail"]


def test_hostile_product_title_is_shown_as_text(client: TestClient, store: ReviewStore, taxonomy: Taxonomy) -> None:
    record = served_record(
        taxonomy, "pred-x", HOSTILE, SNEAKERS, image_urls=["javascript:alert(1)", "https://cdn.example/a.jpg"]
    )
    result = seed_feedback(store, taxonomy, record, "correct", SOCKS, reason='"><img src=x onerror=alert(1)>')
    login(client, "ann")
    for page in (client.get("/review/").text, client.get(f"/review/items/{result.item_id}").text):
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
        assert "<img src=x" not in page
    item_page = client.get(f"/review/items/{result.item_id}").text
    assert 'src="javascript:' not in item_page
    assert '<img src="https://cdn.example/a.jpg" alt="product image 1" referrerpolicy="no-referrer"' in item_page


# -- taxonomy search --------------------------------------------------------------------------


def test_search_api_finds_english_leaf_and_localized_names(client: TestClient) -> None:
    login(client, "ann")

    def first(q: str) -> dict[str, Any]:
        body = client.get("/review/api/categories", params={"q": q, "limit": 20}).json()
        assert body["results"], q
        return body["results"][0]

    assert first("Apparel & Accessories > Clothing > Socks")["full_name"] == SOCKS
    assert first("sneakers")["full_name"] == SNEAKERS
    es = first("calcetines")
    assert es["full_name"] == SOCKS and es["locale"] == "es" and "Calcetines" in es["matched"]
    de = first("Socken")
    assert de["full_name"] == SOCKS and de["locale"] == "de"
    fr = first("chaussettes")  # accents and case folded: "Chaussettes"
    assert fr["full_name"] == SOCKS
    ja = client.get("/review/api/categories", params={"q": "靴"}).json()["results"]
    assert any(m["locale"] in ("ja", "zh-CN") and m["full_name"].startswith("Apparel & Accessories") for m in ja)
    assert client.get("/review/api/categories", params={"q": "", "limit": 5}).json()["results"] == []
    assert client.get("/review/api/categories", params={"q": "x", "limit": 1000}).status_code == 422


def test_browse_tree_children(client: TestClient, taxonomy: Taxonomy) -> None:
    login(client, "ann")
    roots = client.get("/review/api/categories/root/children").json()["children"]
    assert {r["name"] for r in roots} == {v.name for v in taxonomy.verticals}
    aa = client.get("/review/api/categories/aa/children").json()
    assert aa["parent"]["full_name"] == "Apparel & Accessories"
    assert "Clothing" in {c["name"] for c in aa["children"]}
    assert all(c["has_children"] in (True, False) for c in aa["children"])
    assert client.get("/review/api/categories/zz-404/children").status_code == 404


def test_index_answers_from_its_token_index_not_a_scan(taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch) -> None:
    index = index_for(taxonomy)
    assert index_for(taxonomy) is index  # built once per taxonomy
    assert index.size > 10 * len(taxonomy)  # English + 13 locales
    # The fuzzy fallback is a scan: it must not run when the index has an answer.
    monkeypatch.setattr(CategoryIndex, "_fuzzy", lambda *a: pytest.fail("scanned"))
    for q in ("sock", "snea", "Schuhe", "zapatos", "shoes athletic", "bebe"):
        assert index.search(q, 10).via == "index", q


def test_fuzzy_fallback_for_a_typo(taxonomy: Taxonomy) -> None:
    result = index_for(taxonomy).search("snekaers", 5)
    assert result.via == "fuzzy"
    assert result.matches[0].full_name == SNEAKERS


def test_fold() -> None:
    assert fold("  Bébé  &  Éveil ") == "bebe & eveil"
    assert fold("STRAßE") == "strasse"


def test_search_on_the_sample_taxonomy(sample_taxonomy: Taxonomy) -> None:
    index = CategoryIndex(sample_taxonomy)
    assert index.search("dress", 5).matches[0].name.lower().startswith("dress")


# -- rating and dashboard ---------------------------------------------------------------------


def test_rating_is_blind_and_recorded(client: TestClient, store: ReviewStore, correction: FeedbackResult) -> None:
    login(client, "ann")
    page = client.get("/review/rate").text
    assert "Trail running shoe" in page and "Sneakers" in page
    # Blind: no merchant feedback, no scores, no model version.
    for hidden in ("these are socks", "0.81", "baseline-2024-07.1", "Socks"):
        assert hidden not in page, hidden
    token = csrf_of(page)
    r = client.post(
        "/review/rate",
        data={"prediction_id": "pred-1", "verdict": "wrong", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert store.dashboard().verdicts == {"wrong": 1}
    assert "No recent predictions left" in client.get("/review/rate").text


def test_dashboard_shows_rates_intervals_kappa_and_svg(
    client: TestClient, store: ReviewStore, taxonomy: Taxonomy
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(12):
        rec = served_record(
            taxonomy, f"d{i}", f"Item {i}", SNEAKERS if i % 2 else SOCKS, served_at=start + timedelta(minutes=i)
        )
        seed_feedback(store, taxonomy, rec, "accept" if i % 3 else "correct", None if i % 3 else SOCKS)
    store.add_annotator("ann2", PASSWORD, "annotator")
    for i in range(6):
        store.add_rating(f"d{i}", "ann", "correct" if i % 2 else "wrong")
        store.add_rating(f"d{i}", "ann2", "correct" if i % 3 else "wrong")
    login(client, "boss")
    page = client.get("/review/dashboard")
    assert page.status_code == 200
    html = page.text
    assert "Merchant acceptance" in html and "66.7%" in html  # 8 of 12
    assert "95% CI" in html and "<svg" in html and "Wilson" in html
    assert "Apparel &amp; Accessories" in html  # the vertical, escaped in the SVG too
    assert "Cohen" in html and "ann · ann2" in html


def test_on_the_service_app_the_api_is_left_alone(store: ReviewStore, taxonomy: Taxonomy) -> None:
    """create_app mounts the review app (service/app.py): its sessions, headers and pages do
    not touch the JSON API, and the picker searches the taxonomy the service loaded."""
    from service.app import create_app
    from service.auth import ApiKeys
    from tests.service.conftest import ControlledModel, make_runtime
    from transforms.config import PredictSettings, ServeCommand

    app = create_app(
        ServeCommand(second_opinion="served"),  # no baseline model to build
        PredictSettings(),
        ApiKeys(frozenset()),
        load=lambda: make_runtime(ControlledModel(), taxonomy),
        review=store,
        session_secret=SECRET,
    )
    with TestClient(app) as client:
        for _ in range(500):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.01)
        health = client.get("/healthz")
        assert health.status_code == 200
        assert "content-security-policy" not in health.headers and "set-cookie" not in health.headers
        assert not any(p.startswith("/review") for p in client.get("/openapi.json").json()["paths"])
        login(client, "ann")
        assert client.get("/review/").status_code == 200
        assert client.get("/review/static/review.js").status_code == 200
        found = client.get("/review/api/categories", params={"q": "dress"}).json()["results"]
        assert found and all(taxonomy.get(m["id"]) is not None for m in found)
