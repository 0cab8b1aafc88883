"""Micro-batching: products of concurrent requests share one model batch.

The model answers a batch of 32 products in far less than 32 times one product's time (one
matrix product for the embeddings, one network round trip to Triton), so the service
gathers what arrives while the model is busy, plus at most `max_wait_s` when it is idle,
into one batch of at most `max_batch`. Every product carries its request's deadline: one
still queued when its deadline passes is dropped before it costs a model call. The queue is
bounded: past `max_queue` waiting products a new request is refused at once (503 +
Retry-After) instead of waiting for a deadline it cannot meet.

The batch runs on a worker thread (`run_batch` blocks: numpy or a gRPC call), never on the
event loop, so cache hits keep being answered while a batch is computed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["DeadlineExceeded", "MicroBatcher", "Overloaded"]

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(Exception):
    """The queue is full or the batcher is stopping: retry later (503)."""


class DeadlineExceeded(Exception):
    """The product's request deadline passed before a model batch took it (503)."""


@dataclass
class _Job(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    deadline: float  # event-loop time


class MicroBatcher(Generic[T, R]):
    """`run_batch(items) -> results` (one per item, in order) on `workers` threads."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], list[R]],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        workers: int = 1,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or workers < 1 or max_wait_s < 0:
            raise ValueError("max_batch, max_queue and workers must be >= 1 and max_wait_s >= 0")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.workers = workers
        self._on_depth = on_depth or (lambda depth: None)
        self._queue: deque[_Job[T, R]] = deque()
        self._cond: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._cond = asyncio.Condition()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="model-batch")
        self._tasks = [asyncio.create_task(self._work(), name=f"batcher-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        """Refuse new work, fail what is still queued, wait for running batches."""
        self._closed = True
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(Overloaded("the service is stopping"))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def submit(self, items: Sequence[T], deadline: float) -> list[asyncio.Future[R]]:
        """Queue `items` (all or none); their futures hold the results."""
        if self._cond is None or self._closed:
            raise Overloaded("the service is not accepting work")
        if len(self._queue) + len(items) > self.max_queue:
            raise Overloaded(f"{len(self._queue)} products are waiting for the model (limit {self.max_queue})")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        async with self._cond:
            for item in items:
                future: asyncio.Future[R] = loop.create_future()
                # A result nobody awaits any more (the request timed out) must not log
                # "exception was never retrieved".
                future.add_done_callback(_retrieve)
                self._queue.append(_Job(item, future, deadline))
                futures.append(future)
            self._on_depth(len(self._queue))
            self._cond.notify_all()
        return futures

    async def _work(self) -> None:
        assert self._cond is not None and self._pool is not None
        loop = asyncio.get_running_loop()
        while True:
            async with self._cond:
                await self._cond.wait_for(lambda: bool(self._queue))
                if len(self._queue) < self.max_batch and self.max_wait_s > 0:
                    try:
                        await asyncio.wait_for(
                            self._cond.wait_for(lambda: len(self._queue) >= self.max_batch), self.max_wait_s
                        )
                    except TimeoutError:
                        pass
                jobs = self._take(loop.time())
                self._on_depth(len(self._queue))
            if not jobs:
                continue
            try:
                results = await loop.run_in_executor(self._pool, self.run_batch, [j.item for j in jobs])
                if len(results) != len(jobs):
                    raise RuntimeError(f"run_batch returned {len(results)} results for {len(jobs)} items")
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(result)

    def _take(self, now: float) -> list[_Job[T, R]]:
        jobs: list[_Job[T, R]] = []
        while self._queue and len(jobs) < self.max_batch:
            job = self._queue.popleft()
            if job.future.done():
                continue  # cancelled: its request gave up
            if job.deadline <= now:
                job.future.set_exception(DeadlineExceeded("the request deadline passed while queued"))
                continue
            jobs.append(job)
        return jobs


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()
