"""The sink-side offset commit's bookkeeping (transforms/io/kafka_commit.py) and the Kafka
positions that ride on what the flow makes of a record (transforms.records.source_of)."""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import EXAMPLES
from transforms.core.dead_letters import make_dead_letter, member_letters
from transforms.decode import DecodeEvents
from transforms.freshness.staleness import Skip
from transforms.io.kafka import KafkaRecord, ReadRange, runs_of
from transforms.io.kafka_commit import BULK, PREDICT, Intervals, Ledger
from transforms.records import DeadLetter, ProductEvent, WorkItem, source_of


def test_intervals_merge_find_gaps_and_prune() -> None:
    i = Intervals([(1, 3), (5, 7)])
    i.add(3, 5)
    assert i.runs() == [(1, 7)]
    i.add(10, 12)
    i.add(8, 9)
    assert i.runs() == [(1, 7), (8, 9), (10, 12)]
    assert [i.first_gap(a, 20) for a in (1, 7, 8, 0)] == [7, 7, 9, 0]
    i.drop_below(8)
    assert i.runs() == [(8, 9), (10, 12)]
    assert runs_of([9, 5, 6, 7, 7]) == ((5, 8), (9, 10))


@pytest.mark.parametrize("seed", range(200))
def test_the_frontier_never_passes_a_record_that_is_not_done(seed: int) -> None:
    """Ranges and done signals in any order, gaps in the offsets (compaction), one or two
    paths: everything below the frontier is done on every path, and once every record is
    done the frontier is the end of what was read."""
    rnd = random.Random(seed)
    start, n = rnd.randint(0, 5), rnd.randint(1, 60)
    exists = [o for o in range(start, start + n) if rnd.random() < 0.85]
    cuts = sorted({start, start + n, *(rnd.randint(start, start + n) for _ in range(4))})
    ranges, previous = [], start
    for a, b in zip(cuts, cuts[1:], strict=False):
        offsets = [o for o in exists if a <= o < b]
        if offsets:
            ranges.append(ReadRange("t", 0, previous, offsets[-1] + 1, runs_of(offsets)))
            previous = offsets[-1] + 1
    paths = (PREDICT, BULK) if seed % 2 else (PREDICT,)
    signals = [(p, o) for o in exists for p in paths if rnd.random() < 0.8]
    steps: list[object] = [*ranges, *signals, *ranges[:1]]  # a retried bundle's range again
    rnd.shuffle(steps)
    ledger, done = Ledger(start, start), {p: set() for p in paths}
    for step in steps:
        if isinstance(step, ReadRange):
            ledger.add_range(step)
        else:
            path, offset = step  # type: ignore[misc]
            ledger.add_done(path, [(offset, offset + 1)])
            done[path].add(offset)
        frontier = ledger.advance(paths)
        assert all(o in done[p] for o in exists if o < frontier for p in paths)
    pending = [o for o in exists if not all(o in done[p] for p in paths)]
    assert ledger.frontier == (pending[0] if pending else previous)


def _event_line() -> bytes:
    return next(
        line for line in (EXAMPLES / "events.jsonl").read_bytes().splitlines() if json.loads(line)["type"] == "create"
    )


def test_decode_stamps_the_kafka_position_on_every_output() -> None:
    decode = DecodeEvents()
    [item] = list(decode.process(KafkaRecord("events", 2, 41, None, _event_line(), 0)))
    assert isinstance(item, WorkItem) and source_of(item) == ("events", 2, 41)
    [letter] = list(decode.process(KafkaRecord("events", 1, 7, None, b"{not json", 0)))
    assert isinstance(letter.value, DeadLetter) and source_of(letter.value) == ("events", 1, 7)
    # Not from Kafka: no position.
    [plain] = list(decode.process(_event_line()))
    assert source_of(plain) is None


def test_positions_follow_dead_letters_members_and_skips() -> None:
    event = ProductEvent.model_validate_json(_event_line())
    event._source = ("events", 0, 3)
    member = event.model_copy(update={"product_id": "other", "event_id": "e2"})
    member._source = ("events", 1, 9)
    item = WorkItem(event=event, content_hash="h")
    letter = make_dead_letter("classify", "ModelError", "boom", item)
    assert source_of(letter) == ("events", 0, 3)
    twin = type("Item", (), {"members": (member,)})()
    [copy] = member_letters(letter, twin)
    assert source_of(copy) == ("events", 1, 9)  # the member's own, not the representative's
    skip = Skip.of_event(event, "debounced", "h")
    assert source_of(skip) == ("events", 0, 3)
    assert skip == Skip.of_event(ProductEvent.model_validate_json(_event_line()), "debounced", "h")
    # Private: never on the wire.
    assert "_source" not in letter.model_dump_json() and "source" not in json.loads(event.model_dump_json())


def test_the_unbounded_read_is_unbounded_so_keyed_steps_run_their_streaming_form() -> None:
    """Undeclared, Beam marked the read's output bounded and the refresh trigger and dedupe
    picked their batch form on the stream: a GroupByKey in the global window, never fired."""
    import apache_beam as beam

    from transforms.io.kafka import KafkaConfig, ReadConfig, ReadFromKafka

    kafka = KafkaConfig("127.0.0.1:9")
    p = beam.Pipeline()
    streamed = p | "Stream" >> ReadFromKafka(ReadConfig(kafka, ("t",), "g", commit_on_finalize=False))
    fused = p | "Fused" >> ReadFromKafka(ReadConfig(kafka, ("t",), "g"))
    bounded = p | "Bounded" >> ReadFromKafka(ReadConfig(kafka, ("t",), "g", bounded=True))
    assert not streamed["records"].is_bounded and not fused.is_bounded and bounded.is_bounded


def test_the_refresh_trigger_keeps_kafka_order_when_the_runner_does_not() -> None:
    """Prism may hand a product's create and its later edit to the keyed step in either
    order; by their Kafka offsets the edit is the newer, so its content is predicted and the
    create is a counted skip either way."""
    from transforms.config import RefreshConfig
    from transforms.freshness.refresh import EMPTY, OUT_OF_ORDER, on_event, on_timer
    from transforms.records import content_hash

    config = RefreshConfig(model_version="m", taxonomy_version="t", quiet_period_s=3)
    create = ProductEvent.model_validate_json(_event_line())
    edit = create.model_copy(
        update={"event_id": "edit", "product": create.product.model_copy(update={"title": "edited"})}  # type: ignore[union-attr]
    )
    create._source, edit._source = ("events", 0, 5), ("events", 0, 9)
    items = {e.event_id: WorkItem(event=e, content_hash=content_hash(e.product)) for e in (create, edit)}  # type: ignore[arg-type]
    for order in ((create, edit), (edit, create)):
        state, skipped, counts = EMPTY, [], []
        for e in order:
            state, fx = on_event(state, items[e.event_id], 0, config)
            skipped += fx.skipped
            counts += fx.counts
        state, fx = on_timer(state, 10_000_000, config)
        assert [i.event.event_id for i in fx.predict] == ["edit"]
        assert [(s.event_id, s.source) for s in skipped] == [(create.event_id, ("events", 0, 5))]
        assert (OUT_OF_ORDER in counts) == (order[0] is edit)
