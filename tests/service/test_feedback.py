"""`POST /v1/feedback`: merchant accept / correct / delete on a served prediction.

Validated against the taxonomy (422 naming the unknown thing), refused for unknown (404)
or stale (409) predictions, idempotent per prediction, shop and action, routed by the
vetting policy; 1,000 events at once lose nothing and count nothing twice.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from service.review.store import QueueFilter
from tests.service.conftest import ControlledModel, make_app, one, running

SOCKS = "gid://shopify/TaxonomyCategory/aa-1-17"  # a category of the sample taxonomy (checked below)


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


async def _served(client: Any, product_id: str = "p1", title: str = "Women's red v-neck dress") -> dict[str, Any]:
    response = await client.post("/v1/predictions", json=one(product_id, title))
    assert response.status_code == 200
    return response.json()["predictions"][0]


def _feedback(prediction: dict[str, Any], action: str = "accept", **extra: Any) -> dict[str, Any]:
    return {"prediction_id": prediction["prediction_id"], "shop_id": prediction["shop_id"], "action": action, **extra}


def test_accept_is_stored_once_and_a_replay_returns_the_same_result(sample_taxonomy) -> None:
    async def body() -> None:
        app = make_app(ControlledModel(), sample_taxonomy)
        async with running(app) as client:
            p = await _served(client)
            first = await client.post("/v1/feedback", json=_feedback(p))
            assert first.status_code == 201, first.text
            result = first.json()
            assert result["created"] is True and result["action"] == "accept"
            assert result["status"] in {"not_sampled", "pending"}  # accepts are sampled for audit
            again = await client.post("/v1/feedback", json=_feedback(p))
            assert again.status_code == 200
            assert again.json() | {"created": True} == result  # same ids, same routing
            assert again.json()["created"] is False

    run(body())


def test_a_correction_is_validated_against_the_taxonomy(sample_taxonomy) -> None:
    assert SOCKS in sample_taxonomy.categories

    async def body() -> None:
        app = make_app(ControlledModel(), sample_taxonomy)
        async with running(app) as client:
            p = await _served(client)
            unknown = await client.post("/v1/feedback", json=_feedback(p, "correct", category_id="zz-99-99"))
            assert unknown.status_code == 422 and "zz-99-99" in unknown.text
            missing = await client.post("/v1/feedback", json=_feedback(p, "correct"))
            assert missing.status_code == 422 and "category_id" in missing.text
            bad_value = await client.post(
                "/v1/feedback",
                json=_feedback(p, "correct", category_id="aa-1-4", attributes={"color": ["Ultraviolet plaid"]}),
            )
            assert bad_value.status_code == 422 and "Ultraviolet plaid" in bad_value.text
            bad_handle = await client.post(
                "/v1/feedback", json=_feedback(p, "correct", category_id="aa-1-4", attributes={"warp-speed": ["9"]})
            )
            assert bad_handle.status_code == 422 and "warp-speed" in bad_handle.text
            good = await client.post(
                "/v1/feedback",
                json=_feedback(p, "correct", category_id="aa-1-4", attributes={"color": ["Blue"]}, reason="it is blue"),
            )
            assert good.status_code == 201, good.text
            assert "correction" in good.json()["reasons"] or good.json()["status"] == "auto_vetted"

    run(body())


def test_unknown_stale_and_foreign_shop_feedback_is_refused(sample_taxonomy) -> None:
    async def body() -> None:
        app = make_app(ControlledModel(), sample_taxonomy)
        async with running(app) as client:
            unknown = await client.post(
                "/v1/feedback", json={"prediction_id": "0" * 32, "shop_id": "shop-1", "action": "accept"}
            )
            assert unknown.status_code == 404
            old = await _served(client, "p1", "Red dress")
            await _served(client, "p1", "Red dress, now in linen")  # the product changed: a newer prediction
            stale = await client.post("/v1/feedback", json=_feedback(old))
            assert stale.status_code == 409 and "stale" in stale.text
            current = await _served(client, "p2", "Green dress")
            foreign = await client.post("/v1/feedback", json=_feedback(current) | {"shop_id": "another-shop"})
            assert foreign.status_code == 422 and "shop_id" in foreign.text
            bad_action = await client.post("/v1/feedback", json=_feedback(current, "love"))
            assert bad_action.status_code == 422

    run(body())


def test_a_sensitive_correction_goes_to_people(sample_taxonomy) -> None:
    async def body() -> None:
        app = make_app(ControlledModel(), sample_taxonomy)
        async with running(app) as client:
            p = await _served(client, "gun", "Foam dart blaster")
            response = await client.post("/v1/feedback", json=_feedback(p, "correct", category_id="tg-5-26"))
            assert response.status_code == 201, response.text
            result = response.json()
            assert result["sensitive"] is True and result["status"] == "pending" and "sensitive" in result["reasons"]
            store = app.state.service.review
            queued = store.queue(QueueFilter(sensitive=True))
            assert [i.id for i in queued] == [result["item_id"]]

    run(body())


def test_feedback_needs_an_api_key_when_the_server_has_keys(sample_taxonomy) -> None:
    async def body() -> None:
        app = make_app(ControlledModel(), sample_taxonomy, keys=frozenset({"k"}))
        async with running(app) as client:
            auth = {"Authorization": "Bearer k"}
            p = (await client.post("/v1/predictions", json=one("p"), headers=auth)).json()["predictions"][0]
            assert (await client.post("/v1/feedback", json=_feedback(p))).status_code == 401
            assert (await client.post("/v1/feedback", json=_feedback(p), headers=auth)).status_code == 201

    run(body())


def test_a_thousand_feedback_events_at_once_lose_nothing_and_count_nothing_twice(sample_taxonomy) -> None:
    async def body() -> None:
        app = make_app(ControlledModel(), sample_taxonomy, max_queue=1000, max_products=100)
        async with running(app) as client:
            predictions: list[dict[str, Any]] = []
            for start in range(0, 400, 100):  # 400 served predictions, 100 products per request
                products = [
                    {"product_id": f"p{i}", "product": {"title": f"Dress {i}"}} for i in range(start, start + 100)
                ]
                r = await client.post("/v1/predictions", json={"shop_id": "shop-1", "products": products})
                predictions += r.json()["predictions"]
            # 1,000 events: every prediction accepted, 200 of them also corrected, and 400 replays.
            events = [_feedback(p) for p in predictions]
            events += [_feedback(p, "correct", category_id="aa-1-4") for p in predictions[:200]]
            events += [_feedback(p) for p in predictions[:400]]
            assert len(events) == 1000
            responses = await asyncio.gather(*(client.post("/v1/feedback", json=e) for e in events))
            codes = Counter(r.status_code for r in responses)
            assert set(codes) <= {200, 201}, codes
            results = [r.json() for r in responses]
            assert sum(r["created"] for r in results) == 600  # 400 accepts + 200 corrections, once each
            by_key: dict[tuple[str, str], set[int]] = {}
            for e, r in zip(events, results):
                by_key.setdefault((e["prediction_id"], e["action"]), set()).add(r["feedback_id"])
            assert len(by_key) == 600 and all(len(ids) == 1 for ids in by_key.values())  # a replay: the same row
            store = app.state.service.review
            stored = store.count(QueueFilter(status=None))
            assert stored == 600
            metrics = (await client.get("/metrics")).text
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith("productlens_feedback_total{")
            )
            assert counted == 600  # stored feedback counted once; replays are not counted

    run(body())


def test_the_review_app_is_served_by_the_service(sample_taxonomy) -> None:
    async def body() -> None:
        async with running(make_app(ControlledModel(), sample_taxonomy)) as client:
            response = await client.get("/review", follow_redirects=False)
            assert response.status_code in (302, 303, 307) and "/review/login" in response.headers["location"]
            login = await client.get("/review/login")
            assert login.status_code == 200 and "password" in login.text.lower()

    run(body())


def test_feedback_json_shape_is_documented(sample_taxonomy) -> None:
    async def body() -> None:
        async with running(make_app(ControlledModel(), sample_taxonomy)) as client:
            spec = (await client.get("/openapi.json")).json()
            post = spec["paths"]["/v1/feedback"]["post"]
            assert {"201", "200", "404", "409", "422"} <= set(post["responses"])
            schema = json.dumps(spec["components"]["schemas"]["FeedbackIn"])
            assert "prediction_id" in schema and "accept" in schema

    run(body())


def test_served_predictions_are_sampled_for_blind_rating(sample_taxonomy) -> None:
    async def body() -> None:
        app = make_app(ControlledModel(), sample_taxonomy, rating_sample_rate=1.0)
        async with running(app) as client:
            served = await _served(client, "p-rated", "Blue denim jacket")
            store = app.state.service.review
            store.add_annotator("rater", "a-long-enough-password", "annotator")
            for _ in range(100):  # written on a thread after the answer
                if store.has_prediction(served["prediction_id"]):
                    break
                await asyncio.sleep(0.02)
            sample = store.next_for_rating("rater")
            assert sample is not None and sample.prediction_id == served["prediction_id"]
            assert sample.product.title == "Blue denim jacket"
        none_kept = make_app(ControlledModel(), sample_taxonomy, rating_sample_rate=0.0)
        async with running(none_kept) as client:
            served = await _served(client, "p-not", "Green coat")
            assert not none_kept.state.service.review.has_prediction(served["prediction_id"])

    run(body())
