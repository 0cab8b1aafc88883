from __future__ import annotations

import pytest

from transforms.model.retry import RetriesExhausted, RetryPolicy, call_with_retries
from transforms.model.triton import TritonModel, grpc_status, is_transient


class FakeTritonError(Exception):
    def __init__(self, status: str, msg: str = "boom") -> None:
        super().__init__(msg)
        self._status = status

    def status(self) -> str:
        return self._status


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_backoff_is_capped_exponential_with_jitter() -> None:
    p = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0)
    assert [p.backoff(a, rand=lambda: 1.0) for a in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert p.backoff(3, rand=lambda: 0.0) == pytest.approx(0.2)  # jitter floor: half the cap


def test_transient_errors_are_retried_until_success() -> None:
    clock, calls, retried = Clock(), [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise FakeTritonError("StatusCode.UNAVAILABLE")
        return "ok"

    out = call_with_retries(
        flaky,
        RetryPolicy(),
        is_transient,
        sleep=clock.sleep,
        clock=clock,
        rand=lambda: 1.0,
        on_retry=lambda a, e: retried.append(a),
    )
    assert out == "ok" and len(calls) == 3 and retried == [1, 2]
    assert clock.sleeps == [0.2, 0.4]


def test_permanent_errors_are_not_retried() -> None:
    calls = []

    def bad() -> None:
        calls.append(1)
        raise FakeTritonError("StatusCode.INVALID_ARGUMENT")

    with pytest.raises(FakeTritonError):
        call_with_retries(bad, RetryPolicy(), is_transient, sleep=lambda s: None)
    assert len(calls) == 1


def test_attempts_and_budget_are_bounded() -> None:
    clock = Clock()

    def down() -> None:
        raise FakeTritonError("StatusCode.RESOURCE_EXHAUSTED")

    with pytest.raises(RetriesExhausted) as info:
        call_with_retries(
            down, RetryPolicy(max_attempts=3), is_transient, sleep=clock.sleep, clock=clock, rand=lambda: 1.0
        )
    assert info.value.attempts == 3 and len(clock.sleeps) == 2
    clock = Clock()
    with pytest.raises(RetriesExhausted):
        call_with_retries(
            down,
            RetryPolicy(max_attempts=100, max_backoff_s=5, budget_s=10),
            is_transient,
            sleep=clock.sleep,
            clock=clock,
            rand=lambda: 1.0,
        )
    assert clock.now <= 10


@pytest.mark.parametrize(
    "exc, transient",
    [
        (FakeTritonError("StatusCode.UNAVAILABLE"), True),
        (FakeTritonError("StatusCode.DEADLINE_EXCEEDED"), True),
        (FakeTritonError("StatusCode.RESOURCE_EXHAUSTED"), True),
        (FakeTritonError("StatusCode.INTERNAL", "model raised"), False),
        (FakeTritonError("StatusCode.INVALID_ARGUMENT"), False),
        (ConnectionRefusedError("Connection refused"), True),
        (ValueError("bad json"), False),
    ],
)
def test_is_transient(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_grpc_status_and_spec_validation() -> None:
    assert grpc_status(FakeTritonError("StatusCode.UNAVAILABLE")) == "UNAVAILABLE"
    assert grpc_status(ValueError()) == ""
    with pytest.raises(ValueError, match="host:port"):
        TritonModel("http://localhost:8001")
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
