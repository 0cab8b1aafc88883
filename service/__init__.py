"""The real-time service: `productlens serve`, an HTTP API for the merchant admin.

A top-level package of its own (docs/ARCHITECTURE.md): it is an entry point like
`pipelines/`, but a long-running server with its own concerns (HTTP, authentication, a
shared cache, micro-batching, a latency budget), and it must not import Beam. The
per-product work is the product core's (`transforms.core`), so the same content, model and
taxonomy version give the same prediction and `prediction_id` here and in a backfill.

| module | owns |
|---|---|
| `app` | the FastAPI application: routes, status codes, request limits, lifespan |
| `schemas` | request and response bodies (the product is `transforms.records.Product`) |
| `predictor` | one request's products -> cache lookups, in-flight coalescing, the batcher, cache writes |
| `batcher` | micro-batching: concurrent requests share one model batch; deadlines; overload |
| `runtime` | loading the taxonomy and the model (in the background; `/readyz` says when) |
| `cache` | the prediction cache: in-process LRU, Redis shared by replicas, or none |
| `auth` | API keys / bearer tokens; required whenever the server binds beyond loopback |
| `metrics` | the Prometheus metrics of `/metrics` |
| `publish` | merchant feedback to Kafka (`--feedback-kafka`) |
| `review/` | feedback validation and routing, the vetting policy, the review store, the review web app |
"""
