"""Readiness probe and idempotent topic setup for the local broker (used by kafka.sh).

Uses confluent-kafka's AdminClient from the project venv; kafka.sh falls back to the Java
TopicCommand when confluent-kafka is not importable.

    admin.py wait     BOOTSTRAP TIMEOUT_S
    admin.py ensure   BOOTSTRAP SPEC...      SPEC = name:partitions[:key=value,key=value]
    admin.py describe BOOTSTRAP

Exit codes: 0 ok, 1 failure (message on stderr), 3 confluent-kafka missing.
"""

from __future__ import annotations

import sys
import time

try:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ConfigSource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )
except ImportError:  # kafka.sh checks this exit code and uses the Java tools instead
    print("confluent-kafka is not importable", file=sys.stderr)
    sys.exit(3)


def log(msg: str) -> None:
    print(f"[kafka] {msg}", file=sys.stderr, flush=True)


def admin(bootstrap: str) -> AdminClient:
    # librdkafka logs every refused connection while the broker boots; keep stderr for
    # our own messages.
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.timeout.ms": 3000})


def wait(bootstrap: str, timeout_s: float) -> int:
    """Ready = the broker has registered with the controller and serves metadata."""
    deadline = time.monotonic() + timeout_s
    client = admin(bootstrap)
    last: Exception | str = "no answer"
    while time.monotonic() < deadline:
        try:
            md = client.list_topics(timeout=min(3.0, max(0.5, deadline - time.monotonic())))
            if md.brokers:
                return 0
            last = "metadata has no brokers yet"
        except KafkaException as exc:
            last = exc
        time.sleep(0.3)
    print(f"broker at {bootstrap} not ready after {timeout_s:.0f}s: {last}", file=sys.stderr)
    return 1


def parse_spec(spec: str) -> tuple[str, int, dict[str, str]]:
    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1].isdigit() or int(parts[1]) < 1:
        raise SystemExit(f"bad topic spec {spec!r}: want name:partitions[:key=value,...]")
    configs: dict[str, str] = {}
    if len(parts) == 3 and parts[2]:
        for kv in parts[2].split(","):
            key, sep, value = kv.partition("=")
            if not sep or not key:
                raise SystemExit(f"bad topic config {kv!r} in {spec!r}: want key=value")
            configs[key] = value
    return parts[0], int(parts[1]), configs


def ensure(bootstrap: str, specs: list[str]) -> int:
    """Create missing topics; on existing ones, raise partitions and set configs to match.

    Never shrinks (Kafka cannot) and never deletes: a mismatch it cannot fix is a warning.
    """
    client = admin(bootstrap)
    wanted = [parse_spec(s) for s in specs]
    existing = client.list_topics(timeout=10).topics
    failed = 0

    to_create = [
        NewTopic(name, num_partitions=n, replication_factor=1, config=cfg)
        for name, n, cfg in wanted
        if name not in existing
    ]
    for name, fut in (client.create_topics(to_create, operation_timeout=30) if to_create else {}).items():
        try:
            fut.result()
            log(f"created topic {name}")
        except KafkaException as exc:
            if exc.args[0].name() == "TOPIC_ALREADY_EXISTS":  # lost a race: fine
                continue
            print(f"creating {name} failed: {exc}", file=sys.stderr)
            failed += 1

    for name, n, cfg in wanted:
        if name not in existing:
            continue
        have = len(existing[name].partitions)
        if have < n:
            client.create_partitions([NewPartitions(name, n)])[name].result()
            log(f"topic {name}: partitions {have} -> {n}")
        elif have > n:
            log(
                f"WARNING topic {name} has {have} partitions, wanted {n} (Kafka cannot shrink; `down --wipe` to recreate)"
            )
        if cfg:
            res = ConfigResource(ResourceType.TOPIC, name)
            current = client.describe_configs([res])[res].result()
            diff = {k: v for k, v in cfg.items() if k not in current or current[k].value != v}
            if diff:
                alter = ConfigResource(
                    ResourceType.TOPIC,
                    name,
                    incremental_configs=[
                        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in diff.items()
                    ],
                )
                client.incremental_alter_configs([alter])[alter].result()
                log(f"topic {name}: set {diff}")
        log(f"topic {name} exists")
    return 1 if failed else 0


def describe(bootstrap: str) -> int:
    client = admin(bootstrap)
    topics = {n: t for n, t in client.list_topics(timeout=10).topics.items() if not n.startswith("__")}
    if not topics:
        print("(no topics)")
        return 0
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in sorted(topics)]
    configs = client.describe_configs(resources)
    for res in resources:
        entries = configs[res].result()
        # Only what was set on the topic, not the broker-wide defaults.
        overrides = {
            k: e.value
            for k, e in sorted(entries.items())
            if getattr(e.source, "value", e.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
        }
        print(f"{res.name}\tpartitions={len(topics[res.name].partitions)}\t{overrides or ''}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, bootstrap, rest = argv[0], argv[1], argv[2:]
    if cmd == "wait":
        return wait(bootstrap, float(rest[0]) if rest else 60.0)
    if cmd == "ensure":
        return ensure(bootstrap, rest)
    if cmd == "describe":
        return describe(bootstrap)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
