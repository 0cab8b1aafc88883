"""The FastAPI application of `productlens serve`.

| route | what | status codes |
|---|---|---|
| `POST /v1/predictions` | predict one product or a small batch | 200; 401 no/wrong key; 413 body too large; 422 bad input (field errors); 503 + Retry-After: loading, overloaded, deadline, model down |
| `GET /v1/predictions/{product_id}` | the latest prediction served for a product (shared by replicas through Redis) | 200, 401, 404 |
| `POST /v1/feedback` | a merchant accepts, corrects or deletes a served prediction (service/review/) | 201 new, 200 replay; 401; 404 unknown, 409 stale prediction; 422 naming the unknown category/value; 503 loading |
| `/review/...` | the review web app (service/review/web.py, docs/REVIEW_APP.md) | pages: login, queue, items, rating, dashboard |
| `GET /healthz` | the process is up (liveness) | 200 |
| `GET /readyz` | the model, the taxonomy and the vetting policy are loaded (readiness) | 200, 503 |
| `GET /metrics` | Prometheus metrics (`service/metrics.py`) | 200 |
| `GET /docs`, `/openapi.json` | OpenAPI, generated from the pydantic records | 200 |

The model and the taxonomy load in the background (seconds for the in-process model; a
Triton server may still be starting), so `/healthz` answers at once and `/readyz` says when
predictions can be served; a failed load is retried with back-off and its error shown by
`/readyz`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import os
import secrets
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import ApiKeys, is_loopback
from service.batcher import DeadlineExceeded, Overloaded
from service.cache import Cache, make_cache
from service.metrics import ServiceMetrics
from service.predictor import InvalidProducts, ModelUnavailable, Predictor
from service.publish import FeedbackPublisher
from service.review.feedback import FeedbackError, FeedbackIn, ServedRecord, process_feedback, validate_feedback
from service.review.policy import VettingPolicy
from service.review.second_opinion import BaselineOpinion, CandidatesOpinion, SecondOpinion
from service.review.store import FeedbackResult, ReviewStore
from service.review.web import mount_review
from service.runtime import Runtime, load_runtime
from service.schemas import PredictionRequest, PredictionResponse, ProductInput
from transforms.config import PredictSettings, ServeCommand
from transforms.records import Prediction

__all__ = ["ServiceState", "create_app"]

log = logging.getLogger("productlens.serve")

SESSION_SECRET_ENV = "PRODUCTLENS_SESSION_SECRET"
# Back-off between attempts to load the model (a Triton server may still be starting).
_LOAD_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class ServiceState:
    serve: ServeCommand
    predict: PredictSettings
    keys: ApiKeys
    cache: Cache
    latest: Cache
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    runtime: Runtime | None = None
    predictor: Predictor | None = None
    load_error: str | None = None
    load_attempts: int = 0
    # Feedback: the review store (opened at start), and once the model is loaded the vetting
    # policy and the second opinion on corrections.
    review: ReviewStore | None = None
    policy: VettingPolicy | None = None
    opinion: SecondOpinion | None = None
    publisher: FeedbackPublisher | None = None
    background: set[asyncio.Future[None]] = field(default_factory=set)

    @property
    def ready(self) -> bool:
        return self.predictor is not None


def create_app(
    serve: ServeCommand,
    predict: PredictSettings,
    keys: ApiKeys,
    *,
    load: Callable[[], Runtime] | None = None,
    cache: Cache | None = None,
    latest: Cache | None = None,
    review: ReviewStore | None = None,
    session_secret: str | None = None,
) -> FastAPI:
    """The application. `load` builds the runtime (default: `load_runtime` from the
    settings); `cache` / `latest` default to `--cache` (predictions, and the latest
    prediction per product, in separate namespaces of the same backend)."""
    ttl = serve.cache_ttl_s or None
    state = ServiceState(
        serve,
        predict,
        keys,
        cache=cache or make_cache(serve.cache, max_entries=serve.cache_size, ttl_s=ttl, namespace="prediction"),
        latest=latest or make_cache(serve.cache, max_entries=serve.cache_size, ttl_s=ttl, namespace="latest"),
    )
    state.review = review or ReviewStore(serve.review_db)
    if serve.feedback_kafka:
        state.publisher = FeedbackPublisher(serve.feedback_kafka, serve.feedback_topic)
    loader = load or (lambda: load_runtime(predict, serve.batch_workers))

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        task = asyncio.create_task(_load_forever(state, loader))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.gather(*state.background, return_exceptions=True)  # rating samples being written
            if state.predictor is not None:
                await state.predictor.stop()
            if state.runtime is not None:
                state.runtime.close()
            state.cache.close()
            state.latest.close()
            if state.publisher is not None:
                state.publisher.close()
            state.review.close()

    app = FastAPI(
        title="productlens",
        version="1",
        summary="Shopify taxonomy category, attributes and descriptions for a product, in real time.",
        description="Same product core, model and taxonomy as the batch pipelines: the same content gives the same "
        "prediction and prediction_id online and in a backfill. Authenticate with `Authorization: Bearer KEY` or "
        "`X-API-Key: KEY` when the server has keys.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.add_middleware(_BodyLimit, max_bytes=serve.max_body_bytes, on_refusal=lambda: _count(state, "too_large"))

    app.add_middleware(_Timing, metrics=state.metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        _count(state, "invalid_input")
        # Field errors without the input echoed back: merchant data stays out of error logs.
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    # async: a plain def dependency would be run on the thread pool, a thread hand-off per
    # request (half of a cache hit's time in a profile).
    async def authorised(
        authorization: str | None = Header(default=None), x_api_key: str | None = Header(default=None)
    ) -> None:
        if not keys.allows(authorization, x_api_key):
            _count(state, "unauthorized")
            raise HTTPException(401, "a valid API key is required", headers={"WWW-Authenticate": "Bearer"})

    @app.post(
        "/v1/predictions",
        response_model=PredictionResponse,
        dependencies=[Depends(authorised)],
        responses={
            401: {"description": "no or wrong API key"},
            413: {"description": "request body too large"},
            422: {"description": "invalid product(s): the field errors"},
            503: {"description": "loading, overloaded, past the deadline or model unavailable; see Retry-After"},
        },
    )
    async def predictions(
        body: PredictionRequest,
        response: Response,
        x_request_timeout: float | None = Header(default=None, description="seconds this request may take"),
    ) -> Response:
        """Predict one product (`product_id` + `product`) or a batch (`products`) of one shop."""
        products = body.items()
        if len(products) > serve.max_products:
            _count(state, "invalid_input")
            raise HTTPException(422, f"at most {serve.max_products} products per request, got {len(products)}")
        if state.predictor is None or state.runtime is None:
            raise _unavailable(state, "loading", "the model is loading; retry shortly")
        timeout = serve.deadline_s
        if x_request_timeout is not None and math.isfinite(x_request_timeout) and x_request_timeout > 0:
            timeout = min(timeout, x_request_timeout)
        try:
            served = await state.predictor.predict(body.shop_id, products, timeout)
        except InvalidProducts as exc:
            _count(state, "invalid_input")
            raise HTTPException(422, [e.model_dump() for e in exc.errors]) from None
        except Overloaded as exc:
            raise _unavailable(state, "overloaded", str(exc)) from None
        except DeadlineExceeded as exc:
            raise _unavailable(state, "deadline", str(exc)) from None
        except ModelUnavailable as exc:
            raise _unavailable(state, "model_unavailable", f"the model is unavailable: {exc}"[:500]) from None
        if served.errors:
            _count(state, "product_error", len(served.errors))
        _keep_rating_samples(state, served.predictions, products)
        hits = served.cache_hits
        response.headers["X-Cache"] = "hit" if hits == len(products) else "miss" if hits == 0 else "partial"
        meta = state.runtime.metadata
        body = PredictionResponse(
            predictions=served.predictions,
            errors=served.errors,
            cache_hits=hits,
            model_version=meta.model_version,
            taxonomy_version=meta.taxonomy_version,
        )
        # Serialised once by pydantic-core; returning the model would make FastAPI validate
        # it again against response_model (which stays for the OpenAPI schema).
        return Response(body.model_dump_json(), media_type="application/json", headers=dict(response.headers))

    @app.get(
        "/v1/predictions/{product_id}",
        response_model=Prediction,
        dependencies=[Depends(authorised)],
        responses={404: {"description": "no prediction served for this product"}},
    )
    async def latest_prediction(product_id: str) -> Response:
        """The latest prediction served for a product (by any replica sharing the cache)."""
        if state.predictor is None:
            raise _unavailable(state, "loading", "the model is loading; retry shortly")
        raw = await state.predictor.latest_prediction(product_id)
        if raw is None:
            raise HTTPException(404, f"no prediction served for product {product_id!r}")
        return Response(raw, media_type="application/json")

    @app.post(
        "/v1/feedback",
        status_code=201,
        dependencies=[Depends(authorised)],
        responses={
            200: {"description": "the same feedback again (a duplicate or replay): the stored result"},
            401: {"description": "no or wrong API key"},
            404: {"description": "unknown prediction (never served, or expired)"},
            409: {"description": "stale prediction: the product has a newer one"},
            422: {"description": "invalid feedback: an unknown category, attribute or value is named"},
            503: {"description": "the model and taxonomy are loading; see Retry-After"},
        },
    )
    async def feedback(body: FeedbackIn) -> JSONResponse:
        """A merchant accepts, corrects or deletes a served prediction. Stored with its
        routing (vetting policy, second opinion); idempotent per prediction, shop and action."""
        if state.predictor is None or state.runtime is None or state.policy is None:
            raise _unavailable(state, "loading", "the model is loading; retry shortly")
        store, taxonomy = state.review, state.runtime.taxonomy
        assert store is not None
        try:
            body = validate_feedback(body, taxonomy)
        except FeedbackError as exc:
            _count(state, "invalid_feedback")
            raise _field_error(exc) from None
        existing = await asyncio.to_thread(store.feedback_result, body.prediction_id, body.shop_id, body.action)
        if existing is not None:
            return JSONResponse(_result_json(existing), status_code=200)
        record, latest_id = await state.predictor.served_record(body.prediction_id)
        if record is None:
            _count(state, "unknown_prediction")
            raise HTTPException(404, f"no prediction {body.prediction_id!r} was served (or it expired)")
        if latest_id is not None and latest_id != body.prediction_id:
            _count(state, "stale_prediction")
            raise HTTPException(
                409, f"prediction {body.prediction_id!r} is stale: the product's latest prediction is {latest_id!r}"
            )
        served = ServedRecord(
            record["prediction"], record.get("product") or {}, datetime.fromisoformat(record["served_at"])
        )
        try:
            result = await asyncio.to_thread(
                process_feedback, store, state.policy, state.opinion, taxonomy, served, body
            )
        except FeedbackError as exc:
            _count(state, "invalid_feedback")
            raise _field_error(exc) from None
        if result.created and state.publisher is not None:
            state.publisher.publish(
                result.prediction_id, {"feedback": body.model_dump(mode="json"), "result": _result_json(result)}
            )
        if result.created:
            state.metrics.feedback.labels(body.action, result.status).inc()
        return JSONResponse(_result_json(result), status_code=201 if result.created else 200)

    mount_review(
        app,
        state.review,
        lambda: state.runtime.taxonomy if state.runtime is not None else None,
        secret_key=session_secret or _session_secret(),
        # Beyond loopback the review app is reached over TLS (a load balancer or ingress):
        # session cookies are then Secure, never sent in clear.
        cookie_secure=not is_loopback(serve.host),
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "not ready: loading, or the last load error"}})
    async def readyz() -> JSONResponse:
        """Readiness: the model and the taxonomy are loaded."""
        body: dict[str, Any] = {
            "ready": state.ready,
            "cache": state.cache.backend,
            "cache_healthy": state.cache.healthy(),
        }
        if state.runtime is not None:
            meta = state.runtime.metadata
            body |= {"model": meta.name, "model_version": meta.model_version, "taxonomy_version": meta.taxonomy_version}
        else:
            body |= {"load_attempts": state.load_attempts, "load_error": state.load_error}
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(state.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


async def _load_forever(state: ServiceState, loader: Callable[[], Runtime]) -> None:
    while state.runtime is None:
        state.load_attempts += 1
        try:
            runtime = await asyncio.to_thread(loader)
            policy, opinion = await asyncio.to_thread(_feedback_judges, state, runtime)
        except Exception as exc:  # noqa: BLE001 - shown by /readyz and retried
            state.load_error = f"{type(exc).__name__}: {exc}"[:2000]
            wait = _LOAD_RETRY_S[min(state.load_attempts - 1, len(_LOAD_RETRY_S) - 1)]
            log.warning("loading the model failed (attempt %d, retrying in %.0f s): %s", state.load_attempts, wait, exc)
            await asyncio.sleep(wait)
            continue
        predictor = Predictor(
            runtime,
            state.cache,
            state.latest,
            state.metrics,
            max_wait_s=state.serve.batch_wait_ms / 1000,
            max_queue=state.serve.max_queue,
            workers=state.serve.batch_workers,
        )
        await predictor.start()
        state.policy, state.opinion = policy, opinion
        state.runtime, state.predictor, state.load_error = runtime, predictor, None
        state.metrics.ready.set(1)
        meta = runtime.metadata
        log.info("ready: model %s %s, taxonomy %s", meta.name, meta.model_version, meta.taxonomy_version)


def _keep_rating_samples(state: ServiceState, predictions: list[Prediction], products: list[ProductInput]) -> None:
    """Keep a share of what was served for blind rating (annotators rate recent predictions,
    not only those merchants reacted to). Chosen by prediction id, so a replica or a replay
    picks the same ones; written on a thread after the answer, never delaying it."""
    rate = state.serve.rating_sample_rate
    if rate <= 0 or state.review is None:
        return
    by_id = {p.product_id: p.product for p in products}
    for prediction in predictions:
        if int(hashlib.sha256(prediction.prediction_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF >= rate:
            continue
        product = by_id.get(prediction.product_id)
        record = ServedRecord(
            prediction.model_dump(mode="json"),
            product.model_dump(mode="json") if product is not None else {},
            prediction.predicted_at,
        )
        task = asyncio.get_running_loop().run_in_executor(None, _record_served, state.review, record)
        state.background.add(task)
        task.add_done_callback(state.background.discard)


def _record_served(store: ReviewStore, record: ServedRecord) -> None:
    try:
        store.record_served(record)
    except Exception:  # noqa: BLE001 - a rating sample is optional; the answer was already given
        log.warning("could not keep a rating sample", exc_info=True)


def _feedback_judges(state: ServiceState, runtime: Runtime) -> tuple[VettingPolicy, SecondOpinion]:
    """The vetting policy (checked against the loaded taxonomy) and the second opinion on
    corrections: the CPU baseline when another model serves (a second model), else the
    served prediction's own candidates (the same model again would add nothing)."""
    policy = VettingPolicy.load(state.serve.review_policy, taxonomy=runtime.taxonomy)
    choice = state.serve.second_opinion
    if choice == "auto":
        in_process_baseline = runtime.metadata.name == "product_baseline" and not state.predict.triton_url
        choice = "served" if in_process_baseline else "baseline"
    if choice == "served":
        return policy, CandidatesOpinion(runtime.taxonomy)
    from model_repository.product_baseline.engine import BaselineModel

    return policy, BaselineOpinion(BaselineModel(runtime.taxonomy))


def _session_secret() -> str:
    secret = os.environ.get(SESSION_SECRET_ENV, "")
    if secret:
        return secret
    log.warning(
        "%s is not set: review-app sessions are signed with a random key, so they end when this process does "
        "and are not shared between replicas",
        SESSION_SECRET_ENV,
    )
    return secrets.token_urlsafe(32)


def _result_json(result: FeedbackResult) -> dict[str, Any]:
    return dataclasses.asdict(result) | {"reasons": list(result.reasons)}


def _field_error(exc: FeedbackError) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *exc.field.split(".")], "msg": exc.message, "type": "feedback"}])


def _count(state: ServiceState, kind: str, n: int = 1) -> None:
    state.metrics.errors.labels(kind).inc(n)


def _unavailable(state: ServiceState, kind: str, message: str) -> HTTPException:
    _count(state, kind)
    return HTTPException(
        503, {"reason": kind, "message": message}, headers={"Retry-After": str(state.serve.retry_after_s)}
    )


class _Timing:
    """Request latency by route template and status (pure ASGI: Starlette's
    BaseHTTPMiddleware costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.request_seconds.labels(route, str(status)).observe(time.perf_counter() - start)


class _TooLarge(HTTPException):
    """Raised from inside the body read: FastAPI re-raises an HTTPException from there (any
    other exception would become a 400 "error parsing the body")."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class _BodyLimit:
    """413 for a body over `max_bytes`: by Content-Length before reading anything, or while
    reading a chunked body, so an oversized request never sits in memory whole."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_refusal: Callable[[], None]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    self.on_refusal()
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, counted=True)

    async def _refuse(self, send: Send, counted: bool = False) -> None:
        if not counted:
            self.on_refusal()
        body = b'{"detail":"request body too large"}'
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
