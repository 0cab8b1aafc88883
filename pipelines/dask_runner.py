"""Beam's DaskRunner (apache_beam 2.77), with the fixes productlens' batch pipelines need.

Use it as `--runner=pipelines.dask_runner.DaskRunner --dask_client_address=tcp://HOST:PORT` with
this folder on PYTHONPATH, in the launching process and on every Dask worker
(`deploy/local/dask/dask.sh up` starts its workers so).

Beam's own `apache_beam.runners.dask.dask_runner.DaskRunner` cannot run a productlens
pipeline as shipped (each point below was seen on `productlens backfill`):

- a multi-output ParDo's tagged outputs reach every consumer of any of its outputs (its
  visitor keys bags by producing transform, not by PCollection): dead letters arrive in
  the predictions writer;
- what a DoFn emits from `finish_bundle` is dropped (the bundle's results are taken before
  `finish_bundle` runs): `BatchElements` loses each bundle's last batch;
- only the last transform's bag is computed, so with several sinks only one is written;
- a side input is computed by a nested `compute()` inside a worker task, which runs its
  whole upstream graph a second time (here: the model and the temp-file writes);
- the windows of main outputs are dropped, GroupByWindow is skipped;
- no metrics: `result.metrics()` raises, and the pipelines' summaries are Beam counters.

This runner keeps Beam's overrides (Create, Reshuffle, GroupByKey, Flatten) and its DoFn
invocation (`DoFnInvoker` on one Dask bag partition = one bundle) and replaces the graph
translation: bags are keyed by PCollection and carry (tag, WindowedValue) pairs, a bundle
collects its outputs after `finish_bundle`, side inputs are whole-bag dependencies of the
consuming tasks (computed once, in the same graph), GroupByWindow runs as the ParDo it is,
every leaf is computed in one `client.compute`, and each bundle's Beam metrics come back
as one more output of its task (committed = attempted: a retried task counts twice).

Not supported (raises at construction): stateful DoFns and timers (the refresh trigger and
content dedupe), splittable DoFns (the Kafka reader), unbounded sources and PCollections.
Bounded `beam.io.Read` sources (ReadFromText, ReadFromParquet) are split on the launching
side, one Dask partition per split. Keys are shuffled by a stable digest of their pickle (an
int), so the shuffle does not depend on the workers' PYTHONHASHSEED.
"""

from __future__ import annotations

import hashlib
import pickle
import typing as t

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.iobase import BoundedSource
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
from apache_beam.runners.dask import dask_runner as _beam_dask
from apache_beam.runners.dask.overrides import (
    _Create,
    _Flatten,
    _GroupAlsoByWindow,
    _GroupByKeyOnly,
    _Read,
    _Reshuffle,
    dask_overrides,
)
from apache_beam.runners.direct.direct_metrics import DirectMetrics
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindow, GlobalWindows, TimestampedValue, WindowFn
from apache_beam.utils import counters
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

__all__ = ["DaskOptions", "DaskRunner", "DaskRunnerResult"]

DaskOptions = _beam_dask.DaskOptions

# Bounded sources are split into pieces of about this size (one Dask partition each).
_SPLIT_BYTES = 64 * 1024 * 1024
# The tag of a bundle's metrics among its outputs (a PCollection tag is a str or None).
_METRICS = ("productlens_dask", "metrics")
_MAIN = None


def _windowed(item: t.Any, window_fn: WindowFn | None) -> WindowedValue:
    if isinstance(item, WindowedValue):
        return item
    if isinstance(item, TimestampedValue) and window_fn is not None:
        ctx = WindowFn.AssignContext(item.timestamp, item.value)
        return WindowedValue(item.value, item.timestamp, tuple(window_fn.assign(ctx)))
    return WindowedValue(item, MIN_TIMESTAMP, (GlobalWindow(),))


class _Collect(Receiver):
    def __init__(self, tag: str | None, out: list[tuple[t.Any, WindowedValue]]) -> None:
        self.tag = tag
        self.out = out

    def receive(self, windowed_value: WindowedValue) -> None:
        self.out.append((self.tag, windowed_value))


class _Receivers(dict):
    def __init__(self, out: list[tuple[t.Any, WindowedValue]]) -> None:
        super().__init__()
        self.out = out

    def __missing__(self, tag: str) -> _Collect:
        self[tag] = receiver = _Collect(tag, self.out)
        return receiver


class _SideInputValues:
    """A side input's windowed values for SideInputMap (re-iterable)."""

    def __init__(self, values: list[WindowedValue]) -> None:
        self.values = values

    def __iter__(self) -> t.Iterator[WindowedValue]:
        return iter(self.values)


def _run_bundle(
    items: t.Iterable[tuple[t.Any, WindowedValue]],
    spec: dict[str, t.Any],
    *side_values: list[WindowedValue],
) -> list[tuple[t.Any, t.Any]]:
    """One Dask partition as one bundle of a ParDo: its outputs as (tag, WindowedValue),
    then (_METRICS, MetricUpdates)."""
    out: list[tuple[t.Any, t.Any]] = []
    receivers = _Receivers(out)
    side_inputs = [
        SideInputMap(view_class, view_options, _SideInputValues(values))
        for (view_class, view_options), values in zip(spec["side_specs"], side_values, strict=True)
    ]
    handler = _OutputHandler(
        window_fn=spec["window_fn"],
        main_receivers=receivers[_MAIN],
        tagged_receivers=receivers,
        per_element_output_counter=None,
        output_batch_converter=None,
        process_yields_batches=False,
        process_batch_yields_elements=False,
    )
    label = spec["label"]
    container = MetricsContainer(label)
    sampler = statesampler.StateSampler("", counters.CounterFactory())
    state = sampler.scoped_state(label, "process", metrics_container=container)
    sampler.start()
    try:
        with state:
            invoker = DoFnInvoker.create_invoker(
                DoFnSignature(spec["fn"]),
                handler,
                context=DoFnContext(label, state=None),
                side_inputs=side_inputs,
                input_args=spec["args"],
                input_kwargs=spec["kwargs"],
                user_state_context=None,
                bundle_finalizer_param=beam.DoFn.BundleFinalizerParam(),
            )
            invoker.invoke_setup()
            invoker.invoke_start_bundle()
            for _, value in items:
                invoker.invoke_process(value)
            invoker.invoke_finish_bundle()
            invoker.invoke_teardown()
    finally:
        sampler.stop()
    out.append((_METRICS, container.get_cumulative()))
    return out


def _stable_key(item: tuple[t.Any, WindowedValue]) -> int:
    """An int: Dask's shuffle routes by hash(), and only ints hash alike in every process."""
    key = item[1].value[0]
    return int.from_bytes(hashlib.blake2b(pickle.dumps(key, protocol=4), digest_size=8).digest(), "big")


def _group_partition(groups: t.Iterable[tuple[int, list[tuple[t.Any, WindowedValue]]]]) -> list[tuple[t.Any, t.Any]]:
    """GroupByKeyOnly over one shuffled partition: (key, [WindowedValue]) in the global window,
    as GroupByWindow expects; keys that share a digest are told apart by equality."""
    out = []
    for _, members in groups:
        by_key: list[tuple[t.Any, list[t.Any]]] = []
        for _, wv in members:
            key, value = wv.value
            for k, values in by_key:
                if k == key:
                    values.append(value)
                    break
            else:
                by_key.append((key, [value]))
        out.extend((_MAIN, WindowedValue((k, vs), MIN_TIMESTAMP, (GlobalWindow(),))) for k, vs in by_key)
    return out


def _has_tag(tag: t.Any) -> t.Callable[[tuple[t.Any, t.Any]], bool]:
    def keep(item: tuple[t.Any, t.Any]) -> bool:
        return item[0] == tag

    return keep


def _as_main(item: tuple[t.Any, WindowedValue]) -> tuple[t.Any, WindowedValue]:
    return (_MAIN, item[1])


def _concat(*parts: list[tuple[t.Any, WindowedValue]]) -> list[WindowedValue]:
    return [wv for part in parts for _, wv in part]


def _read_splits(splits: t.Iterable[t.Any]) -> list[tuple[t.Any, WindowedValue]]:
    out = []
    for split in splits:
        tracker = split.source.get_range_tracker(split.start_position, split.stop_position)
        out.extend((_MAIN, _windowed(value, None)) for value in split.source.read(tracker))
    return out


def _window_fn(pcoll: t.Any) -> WindowFn:
    """The input's WindowFn; global for a source's output (Beam's _Read override has no
    get_windowing, and a bounded read is in the global window)."""
    try:
        return pcoll.windowing.windowfn
    except AttributeError:
        return GlobalWindows()


def _never(_: t.Any) -> bool:
    return False


def _from_create(value: t.Any) -> tuple[t.Any, WindowedValue]:
    return (_MAIN, _windowed(value, None))


class _Translate(PipelineVisitor):
    def __init__(self, bag_kwargs: dict[str, t.Any]) -> None:
        self.bag_kwargs = bag_kwargs
        self.bags: dict[pvalue.PCollection, t.Any] = {}
        self.consumed: set[pvalue.PCollection] = set()
        self.metrics: list[t.Any] = []

    def visit_transform(self, node: AppliedPTransform) -> None:
        import dask.bag as db

        transform = node.transform
        inputs = [p for p in node.main_inputs.values() if isinstance(p, pvalue.PCollection)]
        self.consumed.update(inputs)
        self.consumed.update(si.pvalue for si in node.side_inputs)
        bags = [self.bags[p] for p in inputs]
        outputs = list(node.outputs.values())
        if any(not p.is_bounded for p in inputs + outputs):
            raise NotImplementedError(f"{node.full_label}: unbounded PCollections are not supported on Dask")

        if isinstance(transform, _Create):
            values = list(transform.values)
            size = self.bag_kwargs.get("partition_size")
            parts = self.bag_kwargs.get("npartitions") or max(1, min(len(values), 16))
            bag = db.from_sequence(values or [None], partition_size=size) if size else None
            if bag is None:
                bag = db.from_sequence(values or [None], npartitions=parts)
            if not values:
                bag = bag.filter(_never)
            self._set(node, bag.map(_from_create))
        elif isinstance(transform, _Read):
            self._set(node, self._read(node, transform.source))
        elif isinstance(transform, _Reshuffle):
            self._set(node, bags[0])
        elif isinstance(transform, _Flatten):
            empty = db.from_sequence([None], npartitions=1).filter(_never)
            self._set(node, db.concat(bags).map(_as_main) if bags else empty)
        elif isinstance(transform, _GroupByKeyOnly):
            grouped = bags[0].groupby(_stable_key, shuffle="tasks")
            self._set(node, grouped.map_partitions(_group_partition))
        elif isinstance(transform, beam.ParDo):  # _GroupAlsoByWindow and WindowInto included
            self._pardo(node, transform, bags[0])
        elif not outputs:
            return
        else:
            raise NotImplementedError(f"{node.full_label}: {type(transform).__name__} is not supported on Dask")

    def _read(self, node: AppliedPTransform, source: t.Any) -> t.Any:
        """A bounded source, split on the launching side; one partition per split."""
        import dask.bag as db

        if not isinstance(source, BoundedSource):
            raise NotImplementedError(f"{node.full_label}: only bounded sources are supported on Dask")
        splits = list(source.split(desired_bundle_size=_SPLIT_BYTES))
        if not splits:
            return db.from_sequence([None], npartitions=1).filter(_never)
        return db.from_sequence(splits, npartitions=len(splits)).map_partitions(_read_splits)

    def _set(self, node: AppliedPTransform, bag: t.Any) -> None:
        for p in node.outputs.values():
            self.bags[p] = bag

    def _pardo(self, node: AppliedPTransform, transform: beam.ParDo, bag: t.Any) -> None:
        import dask

        fn = transform.fn
        signature = DoFnSignature(fn)
        if signature.is_stateful_dofn() or signature.has_timers():
            raise NotImplementedError(f"{node.full_label}: stateful DoFns and timers are not supported on Dask")
        if signature.is_splittable_dofn():
            raise NotImplementedError(f"{node.full_label}: splittable DoFns are not supported on Dask")
        main_input = next(iter(node.main_inputs.values()))
        args, kwargs = transform.raw_side_inputs
        side_specs = []
        side_values = []
        for si in node.side_inputs:
            side_specs.append((type(si), si._view_options()))
            parts = self.bags[si.pvalue].to_delayed(optimize_graph=False)
            side_values.append(dask.delayed(_concat, pure=True)(*parts))
        spec = {
            "fn": fn,
            "label": node.full_label,
            "window_fn": _window_fn(main_input),
            "args": list(args),
            "kwargs": kwargs,
            "side_specs": side_specs,
        }
        results = bag.map_partitions(_run_bundle, spec, *side_values)
        self.metrics.append(results.filter(_has_tag(_METRICS)))
        main_tag = getattr(transform, "_main_tag", None)
        for tag, pcoll in node.outputs.items():
            wanted = _MAIN if tag == main_tag or tag is None or tag == "None" else tag
            out = results.filter(_has_tag(wanted))
            self.bags[pcoll] = out if wanted is _MAIN else out.map(_as_main)

    def leaves(self) -> list[t.Any]:
        return [bag for p, bag in self.bags.items() if p not in self.consumed]


class DaskRunnerResult(PipelineResult):
    def __init__(self, client: t.Any, futures: list[t.Any], metrics_future: t.Any) -> None:
        super().__init__(PipelineState.RUNNING)
        self.client = client
        self.futures = futures
        self.metrics_future = metrics_future
        self._metrics: DirectMetrics | None = None

    def wait_until_finish(self, duration: int | None = None) -> str:
        import dask.distributed as ddist

        timeout = duration / 1000 if duration is not None else None
        try:
            for _ in ddist.as_completed([*self.futures, self.metrics_future], timeout=timeout, with_results=True):
                pass
            metrics = DirectMetrics()
            for _, updates in self.metrics_future.result():
                metrics.commit_physical(None, updates)
                metrics.commit_logical(None, updates)
            self._metrics = metrics
            self._state = PipelineState.DONE
        except BaseException:
            self._state = PipelineState.FAILED
            raise
        finally:
            self.client.close()
        return self._state

    def cancel(self) -> str:
        self.client.cancel([*self.futures, self.metrics_future])
        self._state = PipelineState.CANCELLED
        return self._state

    def metrics(self) -> DirectMetrics:
        if self._metrics is None:
            raise RuntimeError("metrics are known once the pipeline has finished (wait_until_finish)")
        return self._metrics


class DaskRunner(_beam_dask.DaskRunner):
    """Runs a bounded pipeline on a dask.distributed cluster (see the module docstring)."""

    def run_pipeline(self, pipeline: beam.Pipeline, options: t.Any) -> DaskRunnerResult:
        import dask.bag as db
        import dask.distributed as ddist

        dask_options = options.view_as(DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = DaskOptions._extract_bag_kwargs(dask_options)
        pipeline.replace_all(dask_overrides())
        visitor = _Translate(bag_kwargs)
        pipeline.visit(visitor)
        leaves = [bag.count() for bag in visitor.leaves()]
        metrics = db.concat(visitor.metrics) if visitor.metrics else db.from_sequence([], npartitions=1)
        client = ddist.Client(**dask_options)
        try:
            *futures, metrics_future = client.compute([*leaves, metrics])
        except BaseException:
            client.close()
            raise
        return DaskRunnerResult(client, futures, metrics_future)


# GroupAlsoByWindow is a ParDo subclass: it runs as one (its DoFn is the DirectRunner's).
assert issubclass(_GroupAlsoByWindow, beam.ParDo)
