"""The review app in a real headless Chromium (Debian's, driven by Playwright; no browser
download): an annotator logs in, finds a merchant's correction in the queue, picks a
category through the type-ahead (a Spanish name), approves it with the keyboard, and the
label is in the vetted labels (`productlens labels export` where it exists). Another
annotator rates a blind sample; the admin opens the dashboard.

Screenshots of the queue, the item view, the rating page and the dashboard go to a temp
dir, or to `$PRODUCTLENS_SCREENSHOTS` (e.g. `docs/screenshots`) to refresh the docs.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Response

from service.review.store import ReviewStore
from service.review.web import mount_review
from taxonomy.loader import load_taxonomy
from taxonomy.model import Taxonomy
from tests.unit.test_review_web import PASSWORD, SNEAKERS, SOCKS, seed_feedback, served_record

CHROMIUM = os.environ.get("PRODUCTLENS_CHROMIUM", "/usr/bin/chromium")
if shutil.which(CHROMIUM) is None:
    pytest.skip(
        f"no chromium at {CHROMIUM} (apt-get install chromium, or set PRODUCTLENS_CHROMIUM)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
uvicorn = pytest.importorskip("uvicorn")

CREW_SOCKS = "Apparel & Accessories > Clothing > Socks > Crew Socks"
ATHLETIC = "Apparel & Accessories > Shoes > Athletic Shoes"
# What each pending product looks like (type, tags, description), by position in PENDING.
DETAILS = [
    ("Footwear", ["running", "trail"], "<p>Breathable <b>mesh</b> upper.</p><p>Grippy rubber outsole.</p>"),
    ("Airsoft", ["airsoft", "pistol"], "<p>Full metal slide, 6 mm BBs, green gas.</p>"),
    ("Socks", ["wool", "hiking"], "<p>Cushioned merino crew socks, pack of three.</p>"),
    ("Coffee", ["pour-over", "ceramic"], "<p>Hand-glazed ceramic dripper for size 02 filters.</p>"),
    ("Toys", ["kids", "foam"], "<p>Soft foam darts, ages 8+.</p>"),
    ("Shirts", ["linen", "summer"], "<p>Relaxed fit, 100% linen, sea blue stripes.</p>"),
]
SHOE_TITLE = "TrailRunner 2 men's running shoe"

# (title, predicted path, merchant's action, merchant's path, reasons, sensitive, vertical-ish image colour)
PENDING: list[tuple[str, str, str, str | None, tuple[str, ...], bool]] = [
    (SHOE_TITLE, SNEAKERS, "correct", SOCKS, ("correction", "disagreement"), False),
    (
        "Gas blowback airsoft pistol, 6mm",
        "Toys & Games > Toys > Toy Weapons & Gadgets",
        "correct",
        "Sporting Goods > Outdoor Recreation > Hunting & Shooting > Airsoft > Airsoft Guns",
        ("sensitive", "correction"),
        True,
    ),
    (
        "Merino wool crew socks, 3-pack",
        SOCKS,
        "accept",
        None,
        ("audit_sample",),
        False,
    ),
    (
        "Ceramic pour-over coffee dripper",
        "Home & Garden > Kitchen & Dining > Kitchen Tools & Utensils",
        "correct",
        "Home & Garden > Kitchen & Dining > Kitchen Appliances > Coffee Makers & Espresso Machines > Drip Coffee Makers",
        ("correction",),
        False,
    ),
    ("Kids' foam dart blaster", "Toys & Games > Toys > Toy Weapons & Gadgets", "delete", None, ("delete",), False),
    (
        "Striped linen shirt — sea blue",
        "Apparel & Accessories > Clothing > Clothing Tops > Shirts",
        "correct",
        "Apparel & Accessories > Clothing > Clothing Tops > Blouses",
        ("correction", "subjective"),
        False,
    ),
]

# Vertical (a leaf under it) and each model version's acceptance, for the dashboard.
VERTICALS = {
    "Apparel & Accessories": SNEAKERS,
    "Home & Garden": "Home & Garden > Kitchen & Dining > Kitchen Tools & Utensils",
    "Electronics": "Electronics > Audio > Audio Components > Headphones & Headsets > Headphones",
    "Sporting Goods": "Sporting Goods > Outdoor Recreation > Hunting & Shooting > Airsoft > Airsoft Guns",
    "Toys & Games": "Toys & Games > Toys > Toy Weapons & Gadgets",
    "Health & Beauty": "Health & Beauty > Personal Care > Cosmetics > Makeup > Face Makeup > Foundations & Concealers",
}
ACCEPTANCE = {"baseline-2024-07.1": 0.78, "vlm-qwen2.5-7b-ft.3": 0.88}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _image(colour: tuple[int, int, int], label: str) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (320, 240), (248, 248, 248))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((40, 110, 280, 180), radius=30, fill=colour)
    draw.rectangle((40, 170, 280, 190), fill=(60, 60, 60))
    draw.ellipse((180, 70, 260, 140), fill=colour)
    draw.text((16, 12), label, fill=(90, 90, 90))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _seed(store: ReviewStore, taxonomy: Taxonomy, base_url: str) -> dict[str, int]:
    rng = random.Random(15)
    now = datetime.now(UTC)
    items: dict[str, int] = {}
    for k, (title, predicted, action, merchant, reasons, sensitive) in enumerate(PENDING):
        candidates = [(predicted, 0.74 - 0.03 * k)]
        if merchant:
            candidates.append((merchant, 0.11))
        candidates.append((ATHLETIC if predicted != ATHLETIC else SNEAKERS, 0.04))
        rec = served_record(
            taxonomy,
            f"pending-{k}",
            title,
            predicted,
            model_version="vlm-qwen2.5-7b-ft.3" if k % 2 else "baseline-2024-07.1",
            shop_id=f"shop-{100 + k}",
            score=0.74 - 0.03 * k,
            candidates=candidates,
            image_urls=[f"{base_url}/test-images/{k}.png"],
            served_at=now - timedelta(hours=30 - k),
            product_type=DETAILS[k][0],
            tags=DETAILS[k][1],
            description_html=DETAILS[k][2],
            vendor=["Northpeak", "Tactix", "Woolly & Co", "Brewhaus", "FunWorks", "Coastline"][k],
        )
        result = seed_feedback(
            store,
            taxonomy,
            rec,
            action,
            merchant,
            reasons=reasons,
            sensitive=sensitive,
            reason="These are socks, not shoes." if k == 0 else None,
            received_at=now - timedelta(hours=26 - 4 * k),
        )
        items[title] = result.item_id
    # Feedback that needed no people (accepts not sampled, auto-vetted corrections): the
    # dashboard's acceptance rates.
    n = 0
    for version, accept_rate in ACCEPTANCE.items():
        for vertical, path in VERTICALS.items():
            for _ in range(40 if vertical != "Health & Beauty" else 12):
                n += 1
                rec = served_record(
                    taxonomy,
                    f"bulk-{n}",
                    f"{vertical} product {n}",
                    path,
                    model_version=version,
                    served_at=now - timedelta(days=2, minutes=n),
                )
                accepted = rng.random() < accept_rate - (0.1 if vertical == "Toys & Games" else 0.0)
                if accepted:
                    seed_feedback(store, taxonomy, rec, "accept", reasons=(), status="not_sampled")
                else:
                    action = "delete" if rng.random() < 0.15 else "correct"
                    seed_feedback(
                        store,
                        taxonomy,
                        rec,
                        action,
                        SOCKS if action == "correct" else None,
                        reasons=("correction",) if action == "correct" else ("delete",),
                        status="auto_vetted" if action == "correct" else "not_sampled",
                    )
    # Items people decided already (the rejection rate): 7 approved, 3 rejected.
    for i in range(10):
        rec = served_record(
            taxonomy, f"decided-{i}", f"Decided product {i}", SNEAKERS, served_at=now - timedelta(days=3)
        )
        done = seed_feedback(store, taxonomy, rec, "correct", ATHLETIC, reasons=("correction",))
        store.decide(done.item_id, "ann3" if i % 2 else "ann2", "approve" if i < 7 else "reject")
    # Blind ratings by three annotators (agreement: kappa), on the bulk predictions.
    for i in range(1, 61):
        truth = rng.choices(["correct", "partly", "wrong"], weights=[0.7, 0.15, 0.15])[0]
        for who in ("ann", "ann2", "ann3"):
            if who == "ann3" and i % 2:
                continue
            verdict = truth if rng.random() < 0.8 else rng.choice(["correct", "partly", "wrong"])
            store.add_rating(f"bulk-{i}", who, verdict)  # type: ignore[arg-type]
    return items


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, taxonomy: Taxonomy) -> Iterator[dict[str, Any]]:
    db = tmp_path_factory.mktemp("review") / "review.sqlite"
    store = ReviewStore(f"sqlite:///{db}")
    for name, role in (("ann", "annotator"), ("ann2", "annotator"), ("ann3", "annotator"), ("boss", "admin")):
        store.add_annotator(name, PASSWORD, role)  # type: ignore[arg-type]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    items = _seed(store, taxonomy, base)

    app = FastAPI()
    colours = [(70, 110, 200), (40, 40, 40), (150, 110, 80), (230, 230, 225), (240, 120, 40), (90, 150, 200)]

    @app.get("/test-images/{k}.png")
    def image(k: int) -> Response:  # stands in for a merchant's CDN
        return Response(_image(colours[k % len(colours)], f"product {k}"), media_type="image/png")

    mount_review(app, store, lambda: taxonomy, secret_key="e2e-secret-key-0123456789abcdef")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield {"base": base, "store": store, "items": items, "db": db, "taxonomy": taxonomy}
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("PRODUCTLENS_SCREENSHOTS")
    out = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def _login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/review/")
    assert "/review/login" in page.url  # not logged in: the login form
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/review/")


def _exported(db: Path, tmp: Path) -> list[dict[str, Any]] | None:
    """`productlens labels export` output, or None where the command does not exist yet."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tmp / "labels.jsonl"
    result = CliRunner().invoke(app, ["labels", "export", "--output", str(out), "--db", f"sqlite:///{db}"])
    if result.exit_code == 2 and "No such command" in result.output:
        return None
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def test_annotator_finds_a_correction_picks_a_category_and_approves(
    served: dict[str, Any], browser: Any, shots: Path, tmp_path: Path
) -> None:
    base, store = served["base"], served["store"]
    taxonomy: Taxonomy = served["taxonomy"]
    item_id = served["items"][SHOE_TITLE]
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, base, "ann")

    # The queue: the shoe the merchant corrected to socks.
    row = page.locator("table.queue tbody tr", has_text=SHOE_TITLE)
    assert row.count() == 1
    assert "Socks" in row.inner_text() and "correct" in row.inner_text()
    page.screenshot(path=str(shots / "review-queue.png"), full_page=True)
    row.locator("a").first.click()
    page.wait_for_url(f"{base}/review/items/{item_id}")
    assert page.locator(".product-title").inner_text() == SHOE_TITLE
    assert page.locator("#category-chosen").inner_text() == SOCKS  # defaults to the merchant's

    # The type-ahead: "/" focuses it; a Spanish name finds Crew Socks.
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "category-search"
    page.keyboard.type("calcetines largos", delay=30)
    first = page.locator("#category-suggestions li[role=option]").first
    # Retried until the answer to the whole query is shown (not one for a prefix typed so far).
    sync_api.expect(first).to_contain_text(CREW_SOCKS)
    sync_api.expect(first).to_contain_text("es: Ropa y accesorios")
    page.screenshot(path=str(shots / "review-item.png"), full_page=True)
    page.keyboard.press("Enter")  # picks the highlighted suggestion, does not submit
    assert page.locator("#category-chosen").inner_text() == CREW_SOCKS
    assert page.url == f"{base}/review/items/{item_id}"

    # The browse tree loads children on demand.
    page.click("details#browse summary")
    page.locator("#tree li", has_text="Apparel & Accessories").first.wait_for()

    # Approve with the keyboard (focus off the search box), then the next pending item.
    page.locator("h1").click()
    page.keyboard.press("a")
    page.wait_for_url(lambda url: url != f"{base}/review/items/{item_id}")
    assert "/review/items/" in page.url
    assert f"Approved item #{item_id}" in page.locator(".flash").inner_text()

    item = store.item(item_id)
    crew = taxonomy.by_full_name(CREW_SOCKS)
    assert item.status == "approved"
    assert [(d.annotator, d.action, d.category_id) for d in item.decisions] == [("ann", "approve", crew.id)]
    labels = {v.prediction_id: v for v in store.vetted_labels()}
    assert labels["pending-0"].category_id == crew.id and labels["pending-0"].annotators == ("ann",)
    exported = _exported(served["db"], tmp_path)
    if exported is not None:
        (row,) = [r for r in exported if r["id"] == "shop-100#prod-pending-0"]
        assert row["gold_category_path"] == CREW_SOCKS and row["title"] == SHOE_TITLE
        assert "/approved/ann@" in row["source"]
    assert errors == []  # no JS errors, no CSP violations
    context.close()


def test_blind_rating_with_the_keyboard(served: dict[str, Any], browser: Any, shots: Path) -> None:
    base, store = served["base"], served["store"]
    context = browser.new_context(viewport={"width": 1360, "height": 820})
    page = context.new_page()
    _login(page, base, "ann2")
    page.goto(f"{base}/review/rate")
    title = page.locator(".product-title").inner_text()
    text = page.locator("main").inner_text()
    assert "Socks, not shoes" not in text and "vlm-" not in text and "baseline-" not in text  # blind
    page.screenshot(path=str(shots / "review-rate.png"), full_page=True)
    before = store.dashboard().counts["ratings"]
    page.keyboard.press("2")
    page.locator(".flash").wait_for()
    assert "Rated: partly" in page.locator(".flash").inner_text()
    assert store.dashboard().counts["ratings"] == before + 1
    assert page.locator(".product-title").inner_text() != title  # the next sample
    context.close()


def test_admin_dashboard_and_annotator_refused(served: dict[str, Any], browser: Any, shots: Path) -> None:
    base = served["base"]
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    _login(page, base, "ann3")
    assert page.goto(f"{base}/review/dashboard").status == 403
    page.click("button:has-text('Log out')")
    page.wait_for_url(f"{base}/review/login")
    _login(page, base, "boss")
    page.goto(f"{base}/review/dashboard")
    assert page.locator("svg").count() >= 3
    text = page.locator("main").inner_text()
    assert "Merchant acceptance" in text and "95% CI" in text and "Cohen" in text
    page.screenshot(path=str(shots / "review-dashboard.png"), full_page=True)
    context.close()
