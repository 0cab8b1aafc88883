"""Model calls saved by the refresh trigger and content dedupe on a synthetic event stream.

    .venv/bin/python benchmarks/refresh.py [--events 100000] [--products 20000] [--seed 7]
                                           [--quiet-period 30] [--dedupe-wait 5]
                                           [--json out/benchmarks/refresh.json]

The stream (deterministic for a seed): a catalog of ``--products`` products, each already
predicted (seeded state: 95% with the current model m2, 5% with the previous model m1; 10%
of the catalog copies another product's content). Events arrive over 6 hours of event
time (exponential gaps), drawn per slot with these weights:

| slot | weight | events |
|---|---|---|
| price / inventory update | 0.76 | 1 update, content unchanged |
| content edit | 0.08 | 1 update with a new title |
| burst of edits | 0.04 | 2-6 content edits 0-20 s apart (quiet period 30 s); 25% end by reverting to the content before the burst; price updates interleaved |
| new product | 0.05 | 1 create; 30% of them are syndicated: 2-4 products created with identical content within 2 s |
| delete | 0.03 | 1 delete (a deleted product gets no further events) |
| forced update | 0.02 | 1 update with force=true, content unchanged |
| repredict | 0.02 | 1 repredict event, content unchanged |

A product with a burst in progress is not picked for another slot until the burst ends,
so each product's events are in order.

What runs: the refresh trigger's pure state machine (``transforms.freshness.refresh.on_event`` /
``on_timer``), i.e. the code the stateful DoFn runs, with its event-time timers simulated
exactly: events in event-time order, the watermark at each event's time, every timer
whose deadline has passed fired (in deadline order) before the event. Then content dedupe
simulated like ``transforms.freshness.dedupe``'s streaming buffer: the first prediction of a
content hash arms a ``--dedupe-wait`` timer and every prediction of that hash emitted
before it fires shares one model call. (Not the Beam runner: 100k events through Prism
would measure the runner, not the logic.)

"Model calls" are product model paths (one classify + one extract request each). The
baseline predicts every non-delete event. Savings: skip unchanged = events decided
``skipped_unchanged``; debounce = predictions superseded within a burst (``debounced``);
dedupe = predictions served by another product's call.

The oracle (brute force, independent of the state machine): for every event that is
followed by a quiet period (no event of the same product within ``--quiet-period``, or
the end of the stream), the product's content after that event must have been predicted
with the current model (or be the seeded current prediction, with no delete in between)
at or before the end of that quiet period; and every forced / repredict event must be
followed by a prediction of its product unless the product is deleted first. Exit status
1 when the oracle finds a miss.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from transforms.freshness.refresh import (  # noqa: E402
    EMPTY,
    KnownPrediction,
    RefreshConfig,
    RefreshState,
    on_event,
    on_known,
    on_timer,
)
from transforms.records import EventType, Product, ProductEvent, WorkItem, content_hash  # noqa: E402

MODEL, OLD_MODEL, TAXONOMY = "m2", "m1", "2024-07"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
DURATION_S = 6 * 3600
S = 1_000_000
ADJ = "red blue green black linen cotton wool silk leather vintage classic slim oversized organic".split()
NOUN = "dress shirt jeans jacket scarf boots sneakers hat bag belt sweater skirt coat socks gloves".split()
SLOTS = [
    ("price", 0.76),
    ("edit", 0.08),
    ("burst", 0.04),
    ("new", 0.05),
    ("delete", 0.03),
    ("force", 0.02),
    ("repredict", 0.02),
]


@dataclass
class Gen:
    t: float  # seconds since T0
    seq: int
    kind: str
    pid: str
    title: str | None  # None for a delete
    etype: str = "update"
    force: bool = False


def generate(n_events: int, n_products: int, seed: int) -> tuple[list[Gen], dict[str, KnownPrediction], Counter]:
    rng = random.Random(seed)
    title_of: dict[str, str] = {}
    for i in range(n_products):
        pid = f"p{i:06d}"
        if i and rng.random() < 0.10:
            title_of[pid] = title_of[f"p{rng.randrange(i):06d}"]
        else:
            title_of[pid] = f"{rng.choice(ADJ)} {rng.choice(NOUN)} {i}"
    seeds = {
        pid: KnownPrediction(content_hash(Product(title=t)), OLD_MODEL if rng.random() < 0.05 else MODEL, TAXONOMY)
        for pid, t in title_of.items()
    }
    live = list(title_of)
    busy_until: dict[str, float] = {}
    out: list[Gen] = []
    kinds: Counter = Counter()
    next_new = n_products
    seq = 0
    gap = DURATION_S / n_events
    t = 0.0
    names, weights = zip(*SLOTS)

    def emit(at: float, kind: str, pid: str, title: str | None, etype: str = "update", force: bool = False) -> None:
        nonlocal seq
        out.append(Gen(at, seq, kind, pid, title, etype, force))
        kinds[kind] += 1
        seq += 1

    def pick() -> str | None:
        for _ in range(20):
            pid = live[rng.randrange(len(live))]
            if busy_until.get(pid, -1.0) < t:
                return pid
        return None

    while len(out) < n_events:
        t += rng.expovariate(1 / gap)
        kind = rng.choices(names, weights)[0]
        if kind == "new":
            copies = rng.randint(2, 4) if rng.random() < 0.30 else 1
            title = f"{rng.choice(ADJ)} {rng.choice(NOUN)} new{next_new}"
            for c in range(copies):
                pid = f"p{next_new:06d}"
                next_new += 1
                title_of[pid] = title
                live.append(pid)
                busy_until[pid] = t + 2.0
                emit(
                    t + rng.uniform(0, 2.0) * (c > 0), "new" if copies == 1 else "new_syndicated", pid, title, "create"
                )
            continue
        pid = pick()
        if pid is None:
            continue
        if kind == "price":
            emit(t, kind, pid, title_of[pid])
        elif kind == "edit":
            title_of[pid] = f"{title_of[pid]} v{seq}"
            emit(t, kind, pid, title_of[pid])
        elif kind == "burst":
            before, at = title_of[pid], t
            n = rng.randint(2, 6)
            revert = rng.random() < 0.25
            for j in range(n):
                title_of[pid] = before if (revert and j == n - 1) else f"{before} b{seq}"
                emit(at, "burst_edit", pid, title_of[pid])
                if rng.random() < 0.3:
                    emit(at + 0.5, "burst_price", pid, title_of[pid])
                at += rng.uniform(0, 20)
            busy_until[pid] = at + 1
        elif kind == "delete":
            emit(t, kind, pid, None, "delete")
            live.remove(pid)
        elif kind == "force":
            emit(t, kind, pid, title_of[pid], force=True)
        elif kind == "repredict":
            emit(t, kind, pid, title_of[pid], "repredict")
    out.sort(key=lambda g: (g.t, g.seq))
    return out[:n_events], seeds, kinds


def to_element(g: Gen) -> WorkItem | ProductEvent:
    ev = ProductEvent(
        event_id=f"e{g.seq}",
        type=EventType(g.etype),
        product_id=g.pid,
        shop_id="s1",
        occurred_at=T0 + timedelta(seconds=g.t),
        product=None if g.title is None else Product(title=g.title, price=round(g.t % 97, 2)),
        force=g.force,
    )
    return ev if ev.product is None else WorkItem(event=ev, content_hash=content_hash(ev.product))


def simulate(
    events: list[Gen], seeds: dict[str, KnownPrediction], config: RefreshConfig, dedupe_wait_s: float
) -> dict[str, Any]:
    states: dict[str, RefreshState] = defaultdict(lambda: EMPTY)
    for pid, k in seeds.items():
        states[pid] = on_known(EMPTY, k)
    timers: list[tuple[int, str]] = []
    emitted: list[tuple[int, str, str]] = []  # (event time, product, content hash)
    counts: Counter = Counter()

    def fire_until(now: int) -> None:
        while timers and timers[0][0] <= now:
            deadline, pid = heapq.heappop(timers)
            states[pid], fx = on_timer(states[pid], deadline, config)
            emitted.extend((deadline, w.event.product_id, w.content_hash) for w in fx.predict)

    for g in events:
        ts = int(round(g.t * S))
        fire_until(ts)
        element = to_element(g)
        states[g.pid], fx = on_event(states[g.pid], element, ts, config)
        counts.update(fx.counts)
        emitted.extend((ts, w.event.product_id, w.content_hash) for w in fx.predict)
        if fx.timer_at is not None:
            heapq.heappush(timers, (fx.timer_at, g.pid))
    fire_until(2**62)

    # Content dedupe, like the streaming buffer: the first prediction of a hash arms a timer.
    wait = int(round(dedupe_wait_s * S))
    open_until: dict[str, int] = {}
    calls = 0
    for at, _, h in emitted:  # emission times are non-decreasing
        if open_until.get(h, -1) >= at:
            continue
        open_until[h] = at + wait
        calls += 1
    return {"counts": counts, "emitted": emitted, "calls": calls}


def oracle(
    events: list[Gen], seeds: dict[str, KnownPrediction], emitted: list[tuple[int, str, str]], quiet_s: float
) -> list[str]:
    """Brute force over each product's own history; returns the misses."""
    by_product: dict[str, list[Gen]] = defaultdict(list)
    for g in events:
        by_product[g.pid].append(g)
    predicted: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for at, pid, h in emitted:
        predicted[pid].append((at, h))
    q = int(round(quiet_s * S))
    misses = []
    for pid, history in by_product.items():
        preds = sorted(predicted[pid])
        deletes = [int(round(g.t * S)) for g in history if g.etype == "delete"]
        for i, g in enumerate(history):
            if g.etype == "delete":
                continue
            t = int(round(g.t * S))
            since = max((d for d in deletes if d <= t), default=None)
            nxt = history[i + 1] if i + 1 < len(history) else None
            if nxt is None or int(round(nxt.t * S)) > t + q:
                h = content_hash(Product(title=g.title or ""))
                seed = seeds.get(pid)
                ok = since is None and seed is not None and seed == KnownPrediction(h, MODEL, TAXONOMY)
                ok = ok or any(h2 == h and (since is None or at >= since) for at, h2 in preds if at <= t + q)
                if not ok:
                    misses.append(
                        f"{pid}: content after event e{g.seq} at {g.t:.1f}s not predicted by {g.t + quiet_s:.1f}s"
                    )
            if g.force or g.etype == "repredict":
                until = min((d for d in deletes if d > t), default=None)
                j = bisect.bisect_left(preds, (t, ""))
                if until is None and j == len(preds):  # a delete first makes the request moot
                    misses.append(f"{pid}: forced event e{g.seq} at {g.t:.1f}s never predicted")
    return misses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--products", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quiet-period", type=float, default=30.0)
    ap.add_argument("--dedupe-wait", type=float, default=5.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    config = RefreshConfig(model_version=MODEL, taxonomy_version=TAXONOMY, quiet_period_s=args.quiet_period)

    started = time.perf_counter()
    events, seeds, kinds = generate(args.events, args.products, args.seed)
    generated_s = time.perf_counter() - started
    started = time.perf_counter()
    sim = simulate(events, seeds, config, args.dedupe_wait)
    simulated_s = time.perf_counter() - started
    misses = oracle(events, seeds, sim["emitted"], args.quiet_period)

    n = len(events)
    c = sim["counts"]
    baseline = sum(1 for g in events if g.etype != "delete")
    predictions = len(sim["emitted"])
    calls = sim["calls"]
    saved = {
        "skip_unchanged": c["skipped_unchanged"],
        "debounce": c["debounced"],
        "dedupe": predictions - calls,
    }
    assert baseline == c["skipped_unchanged"] + c["debounced"] + predictions, (
        "every event is a prediction, a skip or debounced"
    )

    console = Console(width=120)
    mix = Table(title=f"Event mix ({n} events, {args.products} catalog products, seed {args.seed})")
    mix.add_column("generated as")
    mix.add_column("events", justify="right")
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        mix.add_row(kind, str(count))
    console.print(mix)
    dec = Table(title="Refresh decisions (counter 'refresh/<name>')")
    dec.add_column("decision")
    dec.add_column("count", justify="right")
    for name in (
        "new",
        "content_changed",
        "model_changed",
        "taxonomy_changed",
        "forced",
        "repredict",
        "skipped_unchanged",
        "debounced",
        "deleted",
    ):
        dec.add_row(name, str(c[name]))
    console.print(dec)
    t = Table(title=f"Model calls (quiet period {args.quiet_period:g}s, dedupe wait {args.dedupe_wait:g}s)")
    t.add_column("")
    t.add_column("model calls", justify="right")
    t.add_column("per event", justify="right")
    t.add_row("baseline: predict every non-delete event", str(baseline), f"{baseline / n:.4f}")
    t.add_row("saved by skip unchanged", str(saved["skip_unchanged"]), f"{saved['skip_unchanged'] / n:.4f}")
    t.add_row("saved by debounce", str(saved["debounce"]), f"{saved['debounce'] / n:.4f}")
    t.add_row("saved by content dedupe", str(saved["dedupe"]), f"{saved['dedupe'] / n:.4f}")
    t.add_row("predictions written (one per product)", str(predictions), f"{predictions / n:.4f}")
    t.add_row("[bold]model calls made[/bold]", f"[bold]{calls}[/bold]", f"[bold]{calls / n:.4f}[/bold]")
    console.print(t)
    verdict = "PASS: no content change missed" if not misses else f"FAIL: {len(misses)} misses"
    console.print(f"oracle: {verdict}; generated in {generated_s:.1f}s, simulated in {simulated_s:.1f}s")
    for m in misses[:20]:
        console.print(f"  miss: {m}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "params": {
                        "events": n,
                        "products": args.products,
                        "seed": args.seed,
                        "quiet_period_s": args.quiet_period,
                        "dedupe_wait_s": args.dedupe_wait,
                    },
                    "event_mix": dict(kinds),
                    "decisions": {k: c[k] for k in sorted(c)},
                    "baseline_calls": baseline,
                    "predictions": predictions,
                    "model_calls": calls,
                    "model_calls_per_event": calls / n,
                    "saved": saved,
                    "oracle": {"pass": not misses, "misses": misses[:100]},
                    "runtime_s": {"generate": generated_s, "simulate": simulated_s},
                },
                indent=2,
            )
            + "\n"
        )
        console.print(f"wrote {args.json}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
