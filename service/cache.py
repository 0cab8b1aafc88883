"""The prediction cache of the real-time service (`productlens serve`).

What is cached: the encoded prediction of one product content (opaque bytes, whatever
the service serialises), under a key made of the content hash, the model version and the
taxonomy version. DESIGN.md: the same content, model and taxonomy version give the same
answer on every path, so those three parts, and nothing else, name an answer. Price,
inventory or the product id are not in the key (they are not in `content_hash`): two
products with identical content share one entry, and a new model or taxonomy version
misses on its own, with no flush needed. Keys carry a schema tag (`pred:v1`) so a change
of the value encoding can be rolled out by bumping it, and their parts are
percent-quoted, so `a:b` + `c` and `a` + `b:c` never collide, and an operator can still
read (and `SCAN MATCH`) them by model version.

Backends (`make_cache`):
- `memory` (default, laptop and tests): an in-process LRU with an optional TTL.
- `redis://`, `rediss://`, `unix://` (production): several replicas of the service (a
  GKE Deployment behind an HPA) share one Redis, so an answer computed by one replica is
  a hit on every other one and a new replica starts warm. Keys are prefixed
  `productlens:{namespace}:` so environments or experiments sharing a Redis never read
  each other's entries.
- `none`: always misses (benchmarks, debugging).

Why degrade instead of fail: the cache only saves model calls; the model remains the
source of truth. A Redis outage must therefore cost latency and model capacity, never
errors or hung requests. The Redis client uses short connect/read timeouts and no
client-side retries; on any error the cache counts it, logs one warning per outage and
opens a circuit for `retry_after_s`, during which every call is a miss (or a skipped
write) that does not touch the network. The first call after that window probes Redis
again (only one caller probes; the others keep short-circuiting); success closes the
circuit, failure opens it for another window. `healthy()` reports the circuit, for the
service's readiness/metrics, and `stats()` the cumulative counters.

No method of a cache raises to its caller except the constructors and `make_cache`,
which validate their configuration.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import quote, urlsplit, urlunsplit

import cachetools

log = logging.getLogger(__name__)

KEY_SCHEMA = "pred:v1"
DEFAULT_MAX_VALUE_BYTES = 1 << 20  # 1 MiB: a prediction is a few KB; anything bigger is a bug
REDIS_SCHEMES = ("redis", "rediss", "unix")


@runtime_checkable
class Cache(Protocol):
    backend: str  # "memory" | "redis" | "none"

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value of each key, in order; None for a miss. Never raises."""
        ...

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Store every item (best effort). Never raises."""
        ...

    def healthy(self) -> bool:
        """False while the backend is known to be down."""
        ...

    def stats(self) -> dict[str, int]:
        """Cumulative counters: hits, misses, errors, puts, and evictions where known."""
        ...

    def close(self) -> None: ...


def prediction_key(content_hash: str, model_version: str, taxonomy_version: str) -> str:
    """The cache key of a content's prediction: `pred:v1:<model>:<taxonomy>:<content>`,
    each part percent-quoted (no ':' inside a part, so the key is unambiguous).

    An empty part is refused: a key without a model or taxonomy version would serve one
    version's answers to another."""
    parts = {"content_hash": content_hash, "model_version": model_version, "taxonomy_version": taxonomy_version}
    for name, value in parts.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"prediction_key: {name} must be a non-empty string, got {value!r}")
    return ":".join(
        (KEY_SCHEMA, quote(model_version, safe=""), quote(taxonomy_version, safe=""), quote(content_hash, safe=""))
    )


def _accept(items: Mapping[str, bytes], max_value_bytes: int) -> tuple[list[tuple[str, bytes]], int, int]:
    """(storable (key, value) pairs, count of values over max_value_bytes, count of non-bytes values or keys)."""
    accepted: list[tuple[str, bytes]] = []
    oversize = invalid = 0
    for key, value in items.items():
        if not isinstance(key, str) or not isinstance(value, bytes | bytearray | memoryview):
            invalid += 1
        elif len(value) > max_value_bytes:
            oversize += 1
        else:
            accepted.append((key, bytes(value)))
    return accepted, oversize, invalid


def _check_ttl(ttl_s: float | None) -> float | None:
    if ttl_s is None:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"cache ttl_s must be a number of seconds > 0, or None for no expiry; got {ttl_s!r}")
    return float(ttl_s)


def _check_max_value_bytes(max_value_bytes: int) -> int:
    if isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int) or max_value_bytes < 1:
        raise ValueError(f"cache max_value_bytes must be an integer >= 1, got {max_value_bytes!r}")
    return max_value_bytes


class _Counters:
    """Thread-safe cumulative counters."""

    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def add(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._values[name] = self._values.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


# ---------------------------------------------------------------------------------------------
# in-process


class _CountingLRU(cachetools.LRUCache):
    def __init__(self, maxsize: int, on_evict: Callable[[], None]) -> None:
        super().__init__(maxsize)
        self._on_evict = on_evict

    def popitem(self):  # called by cachetools only to make room
        item = super().popitem()
        self._on_evict()
        return item


class _CountingTTL(cachetools.TTLCache):
    def __init__(self, maxsize: int, ttl: float, timer: Callable[[], float], on_evict: Callable[[], None]) -> None:
        super().__init__(maxsize, ttl, timer=timer)
        self._on_evict = on_evict

    def popitem(self):  # expired items are dropped by expire(), not here: this is a real eviction
        item = super().popitem()
        self._on_evict()
        return item


class MemoryCache:
    """A thread-safe in-process LRU with an optional TTL (one replica only)."""

    backend = "memory"

    def __init__(
        self,
        max_entries: int,
        ttl_s: float | None = None,
        *,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"cache max_entries must be an integer >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self.ttl_s = _check_ttl(ttl_s)
        self.max_value_bytes = _check_max_value_bytes(max_value_bytes)
        self._counters = _Counters("hits", "misses", "errors", "puts", "evictions", "oversize")
        self._lock = threading.Lock()

        def on_evict() -> None:
            self._counters.add("evictions")

        self._data: cachetools.Cache
        if self.ttl_s is None:
            self._data = _CountingLRU(max_entries, on_evict)
        else:
            self._data = _CountingTTL(max_entries, self.ttl_s, timer, on_evict)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        try:
            with self._lock:
                out = [self._data.get(k) for k in keys]
        except Exception:  # never raises: an unexpected key type is a miss
            log.exception("memory cache get failed")
            self._counters.add("errors")
            return [None] * len(keys)
        hits = sum(v is not None for v in out)
        self._counters.add("hits", hits)
        self._counters.add("misses", len(out) - hits)
        return out

    def put_many(self, items: Mapping[str, bytes]) -> None:
        try:
            accepted, oversize, invalid = _accept(items, self.max_value_bytes)
            self._counters.add("oversize", oversize)
            self._counters.add("errors", invalid)
            with self._lock:
                for key, value in accepted:
                    self._data[key] = value
            self._counters.add("puts", len(accepted))
        except Exception:
            log.exception("memory cache put failed")
            self._counters.add("errors")

    def healthy(self) -> bool:
        return True

    def stats(self) -> dict[str, int]:
        out = self._counters.snapshot()
        with self._lock:
            out["entries"] = len(self._data)
        return out

    def close(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


# ---------------------------------------------------------------------------------------------
# none


class NoCache:
    """Always misses; stores nothing."""

    backend = "none"

    def __init__(self) -> None:
        self._counters = _Counters("hits", "misses", "errors", "puts")

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._counters.add("misses", len(keys))
        return [None] * len(keys)

    def put_many(self, items: Mapping[str, bytes]) -> None:
        return None

    def healthy(self) -> bool:
        return True

    def stats(self) -> dict[str, int]:
        return self._counters.snapshot()

    def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# redis


def redact_url(url: str) -> str:
    """The URL with its password replaced by `***` (for logs and error messages)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))
    except ValueError:
        return "<unparseable url>"


class RedisCache:
    """A cache shared by the service's replicas in one Redis; degrades to no cache while
    Redis is unreachable (see the module docstring)."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: float | None = None,
        namespace: str = "default",
        timeout_s: float = 0.05,
        retry_after_s: float = 5.0,
        *,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if (
            not isinstance(namespace, str)
            or not namespace
            or any(c.isspace() or not c.isprintable() for c in namespace)
        ):
            raise ValueError(
                f"redis cache namespace must be a non-empty printable string without spaces, got {namespace!r}"
            )
        for name, value in (("timeout_s", timeout_s), ("retry_after_s", retry_after_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"redis cache {name} must be a number of seconds > 0, got {value!r}")
        self.url = url
        self.ttl_s = _check_ttl(ttl_s)
        self.namespace = namespace
        self.prefix = f"productlens:{namespace}:"
        self.timeout_s = float(timeout_s)
        self.retry_after_s = float(retry_after_s)
        self.max_value_bytes = _check_max_value_bytes(max_value_bytes)
        self._clock = clock
        try:
            # from_url only parses: no connection is made until the first command.
            self._client = redis.Redis.from_url(
                url,
                socket_connect_timeout=self.timeout_s,
                socket_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0),  # no client-side retries: the circuit decides when to try again
                retry_on_timeout=False,
                health_check_interval=0,
            )
        except ValueError as e:
            raise ValueError(f"invalid redis cache URL {redact_url(url)!r}: {e}") from e
        self._counters = _Counters(
            "hits", "misses", "errors", "puts", "oversize", "short_circuited", "backend_calls", "outages"
        )
        self._state = threading.Lock()
        self._open_until: float | None = None  # None: circuit closed (healthy)
        self._failures_in_outage = 0
        self._closed = False

    # -- circuit ------------------------------------------------------------------------------

    def _allow(self) -> bool:
        """Whether this call may use the network; claims the probe when the window is over."""
        with self._state:
            if self._closed:
                return False
            if self._open_until is None:
                return True
            now = self._clock()
            if now >= self._open_until:
                # Half-open: this caller probes; the others short-circuit for another window.
                self._open_until = now + self.retry_after_s
                return True
            return False

    def _succeeded(self) -> None:
        with self._state:
            if self._open_until is None:
                return
            failures = self._failures_in_outage
            self._open_until = None
            self._failures_in_outage = 0
        log.warning("redis cache %s is reachable again (after %d failed attempts)", redact_url(self.url), failures)

    def _failed(self, op: str, exc: BaseException) -> None:
        self._counters.add("errors")
        with self._state:
            first = self._open_until is None
            self._open_until = self._clock() + self.retry_after_s
            self._failures_in_outage += 1
        try:  # drop pooled sockets: after an outage they are dead
            self._client.connection_pool.disconnect(inuse_connections=False)
        except Exception:  # pragma: no cover - best effort
            pass
        if first:
            self._counters.add("outages")
            log.warning(
                "redis cache %s failed on %s (%s: %s); serving without a cache, retrying every %.1fs",
                redact_url(self.url),
                op,
                type(exc).__name__,
                exc,
                self.retry_after_s,
            )
        else:
            log.debug("redis cache still down on %s: %s: %s", op, type(exc).__name__, exc)

    # -- API ----------------------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        n = len(keys)
        if n == 0:
            return []
        if not self._allow():
            self._counters.add("short_circuited")
            self._counters.add("misses", n)
            return [None] * n
        try:
            self._counters.add("backend_calls")
            values = self._client.mget([self.prefix + k for k in keys])
            if len(values) != n:
                raise RuntimeError(f"MGET returned {len(values)} values for {n} keys")
        except Exception as e:
            self._failed("MGET", e)
            self._counters.add("misses", n)
            return [None] * n
        self._succeeded()
        out: list[bytes | None] = [v if isinstance(v, bytes) or v is None else bytes(v) for v in values]
        hits = sum(v is not None for v in out)
        self._counters.add("hits", hits)
        self._counters.add("misses", n - hits)
        return out

    def put_many(self, items: Mapping[str, bytes]) -> None:
        try:
            accepted, oversize, invalid = _accept(items, self.max_value_bytes)
            self._counters.add("oversize", oversize)
            self._counters.add("errors", invalid)
        except Exception as e:  # a broken mapping: count it, never raise
            self._counters.add("errors")
            log.warning("redis cache put_many got unusable items: %s: %s", type(e).__name__, e)
            return
        if not accepted:
            return
        if not self._allow():
            self._counters.add("short_circuited")
            return
        ex = px = None
        if self.ttl_s is not None:
            if self.ttl_s.is_integer():
                ex = int(self.ttl_s)
            else:
                px = max(1, round(self.ttl_s * 1000))
        try:
            self._counters.add("backend_calls")
            pipe = self._client.pipeline(transaction=False)
            for key, value in accepted:
                pipe.set(self.prefix + key, value, ex=ex, px=px)
            pipe.execute()
        except Exception as e:
            self._failed("SET", e)
            return
        self._succeeded()
        self._counters.add("puts", len(accepted))

    def healthy(self) -> bool:
        with self._state:
            return self._open_until is None and not self._closed

    def stats(self) -> dict[str, int]:
        return self._counters.snapshot()

    def close(self) -> None:
        with self._state:
            self._closed = True
        try:
            self._client.close()
        except Exception:  # pragma: no cover - best effort
            pass


# ---------------------------------------------------------------------------------------------


def make_cache(url: str | None, *, max_entries: int, ttl_s: float | None, namespace: str) -> Cache:
    """The cache a URL names: None, "" or "memory" -> MemoryCache(max_entries, ttl_s);
    "none" -> NoCache; "redis://...", "rediss://...", "unix://..." -> RedisCache
    (max_entries is Redis's business there: its maxmemory and eviction policy)."""
    spec = (url or "").strip()
    if spec.lower() in ("", "memory"):
        return MemoryCache(max_entries, ttl_s)
    if spec.lower() == "none":
        return NoCache()
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in REDIS_SCHEMES:
        return RedisCache(spec, ttl_s=ttl_s, namespace=namespace)
    raise ValueError(
        f"unknown cache URL {redact_url(spec)!r}: use 'memory' (in-process LRU, the default), 'none' (no cache), "
        "or a Redis URL: redis://host:6379/0, rediss://host:6380/0 (TLS) or unix:///path/to/redis.sock"
    )


__all__ = [
    "Cache",
    "MemoryCache",
    "NoCache",
    "RedisCache",
    "make_cache",
    "prediction_key",
    "redact_url",
]
