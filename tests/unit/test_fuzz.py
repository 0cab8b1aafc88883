"""Run the atheris fuzz targets in tests/fuzz/ for a bounded time each.

Each target runs in its own process (libFuzzer ends the process when it is done) for
PRODUCTLENS_FUZZ_SECONDS seconds (default 20; 0 skips), into a fresh corpus seeded by the
target. The test fails on any crash, printing the crashing input's path and bytes, and
when the target did not really fuzz (fewer than MIN_RUNS executions).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "atheris", reason="atheris is not installed (pip install 'productlens[test]'; it has wheels for Linux CPython)"
)

FUZZ_DIR = Path(__file__).resolve().parents[1] / "fuzz"
TARGETS = ["fuzz_contract.py", "fuzz_decode.py"]
# A target that starts and fuzzes does thousands of runs a second; far fewer means it
# spent its time failing to start, or each input is pathologically slow.
MIN_RUNS = 1_000
# libFuzzer's per-input limit: any single input slower than this is reported as a crash
# (a hang, or quadratic work on a few KB).
PER_INPUT_TIMEOUT_S = 10


def _seconds() -> int:
    raw = os.environ.get("PRODUCTLENS_FUZZ_SECONDS", "20")
    try:
        seconds = int(raw)
    except ValueError:
        pytest.fail(f"PRODUCTLENS_FUZZ_SECONDS must be a whole number of seconds, got {raw!r}")
    if seconds <= 0:
        pytest.skip("fuzzing disabled: PRODUCTLENS_FUZZ_SECONDS=0")
    return seconds


def _crash_report(target: str, output: str) -> str:
    """The crashing inputs libFuzzer wrote (path and bytes), for the failure message."""
    lines = []
    for path in re.findall(r"Test unit written to (\S+)", output):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            lines.append(f"crashing input: {path} (unreadable: {exc})")
            continue
        lines.append(f"crashing input: {path} ({len(data)} bytes)\n  {data[:4096]!r}")
        lines.append(f"  reproduce: {sys.executable} {FUZZ_DIR / target} {path}")
    return "\n".join(lines) or "no crashing input was written (see the output above)"


def _rss_limit_mb() -> int:
    """2 GiB above this process's peak RSS. libFuzzer reads the peak RSS (ru_maxrss), which
    Linux carries from the parent into a forked child and across exec: a target started by a
    pytest process that has loaded models would otherwise be over a fixed limit before its
    first input (seen in CI once the suite grew)."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return peak_mb + 2048


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target(target: str, tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    seconds = _seconds()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    cmd = [
        sys.executable,
        str(FUZZ_DIR / target),
        f"-max_total_time={seconds}",
        f"-rss_limit_mb={_rss_limit_mb()}",
        # One allocation over 2 GiB is a bug whatever the process started with.
        "-malloc_limit_mb=2048",
        f"-timeout={PER_INPUT_TIMEOUT_S}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        str(corpus),
    ]
    # Startup (imports, instrumentation, seed corpus) takes seconds; a minute over is a hang.
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, errors="replace", timeout=seconds + 120)
    output = proc.stdout + proc.stderr
    tail = "\n".join(line for line in output.splitlines() if not line.startswith(("WARNING:", "ERROR: generated")))[
        -6000:
    ]
    if proc.returncode != 0:
        print(tail)
        pytest.fail(
            f"{target} crashed (exit {proc.returncode}):\n{_crash_report(target, output)}\n--- output tail ---\n{tail}"
        )

    done = re.search(r"Done (\d+) runs in (\d+) second", output)
    assert done, f"{target}: no 'Done N runs' line from libFuzzer:\n{tail}"
    runs, elapsed = int(done.group(1)), max(1, int(done.group(2)))
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", output)
    edges, features, corpus_size = (int(x) for x in cov[-1]) if cov else (0, 0, 0)
    summary = f"{target}: {runs} runs in {elapsed}s ({runs // elapsed}/s), cov {edges} edges, ft {features}, corpus {corpus_size}"
    print(summary)
    record_property("fuzz", summary)
    assert runs > MIN_RUNS, f"{target} executed only {runs} inputs in {elapsed}s (floor {MIN_RUNS}):\n{tail}"
    assert edges > 0, f"{target} reported no coverage: is the module under test instrumented?\n{tail}"
