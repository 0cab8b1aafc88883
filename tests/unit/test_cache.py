"""service/cache.py without a server: the in-process LRU, NoCache, keys, URL parsing, and
the Redis circuit against an address nothing listens on."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from service.cache import (
    Cache,
    MemoryCache,
    NoCache,
    RedisCache,
    make_cache,
    prediction_key,
    redact_url,
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- prediction_key ------------------------------------------------------------------------------


def test_prediction_key_is_deterministic_and_distinct_per_part():
    base = prediction_key("c1", "m1", "t1")
    assert base == prediction_key("c1", "m1", "t1")
    variants = {
        prediction_key("c2", "m1", "t1"),
        prediction_key("c1", "m2", "t1"),
        prediction_key("c1", "m1", "t2"),
    }
    assert base not in variants and len(variants) == 3


def test_prediction_key_parts_cannot_be_swapped_or_shifted():
    assert prediction_key("a", "b", "c") != prediction_key("b", "a", "c")
    assert prediction_key("a", "b", "c") != prediction_key("a", "c", "b")
    # a separator inside one part never makes the key of another split
    assert prediction_key("x", "m:1", "t") != prediction_key("x", "m", "1:t")
    assert prediction_key("c", "m%3A1", "t") != prediction_key("c", "m:1", "t")


@pytest.mark.parametrize("parts", [("", "m", "t"), ("c", "", "t"), ("c", "m", ""), ("c", None, "t")])
def test_prediction_key_refuses_empty_parts(parts):
    with pytest.raises(ValueError, match="non-empty"):
        prediction_key(*parts)


# -- MemoryCache ---------------------------------------------------------------------------------


def test_memory_round_trip_order_and_stats():
    cache = MemoryCache(10)
    assert cache.backend == "memory" and isinstance(cache, Cache)
    cache.put_many({"a": b"1", "b": b"2"})
    assert cache.get_many(["b", "missing", "a"]) == [b"2", None, b"1"]
    assert cache.get_many([]) == []
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["puts"], stats["errors"]) == (2, 1, 2, 0)
    assert cache.healthy()


def test_memory_lru_evicts_least_recently_used():
    cache = MemoryCache(2)
    cache.put_many({"a": b"1", "b": b"2"})
    assert cache.get_many(["a"]) == [b"1"]  # a is now the most recently used
    cache.put_many({"c": b"3"})
    assert cache.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    assert cache.stats()["evictions"] == 1
    assert len(cache) == 2


def test_memory_ttl_expires_entries():
    clock = FakeClock()
    cache = MemoryCache(10, ttl_s=30, timer=clock)
    cache.put_many({"a": b"1"})
    clock.now += 29
    assert cache.get_many(["a"]) == [b"1"]
    clock.now += 2
    assert cache.get_many(["a"]) == [None]
    assert cache.stats()["evictions"] == 0  # expiry is not an eviction


def test_memory_ttl_with_real_clock():
    import time

    cache = MemoryCache(10, ttl_s=0.05)
    cache.put_many({"a": b"1"})
    time.sleep(0.2)
    assert cache.get_many(["a"]) == [None]


def test_memory_skips_oversize_and_non_bytes_values():
    cache = MemoryCache(10, max_value_bytes=4)
    cache.put_many({"ok": b"1234", "big": b"12345", "str": "text"})  # type: ignore[dict-item]
    assert cache.get_many(["ok", "big", "str"]) == [b"1234", None, None]
    stats = cache.stats()
    assert stats["oversize"] == 1 and stats["errors"] == 1 and stats["puts"] == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_memory_validates_max_entries(bad):
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(bad)


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf")])
def test_memory_validates_ttl(bad):
    with pytest.raises(ValueError, match="ttl_s"):
        MemoryCache(10, ttl_s=bad)


def test_memory_thread_safety_smoke():
    cache = MemoryCache(64)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(2000):
                key = f"k{(n * 7 + i) % 200}"
                cache.put_many({key: key.encode()})
                (value,) = cache.get_many([key, f"k{i % 200}"])[:1]
                assert value is None or value == key.encode()
        except BaseException as e:  # noqa: BLE001 - collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) <= 64
    stats = cache.stats()
    assert stats["hits"] + stats["misses"] == 8 * 2000 * 2
    assert stats["puts"] == 8 * 2000


# -- NoCache -------------------------------------------------------------------------------------


def test_no_cache_always_misses():
    cache = NoCache()
    assert cache.backend == "none" and isinstance(cache, Cache)
    cache.put_many({"a": b"1"})
    assert cache.get_many(["a", "b"]) == [None, None]
    assert cache.stats()["misses"] == 2 and cache.stats()["hits"] == 0
    assert cache.healthy()
    cache.close()


# -- make_cache ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, "", "memory", " MEMORY "])
def test_make_cache_memory(url):
    cache = make_cache(url, max_entries=5, ttl_s=None, namespace="test")
    assert isinstance(cache, MemoryCache) and cache.max_entries == 5


def test_make_cache_memory_validates():
    with pytest.raises(ValueError, match="max_entries"):
        make_cache("memory", max_entries=0, ttl_s=None, namespace="test")


def test_make_cache_none():
    assert isinstance(make_cache("none", max_entries=5, ttl_s=None, namespace="test"), NoCache)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://cache.internal:6380/1", "unix:///run/redis/redis.sock"]
)
def test_make_cache_redis_schemes(url):
    cache = make_cache(url, max_entries=5, ttl_s=60, namespace="prod")
    try:
        assert isinstance(cache, RedisCache) and cache.backend == "redis"
        assert cache.prefix == "productlens:prod:" and cache.ttl_s == 60
        assert cache.healthy()  # nothing tried yet: no connection is made at construction
    finally:
        cache.close()


@pytest.mark.parametrize("url", ["memcached://localhost:11211", "localhost:6379", "redis", "http://x"])
def test_make_cache_rejects_unknown_urls(url):
    with pytest.raises(ValueError, match="unknown cache URL.*memory.*none.*redis://"):
        make_cache(url, max_entries=5, ttl_s=None, namespace="test")


def test_make_cache_error_does_not_leak_password():
    with pytest.raises(ValueError) as info:
        make_cache("memcached://user:s3cret@host:1/", max_entries=5, ttl_s=None, namespace="test")
    assert "s3cret" not in str(info.value)


def test_make_cache_redis_bad_port_is_a_clear_error():
    with pytest.raises(ValueError, match="invalid redis cache URL"):
        make_cache("redis://:pw@localhost:notaport/0", max_entries=5, ttl_s=None, namespace="test")


def test_redact_url():
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("rediss://user:pw@h:1/0") == "rediss://user:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


@pytest.mark.parametrize("namespace", ["", "a b", "tab\t"])
def test_redis_validates_namespace(namespace):
    with pytest.raises(ValueError, match="namespace"):
        RedisCache("redis://127.0.0.1:1/0", namespace=namespace)


# -- RedisCache circuit, with nothing listening ---------------------------------------------------


def test_redis_unreachable_degrades_and_short_circuits(caplog):
    port = closed_port()  # nothing listens: connection refused at once
    clock = FakeClock()
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", ttl_s=10, namespace="t", retry_after_s=5, clock=clock)
    with caplog.at_level(logging.WARNING, logger="service.cache"):
        assert cache.get_many(["a", "b"]) == [None, None]
        assert not cache.healthy()
        cache.put_many({"a": b"1"})  # open circuit: skipped without the network
        assert cache.get_many(["a"]) == [None]
        clock.now += 5  # window over: the next call probes again, fails, and does not warn again
        assert cache.get_many(["a"]) == [None]
        assert cache.get_many(["a"]) == [None]
    stats = cache.stats()
    assert stats["errors"] == 2 and stats["backend_calls"] == 2
    assert stats["short_circuited"] == 3 and stats["misses"] == 5 and stats["outages"] == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "serving without a cache" in warnings[0].getMessage()
    cache.close()
    assert cache.get_many(["a"]) == [None]
