"""service/cache.py's RedisCache against a real redis-server: round trips, TTLs, replicas
sharing entries, namespaces, and degrading through an outage and back; and
deploy/local/redis/redis.sh. Skips with the reason when redis-server is not installed."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cache import RedisCache, make_cache, prediction_key
from tests.integration.redis_server import REDIS_SH, RedisServer, ping, require_redis_server
from tests.integration.triton_server import free_ports

pytestmark = pytest.mark.integration

# Generous client timeouts: these tests check behaviour, not latency, on a shared CI machine.
TIMEOUT_S = 2.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as srv:
        yield srv


@pytest.fixture
def raw(server: RedisServer):
    import redis

    client = redis.Redis.from_url(server.url, socket_timeout=TIMEOUT_S)
    yield client
    client.close()


def new_cache(server: RedisServer, namespace: str = "test", **kw) -> RedisCache:
    kw.setdefault("timeout_s", TIMEOUT_S)
    return RedisCache(server.url, namespace=namespace, **kw)


def test_round_trip_and_key_prefix(server, raw):
    cache = new_cache(server)
    key = prediction_key("a" * 64, "baseline-3", "2024-07")
    cache.put_many({key: b'{"category": "aa-1"}', "other": b"\x00\xffbinary"})
    assert cache.get_many([key, "other"]) == [b'{"category": "aa-1"}', b"\x00\xffbinary"]
    assert raw.get(f"productlens:test:{key}") == b'{"category": "aa-1"}'
    assert raw.ttl(f"productlens:test:{key}") == -1  # no ttl_s: no expiry
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["puts"], stats["errors"]) == (2, 0, 2, 0)
    assert cache.healthy()
    cache.close()


def test_mget_keeps_order_with_missing_keys(server):
    cache = new_cache(server)
    cache.put_many({"k1": b"v1", "k3": b"v3"})
    assert cache.get_many(["k3", "nope", "k1", "k3", "also-nope"]) == [b"v3", None, b"v1", b"v3", None]
    assert cache.get_many([]) == []
    assert cache.stats()["hits"] == 3 and cache.stats()["misses"] == 2
    cache.close()


def test_ttl_is_set_on_keys(server, raw):
    whole = new_cache(server, namespace="ex", ttl_s=60)
    whole.put_many({"k": b"v"})
    assert 0 < raw.ttl("productlens:ex:k") <= 60
    fraction = new_cache(server, namespace="px", ttl_s=1.5)
    fraction.put_many({"k": b"v"})
    assert 0 < raw.pttl("productlens:px:k") <= 1500
    whole.close()
    fraction.close()


def test_oversize_values_are_skipped(server, raw):
    cache = new_cache(server, max_value_bytes=8)
    cache.put_many({"small": b"12345678", "big": b"123456789"})
    assert raw.exists("productlens:test:small") == 1 and raw.exists("productlens:test:big") == 0
    assert cache.stats()["oversize"] == 1 and cache.stats()["puts"] == 1
    cache.close()


def test_two_replicas_share_entries(server):
    replica_a = make_cache(server.url, max_entries=10, ttl_s=300, namespace="prod")
    replica_b = make_cache(server.url, max_entries=10, ttl_s=300, namespace="prod")
    key = prediction_key("c" * 64, "m1", "t1")
    assert replica_b.get_many([key]) == [None]
    replica_a.put_many({key: b"answer"})
    assert replica_b.get_many([key]) == [b"answer"]
    replica_a.close()
    replica_b.close()


def test_namespaces_isolate(server, raw):
    staging = new_cache(server, namespace="staging")
    prod = new_cache(server, namespace="prod")
    staging.put_many({"k": b"staging"})
    assert prod.get_many(["k"]) == [None]
    prod.put_many({"k": b"prod"})
    assert staging.get_many(["k"]) == [b"staging"] and prod.get_many(["k"]) == [b"prod"]
    assert sorted(raw.keys("productlens:*")) == [b"productlens:prod:k", b"productlens:staging:k"]
    staging.close()
    prod.close()


def test_outage_degrades_then_recovers(server, monkeypatch, caplog):
    retry_after_s = 0.3
    cache = new_cache(server, retry_after_s=retry_after_s)
    cache.put_many({"k": b"v"})
    assert cache.get_many(["k"]) == [b"v"]

    server.stop()
    with caplog.at_level(logging.WARNING, logger="service.cache"):
        # the first call after the outage fails on the network: a miss, counted, never raised
        assert cache.get_many(["k", "x"]) == [None, None]
        assert not cache.healthy()
        errors = cache.stats()["errors"]
        assert errors == 1

        # open circuit: no network at all (the pool hands out no connection)
        pool = cache._client.connection_pool
        calls_before = cache.stats()["backend_calls"]

        def no_network(*a, **kw):
            raise AssertionError("the open circuit must not touch the network")

        monkeypatch.setattr(pool, "get_connection", no_network)
        cache.put_many({"k2": b"v2"})
        assert cache.get_many(["k"]) == [None]
        assert cache.stats()["backend_calls"] == calls_before
        assert cache.stats()["short_circuited"] >= 2
        assert cache.stats()["errors"] == errors
        monkeypatch.undo()

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]

    server.start()  # same port, empty (no persistence)
    assert ping(server.port)
    deadline = time.monotonic() + 30
    while not cache.healthy() and time.monotonic() < deadline:
        cache.get_many(["probe"])  # short-circuits until retry_after_s has passed, then probes
        time.sleep(retry_after_s / 3)
    assert cache.healthy(), cache.stats()
    cache.put_many({"k": b"again"})
    assert cache.get_many(["k"]) == [b"again"]
    assert cache.stats()["outages"] == 1
    cache.close()


def test_outage_put_many_never_raises(server):
    cache = new_cache(server, retry_after_s=60)
    server.stop()
    cache.put_many({"k": b"v"})  # fails on the network: counted, circuit opens
    assert not cache.healthy() and cache.stats()["errors"] == 1 and cache.stats()["puts"] == 0
    cache.put_many({"k": b"v"})  # open circuit: skipped
    assert cache.stats()["errors"] == 1 and cache.stats()["short_circuited"] == 1
    cache.close()


def test_redis_sh_starts_and_stops_a_server(tmp_path):
    require_redis_server()
    (port,) = free_ports(1)
    data = tmp_path / "redis-sh"

    def sh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(REDIS_SH), *args], capture_output=True, text=True, timeout=60)

    started = sh("start", str(port), str(data))
    try:
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1]
        assert url == f"redis://127.0.0.1:{port}/0"
        assert ping(port)
        pid = int((data / "redis.pid").read_text().strip())
        assert sh("status", str(data)).returncode == 0

        again = sh("start", str(port), str(data))  # idempotent: the running server's URL
        assert again.returncode == 0 and again.stdout.strip() == url

        cache = make_cache(url, max_entries=1, ttl_s=None, namespace="sh")
        cache.put_many({"k": b"v"})
        assert cache.get_many(["k"]) == [b"v"]
        cache.close()

        import redis

        client = redis.Redis.from_url(url)
        assert client.config_get("save") == {"save": ""} and client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
    finally:
        stopped = sh("stop", str(data))
    assert stopped.returncode == 0, stopped.stderr
    assert not ping(port)
    assert not Path(f"/proc/{pid}").exists() or "redis" not in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
    assert sh("status", str(data)).returncode == 1
    assert sh("stop", str(data)).returncode == 0  # stopping a stopped server is fine
