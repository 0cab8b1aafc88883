"""Helpers for the service tests: a controllable model, an app on an in-memory transport.

The app runs with its lifespan (model loading, the batcher) inside the test's event loop;
requests go through httpx's ASGI transport, so concurrent requests are really concurrent
(asyncio) and the model batches run on the batcher's threads as in production.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from model_repository.contract import ModelRequest, Task
from service.app import create_app
from service.auth import ApiKeys
from service.runtime import Runtime
from transforms.config import PredictSettings, ServeCommand
from transforms.core import CoreConfig, ProductCore
from transforms.model.client import ModelMetadata

SAMPLE_POLICY = Path(__file__).parents[1] / "fixtures" / "review" / "policy_sample_taxonomy.yaml"
META = ModelMetadata("fake", "fake-1", "2024-07")
DRESS = "Apparel & Accessories > Clothing > Dresses"


class ControlledModel:
    """Answers classify with `category` and extract with a colour; records every batch;
    can be made slow (`gate`: the call waits until it is set) or down (`down`)."""

    def __init__(self, category: str = DRESS) -> None:
        self.category = category
        self.batches: list[list[str]] = []  # per classify call: the titles it carried
        self.down = False
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def metadata(self) -> ModelMetadata:
        return META

    def infer_batch(self, requests: Sequence[tuple[bytes, bytes | None]]) -> list[bytes | Exception]:
        self.gate.wait(timeout=30)
        if self.down:
            raise ConnectionError("model server unreachable")
        out: list[bytes | Exception] = []
        parsed = [ModelRequest.model_validate_json(raw) for raw, _ in requests]
        if parsed and parsed[0].task is Task.CLASSIFY:
            with self.lock:
                self.batches.append([r.product.title for r in parsed])
        for request in parsed:
            if request.task is Task.CLASSIFY:
                out.append(json.dumps({"category": self.category, "confidence": 0.9}).encode())
            else:
                out.append(b'{"attributes": {"color": ["Red"]}}')
        return out

    def close(self) -> None:
        pass

    @property
    def classified(self) -> int:
        return sum(len(b) for b in self.batches)


def make_runtime(model: ControlledModel, taxonomy: Any, workers: int = 1, **config: Any) -> Runtime:
    core_config = CoreConfig(**config)
    cores = [ProductCore(model, taxonomy, core_config, metadata=META)]
    cores += [
        ProductCore(
            model, taxonomy, core_config, metadata=META, corrector=cores[0].corrector, normaliser=cores[0].normaliser
        )
        for _ in range(workers - 1)
    ]
    return Runtime(taxonomy, model, META, cores)


def make_app(
    model: ControlledModel,
    taxonomy: Any,
    *,
    keys: frozenset[str] = frozenset(),
    load: Callable[[], Runtime] | None = None,
    core: dict[str, Any] | None = None,
    **serve: Any,
) -> FastAPI:
    # Each app its own review store in a fresh directory (never review.sqlite in the checkout).
    serve.setdefault("review_policy", str(SAMPLE_POLICY))
    serve.setdefault("second_opinion", "served")  # no second model to load for a stand-in
    serve.setdefault("review_db", f"sqlite:///{tempfile.mkdtemp(prefix='review-')}/review.sqlite")
    settings = ServeCommand(**serve)
    runtime_load = load or (lambda: make_runtime(model, taxonomy, settings.batch_workers, **(core or {})))
    return create_app(
        settings, PredictSettings(), ApiKeys(keys), load=runtime_load, session_secret="test-secret-of-the-service-tests"
    )


@asynccontextmanager
async def running(app: FastAPI, *, wait_ready: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            if wait_ready:
                for _ in range(500):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the service did not get ready")
            yield client


def one(
    product_id: str, title: str = "Women's red v-neck dress", shop_id: str = "shop-1", **product: Any
) -> dict[str, Any]:
    return {"shop_id": shop_id, "product_id": product_id, "product": {"title": title, **product}}
