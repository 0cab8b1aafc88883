"""Hostile inputs through `productlens backfill`: input class -> outcome, wall time, peak RSS.

Runs the corpus of tests/hostile/corpus.py (the same one the tests assert on). By default
each input class is its own job (a child process: the CLI as a user runs it) holding the
two good products plus that one hostile item, so its wall time and peak RSS are its own;
the first row is a job with only the good products, the reference every other row is
compared with. `--per-scenario` runs one job per scenario instead (faster, coarser).

    .venv/bin/python benchmarks/hostile.py [--per-scenario] [--only NAME] [--json out/bench/hostile.json]

Loopback servers are started here; the `http` scenario allows loopback explicitly (with
a host allow-list of 127.0.0.1), as tests and local use may.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.hostile import corpus  # noqa: E402


@dataclass
class Row:
    scenario: str
    input_class: str
    outcome: str
    expected: str
    ok: bool
    exit_code: int
    wall_s: float
    peak_rss_mb: float
    good_products_predicted: bool


def _scenarios(tmp: Path, internal: corpus._Server, hostile: corpus._Server, big_line_mb: int) -> list[corpus.Scenario]:
    return [
        corpus.ssrf_scenario(internal),
        corpus.files_scenario(tmp / "files"),
        corpus.http_scenario(hostile),
        corpus.payload_scenario(big_line_mb),
    ]


def _job(scenario: corpus.Scenario, work: Path) -> tuple[corpus.JobRun, list[corpus.Outcome], list[str]]:
    pattern = corpus.write_inputs(scenario, work / "in")
    out = work / "out"
    job = corpus.run_cli(corpus.backfill_argv(scenario, pattern, out), timeout_s=900)
    if job.returncode != 0 or not (out / "predictions.jsonl").exists():
        return job, [], [f"job exited {job.returncode}: {job.stderr[-300:]}"]
    outcomes, good = corpus.judge(scenario, out)
    return job, outcomes, good


def _outcome_text(o: corpus.Outcome) -> str:
    letters = ", ".join(f"{s}/{t}" for s, t in zip(o.stages, o.error_types)) or "no dead letter"
    return f"{letters}; {'predicted from text' if o.predicted else 'not predicted'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-scenario", action="store_true", help="one job per scenario instead of one per input class"
    )
    parser.add_argument("--only", default=None, help="run only input classes (or scenarios) whose name contains this")
    parser.add_argument("--big-line-mb", type=int, default=40, help="size of the oversized-line case")
    parser.add_argument("--json", default=str(ROOT / "out" / "bench" / "hostile.json"))
    args = parser.parse_args()
    console = Console(stderr=True)
    internal, hostile = corpus.internal_server(), corpus.hostile_server()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="productlens-hostile-") as tmp_dir:
            tmp = Path(tmp_dir)
            reference = corpus.Scenario("reference", [])
            job, _, good = _job(reference, tmp / "reference")
            rows.append(
                Row(
                    "reference",
                    "good products only",
                    "predicted",
                    "predicted",
                    not good,
                    job.returncode,
                    job.seconds,
                    job.peak_rss_mb,
                    not good,
                )
            )
            for scenario in _scenarios(tmp, internal, hostile, args.big_line_mb):
                cases = [
                    c for c in scenario.cases if not args.only or args.only in c.name or args.only == scenario.name
                ]
                if not cases:
                    continue
                groups = [cases] if args.per_scenario else [[c] for c in cases]
                for i, group in enumerate(groups):
                    sub = corpus.Scenario(scenario.name, group, scenario.flags, scenario.files, scenario.file_products)
                    label = scenario.name if args.per_scenario else group[0].name
                    console.print(f"[dim]{scenario.name}: {label} ...[/dim]")
                    job, outcomes, good = _job(sub, tmp / f"{scenario.name}-{i}")
                    for case in group:
                        o = next((x for x in outcomes if x.case == case.name), None)
                        expected = f"{case.stage}/{'|'.join(sorted(case.error_types))}; {'predicted' if case.predicted else 'not predicted'}"
                        rows.append(
                            Row(
                                scenario.name,
                                case.name,
                                _outcome_text(o) if o else "job failed",
                                expected,
                                bool(o and o.ok and not good and job.returncode == 0),
                                job.returncode,
                                job.seconds,
                                job.peak_rss_mb,
                                not good,
                            )
                        )
                    # Every scenario's extra files (BOM, CR-only, a good image) ride along.
                    if good:
                        console.print(f"[red]{label}: {good}[/red]")
    finally:
        internal.close()
        hostile.close()
    table = Table(
        title="hostile inputs through productlens backfill"
        + (" (one job per scenario)" if args.per_scenario else " (one job per input class)")
    )
    for col in ("scenario", "input class", "outcome", "ok", "exit", "wall s", "peak RSS MB"):
        table.add_column(col, justify="right" if col in ("exit", "wall s", "peak RSS MB") else "left")
    for r in rows:
        table.add_row(
            r.scenario,
            r.input_class,
            r.outcome,
            "yes" if r.ok else "[red]NO[/red]",
            str(r.exit_code),
            f"{r.wall_s:.1f}",
            f"{r.peak_rss_mb:.0f}",
        )
    out_console = Console(width=170)
    out_console.print(table)
    failed = [r for r in rows if not r.ok]
    out_console.print(
        f"{len(rows) - len(failed)} of {len(rows)} rows as expected; internal server connections: {internal.connections}"
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "internal_connections": internal.connections}, indent=2) + "\n"
    )
    out_console.print(f"JSON: {out}")
    sys.exit(1 if failed or internal.connections else 0)


if __name__ == "__main__":
    main()
