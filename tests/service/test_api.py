"""The HTTP API of `productlens serve`: shapes, status codes, cache, batching, limits, auth.

A controllable model stands in for the real one (its answers, its speed, its outages); the
product core, the taxonomy, the cache and the batcher are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import pytest
from typer.testing import CliRunner

from service.auth import ApiKeys, is_loopback, require_keys_for
from tests.service.conftest import DRESS, META, ControlledModel, make_app, one, running
from transforms.records import prediction_id


def run(coro):  # noqa: ANN001, ANN201 - a tiny asyncio.run wrapper for readability
    return asyncio.run(coro)


def test_openapi_documents_the_routes_and_the_product_schema(sample_taxonomy) -> None:
    async def body() -> None:
        async with running(make_app(ControlledModel(), sample_taxonomy)) as client:
            spec = (await client.get("/openapi.json")).json()
            assert {"/v1/predictions", "/v1/predictions/{product_id}", "/healthz", "/readyz", "/metrics"} <= set(
                spec["paths"]
            )
            schemas = spec["components"]["schemas"]
            assert {"Product", "Prediction", "PredictionRequest", "PredictionResponse"} <= set(schemas)
            assert "title" in schemas["Product"]["properties"]
            responses = spec["paths"]["/v1/predictions"]["post"]["responses"]
            assert {"200", "401", "413", "422", "503"} <= set(responses)
            assert (await client.get("/docs")).status_code == 200

    run(body())


def test_one_product_is_predicted_then_served_from_the_cache(sample_taxonomy) -> None:
    model = ControlledModel()

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy)) as client:
            first = await client.post("/v1/predictions", json=one("p1"))
            assert first.status_code == 200, first.text
            assert first.headers["x-cache"] == "miss"
            data = first.json()
            assert data["cache_hits"] == 0 and data["errors"] == []
            assert (data["model_version"], data["taxonomy_version"]) == (META.model_version, META.taxonomy_version)
            (p,) = data["predictions"]
            assert p["product_id"] == "p1" and p["shop_id"] == "shop-1"
            assert p["category"]["full_name"] == DRESS
            assert [a["handle"] for a in p["attributes"]] == ["color"]
            assert p["prediction_id"] == prediction_id("p1", p["content_hash"], "fake-1", "2024-07")

            again = await client.post("/v1/predictions", json=one("p1"))
            assert again.headers["x-cache"] == "hit" and again.json()["cache_hits"] == 1
            assert model.classified == 1  # a hit never calls the model
            same = {
                k: v
                for k, v in again.json()["predictions"][0].items()
                if k not in ("predicted_at", "event_id", "occurred_at")
            }
            assert same == {k: v for k, v in p.items() if k not in ("predicted_at", "event_id", "occurred_at")}

            # Same content, another product: a hit, stamped with that product's own ids.
            other = (await client.post("/v1/predictions", json=one("p2", shop_id="shop-2"))).json()
            (q,) = other["predictions"]
            assert other["cache_hits"] == 1 and model.classified == 1
            assert (q["product_id"], q["shop_id"]) == ("p2", "shop-2")
            assert q["prediction_id"] == prediction_id("p2", p["content_hash"], "fake-1", "2024-07")
            assert q["prediction_id"] != p["prediction_id"]

            # Content that changes only price or inventory is the same content (content_hash).
            priced = one("p1", price=12.5, inventory_quantity=3)
            assert (await client.post("/v1/predictions", json=priced)).json()["cache_hits"] == 1

    run(body())


def test_a_batch_request_answers_every_product_in_order(sample_taxonomy) -> None:
    model = ControlledModel()

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy)) as client:
            products = [{"product_id": f"p{i}", "product": {"title": f"Red dress model {i}"}} for i in range(5)]
            response = await client.post("/v1/predictions", json={"shop_id": "s", "products": products})
            assert response.status_code == 200
            assert [p["product_id"] for p in response.json()["predictions"]] == [f"p{i}" for i in range(5)]
            assert model.batches == [[f"Red dress model {i}" for i in range(5)]]  # one model batch

    run(body())


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"shop_id": "s", "product_id": "p"}, "product_id and product"),
        ({"shop_id": "s", "product_id": "p", "product": {"description_html": "no title"}}, "title"),
        ({"shop_id": "s", "product_id": "p", "product": {"title": "   "}}, "title"),
        ({"shop_id": "s", "product_id": "p", "product": {"title": "x", "tags": 5}}, "tags"),
        ({"product_id": "p", "product": {"title": "x"}}, "shop_id"),
        ({"shop_id": "s", "product_id": "p", "product": {"title": "x"}, "products": []}, "products"),
        ({"shop_id": "s", "product_id": "p", "product": {"title": "x", "colour": "red"}}, "colour"),
        ({"shop_id": "s", "product_id": "p", "product": {"title": "x", "image_urls": ["u"] * 51}}, "image_urls"),
    ],
)
def test_bad_input_is_a_422_with_the_field_errors(sample_taxonomy, payload: dict, needle: str) -> None:
    model = ControlledModel()

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy)) as client:
            response = await client.post("/v1/predictions", json=payload)
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            assert needle in json.dumps(detail)
            assert all("input" not in e for e in detail)  # merchant data is not echoed back
            assert model.classified == 0

    run(body())


def test_malformed_json_too_many_products_and_deep_nesting_are_client_errors(sample_taxonomy) -> None:
    async def body() -> None:
        async with running(make_app(ControlledModel(), sample_taxonomy, max_products=3)) as client:
            broken = await client.post(
                "/v1/predictions", content=b'{"shop_id": ', headers={"content-type": "application/json"}
            )
            assert broken.status_code == 422
            products = [{"product_id": f"p{i}", "product": {"title": "x"}} for i in range(4)]
            many = await client.post("/v1/predictions", json={"shop_id": "s", "products": products})
            assert many.status_code == 422 and "at most 3 products" in many.text
            deep = (
                b'{"shop_id": "s", "product_id": "p", "product": {"title": "x", "tags": '
                + b"[" * 50_000
                + b"]" * 50_000
                + b"}}"
            )
            nested = await client.post("/v1/predictions", content=deep, headers={"content-type": "application/json"})
            # Python's JSON parser gives up on the depth (RecursionError): a 400, never a 500.
            assert nested.status_code == 400, nested.status_code

    run(body())


def test_the_body_limit_is_a_413_by_length_and_while_streaming(sample_taxonomy) -> None:
    async def body() -> None:
        async with running(make_app(ControlledModel(), sample_taxonomy, max_body_bytes=4096)) as client:
            big = one("p", description_html="x" * 10_000)
            response = await client.post("/v1/predictions", json=big)
            assert response.status_code == 413

            async def chunks():  # noqa: ANN202 - no Content-Length: the limit applies while reading
                payload = json.dumps(big).encode()
                for i in range(0, len(payload), 1000):
                    yield payload[i : i + 1000]

            streamed = await client.post(
                "/v1/predictions", content=chunks(), headers={"content-type": "application/json"}
            )
            assert streamed.status_code == 413
            assert (await client.post("/v1/predictions", json=one("p"))).status_code == 200

    run(body())


def test_a_model_outage_is_a_503_with_retry_after_and_recovers(sample_taxonomy) -> None:
    model = ControlledModel()

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy, retry_after_s=7)) as client:
            model.down = True
            response = await client.post("/v1/predictions", json=one("p1"))
            assert response.status_code == 503
            assert response.headers["retry-after"] == "7"
            assert response.json()["detail"]["reason"] == "model_unavailable"
            model.down = False
            recovered = await client.post("/v1/predictions", json=one("p1"))
            assert recovered.status_code == 200 and recovered.json()["predictions"]
            metrics = (await client.get("/metrics")).text
            assert 'productlens_errors_total{kind="model_unavailable"} 1.0' in metrics

    run(body())


def test_overload_is_a_503_never_a_500_or_a_hang(sample_taxonomy) -> None:
    model = ControlledModel()

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy, max_queue=4, batch_wait_ms=0)) as client:
            model.gate.clear()  # the model hangs: the first batch holds the worker
            requests = [client.post("/v1/predictions", json=one(f"p{i}", f"Dress {i}")) for i in range(12)]
            pending = [asyncio.ensure_future(r) for r in requests]
            await asyncio.sleep(0.3)
            model.gate.set()
            responses = await asyncio.gather(*pending)
            codes = Counter(r.status_code for r in responses)
            assert set(codes) <= {200, 503} and codes[503] >= 1 and codes[200] >= 1, codes
            for r in responses:
                if r.status_code == 503:
                    assert r.headers["retry-after"] and r.json()["detail"]["reason"] == "overloaded"

    run(body())


def test_a_request_past_its_deadline_is_a_503_and_its_product_costs_no_call(sample_taxonomy) -> None:
    model = ControlledModel()

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy, batch_wait_ms=0)) as client:
            model.gate.clear()
            blocker = asyncio.ensure_future(client.post("/v1/predictions", json=one("slow", "Slow dress")))
            await asyncio.sleep(0.1)  # the worker is now inside the hung model call
            late = await client.post(
                "/v1/predictions", json=one("late", "Late dress"), headers={"X-Request-Timeout": "0.2"}
            )
            assert late.status_code == 503 and late.json()["detail"]["reason"] == "deadline"
            model.gate.set()
            assert (await blocker).status_code == 200
            await asyncio.sleep(0.1)
            titles = [t for batch in model.batches for t in batch]
            assert "Late dress" not in titles  # dropped from the queue before a model call

    run(body())


def test_not_ready_while_loading(sample_taxonomy) -> None:
    release = threading.Event()
    model = ControlledModel()

    def slow_load():  # noqa: ANN202
        from tests.service.conftest import make_runtime

        release.wait(timeout=30)
        return make_runtime(model, sample_taxonomy)

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy, load=slow_load), wait_ready=False) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 503
            loading = await client.post("/v1/predictions", json=one("p"))
            assert loading.status_code == 503 and loading.json()["detail"]["reason"] == "loading"
            assert loading.headers["retry-after"]
            release.set()
            for _ in range(300):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            ready = (await client.get("/readyz")).json()
            assert ready["ready"] and ready["model_version"] == "fake-1"
            assert (await client.post("/v1/predictions", json=one("p"))).status_code == 200

    run(body())


def test_a_failed_load_is_shown_and_retried(sample_taxonomy) -> None:
    attempts = []
    model = ControlledModel()

    def flaky_load():  # noqa: ANN202
        from tests.service.conftest import make_runtime

        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("triton is still starting")
        return make_runtime(model, sample_taxonomy)

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy, load=flaky_load), wait_ready=False) as client:
            first = (await client.get("/readyz")).json()
            for _ in range(50):
                if first.get("load_error"):
                    break
                await asyncio.sleep(0.01)
                first = (await client.get("/readyz")).json()
            assert "triton is still starting" in first["load_error"]
            for _ in range(400):  # the loader retries after 1 s
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            assert (await client.get("/readyz")).status_code == 200 and len(attempts) == 2

    run(body())


def test_api_keys(sample_taxonomy) -> None:
    async def body() -> None:
        async with running(make_app(ControlledModel(), sample_taxonomy, keys=frozenset({"k-1", "k-2"}))) as client:
            missing = await client.post("/v1/predictions", json=one("p"))
            assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
            wrong = await client.post("/v1/predictions", json=one("p"), headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            basic = await client.post("/v1/predictions", json=one("p"), headers={"Authorization": "Basic k-1"})
            assert basic.status_code == 401
            bearer = await client.post("/v1/predictions", json=one("p"), headers={"Authorization": "Bearer k-2"})
            assert bearer.status_code == 200
            header = await client.get("/v1/predictions/p", headers={"X-API-Key": "k-1"})
            assert header.status_code == 200
            assert (await client.get("/v1/predictions/p")).status_code == 401
            assert (await client.get("/healthz")).status_code == 200  # probes stay open

    run(body())


def test_keys_are_required_beyond_loopback(monkeypatch) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("example.com")
    require_keys_for("127.0.0.1", ApiKeys(frozenset()))
    require_keys_for("0.0.0.0", ApiKeys(frozenset({"k"})))
    with pytest.raises(ValueError, match="PRODUCTLENS_API_KEYS"):
        require_keys_for("0.0.0.0", ApiKeys(frozenset()))

    from pipelines.cli import app

    monkeypatch.delenv("PRODUCTLENS_API_KEYS", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "PRODUCTLENS_API_KEYS" in result.output
    monkeypatch.setenv("PRODUCTLENS_API_KEYS", " , ")
    assert not ApiKeys.from_env().enabled
    monkeypatch.setenv("PRODUCTLENS_API_KEYS", "a, b")
    assert ApiKeys.from_env().allows("Bearer b", None)


def test_the_latest_prediction_of_a_product(sample_taxonomy) -> None:
    async def body() -> None:
        async with running(make_app(ControlledModel(), sample_taxonomy)) as client:
            assert (await client.get("/v1/predictions/p9")).status_code == 404
            posted = (await client.post("/v1/predictions", json=one("p9"))).json()["predictions"][0]
            latest = await client.get("/v1/predictions/p9")
            assert latest.status_code == 200 and latest.json() == posted
            newer = (await client.post("/v1/predictions", json=one("p9", "Blue summer dress"))).json()["predictions"][0]
            assert (await client.get("/v1/predictions/p9")).json()["prediction_id"] == newer["prediction_id"]

    run(body())


def test_concurrent_requests_share_model_batches_and_nothing_is_lost_or_duplicated(sample_taxonomy) -> None:
    model = ControlledModel()

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy, batch_wait_ms=20, max_queue=1000)) as client:
            n = 120
            posts = [client.post("/v1/predictions", json=one(f"p{i}", f"Red dress number {i}")) for i in range(n)]
            responses = await asyncio.gather(*posts)
            assert all(r.status_code == 200 for r in responses)
            got = [p["product_id"] for r in responses for p in r.json()["predictions"]]
            assert sorted(got) == sorted(f"p{i}" for i in range(n))  # each exactly once
            for i, r in enumerate(responses):
                assert r.json()["predictions"][0]["product_id"] == f"p{i}"  # each to its own caller
            titles = [t for batch in model.batches for t in batch]
            assert sorted(titles) == sorted(f"Red dress number {i}" for i in range(n))  # one call each
            assert max(len(b) for b in model.batches) > 1  # requests shared model batches
            metrics = (await client.get("/metrics")).text
            assert f"productlens_model_batch_size_count {float(len(model.batches))}" in metrics

    run(body())


def test_identical_content_in_flight_makes_one_model_call(sample_taxonomy) -> None:
    model = ControlledModel()

    async def body() -> None:
        async with running(make_app(model, sample_taxonomy, batch_wait_ms=0)) as client:
            model.gate.clear()
            posts = [asyncio.ensure_future(client.post("/v1/predictions", json=one(f"p{i}"))) for i in range(8)]
            await asyncio.sleep(0.2)
            model.gate.set()
            responses = await asyncio.gather(*posts)
            assert all(r.status_code == 200 for r in responses)
            ids = {r.json()["predictions"][0]["prediction_id"] for r in responses}
            assert len(ids) == 8  # each product its own prediction_id ...
            assert model.classified == 1  # ... from one model call

    run(body())


def test_a_failed_image_is_reported_beside_a_text_prediction_and_not_cached(sample_taxonomy, tmp_path) -> None:
    model = ControlledModel()

    async def body() -> None:
        app = make_app(model, sample_taxonomy, core={"image_base_dir": str(tmp_path)})
        async with running(app) as client:
            request = one("p", image_urls=["missing.jpg"])
            data = (await client.post("/v1/predictions", json=request)).json()
            assert data["predictions"][0]["category"]["full_name"] == DRESS
            assert [e["stage"] for e in data["errors"]] == ["prepare_images"]
            again = (await client.post("/v1/predictions", json=request)).json()
            assert again["cache_hits"] == 0 and model.classified == 2  # the images are tried again

    run(body())


def test_metrics_count_hits_misses_and_calls(sample_taxonomy) -> None:
    async def body() -> None:
        async with running(make_app(ControlledModel(), sample_taxonomy)) as client:
            await client.post("/v1/predictions", json=one("a"))
            await client.post("/v1/predictions", json=one("b"))
            text = (await client.get("/metrics")).text
            assert 'productlens_cache_total{result="hit"} 1.0' in text
            assert 'productlens_cache_total{result="miss"} 1.0' in text
            assert "productlens_model_calls_total 1.0" in text
            assert 'productlens_predictions_total{source="cache"} 1.0' in text
            assert "productlens_ready 1.0" in text
            assert 'route="/v1/predictions",status="200"' in text

    run(body())
