"""Smoke test of benchmarks/correction.py on the bundled sample taxonomy (no timings)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from taxonomy.loader import SAMPLE_TAXONOMY_DIR, load_taxonomy
from taxonomy.model import normalise_key

BENCH_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "correction.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("correction_benchmark", BENCH_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy(SAMPLE_TAXONOMY_DIR)  # the small fixture: the default is the full tree


@pytest.fixture(scope="module")
def report(bench, taxonomy):
    return bench.run(taxonomy, n=10, seed=3, baseline=True, repeat=1, taxonomy_path=str(SAMPLE_TAXONOMY_DIR))


def test_report_has_the_expected_keys(bench, report):
    json.loads(json.dumps(report))  # serialisable as written
    assert {
        "benchmark",
        "params",
        "taxonomy",
        "machine",
        "noise_model",
        "results",
        "overall",
        "failures",
        "cases",
        "timing_s",
    } <= report.keys()
    assert report["params"]["seed"] == 3 and report["params"]["n_per_type"] == 10
    assert report["taxonomy"]["version"] == "2024-07" and report["taxonomy"]["categories"] == 840
    assert {"platform", "python", "cpu_count"} <= report["machine"].keys()
    expected_rows = set(bench.NOISE_TYPES) | {"f_synonym_in_lexicon", "f_synonym_held_out"}
    assert set(report["results"]) == expected_rows
    assert set(report["overall"]) == {"structural_errors", "structural_errors_incl_held_out_synonyms", "all_cases"}
    figures = {
        "n",
        "ours_accuracy",
        "ours_unresolved",
        "ours_wrong",
        "ours_p50_ms",
        "ours_p99_ms",
        "baseline_accuracy",
        "baseline_p50_ms",
        "baseline_p99_ms",
    }
    for key in bench.NOISE_TYPES:
        row = report["results"][key]
        assert row["n"] > 0, key
        assert figures <= row.keys(), key
        assert 0.0 <= row["ours_accuracy"] <= 1.0
        if key == "h_unknown_leaf":  # recovered means unresolved here
            assert row["ours_accuracy"] == row["ours_unresolved"]
            assert row["ours_wrong"] == pytest.approx(1.0 - row["ours_unresolved"])
            assert row["baseline_accuracy"] == 0.0  # the baseline cannot abstain
        else:
            assert row["ours_accuracy"] + row["ours_unresolved"] + row["ours_wrong"] == pytest.approx(1.0)
    assert set(report["noise_model"]["rejected"]) == set(bench.NOISE_TYPES)


def test_every_case_has_a_known_answer_in_the_taxonomy(bench, report, taxonomy):
    paths = {normalise_key(c.full_name) for c in taxonomy.categories.values()}
    names = {normalise_key(c.name) for c in taxonomy.categories.values()}
    by_type: dict[str, int] = {}
    for case in report["cases"]:
        by_type[case["noise"]] = by_type.get(case["noise"], 0) + 1
        if case["noise"] == "h_unknown_leaf":
            assert case["target_id"] is None  # the right answer is "unresolved"
            assert normalise_key(case["raw"].split(" > ")[-1]) not in names
            continue
        target = taxonomy.get(case["target_id"])
        assert target is not None, case
        if case["noise"] == "g_exact":
            assert case["raw"] == target.full_name
        else:
            # The noise model's rejection rule: a noisy string is never itself a category.
            assert normalise_key(case["raw"]) not in paths | names, case
            assert case["raw"] != target.full_name
        if case["noise"] == "f_synonym":
            assert isinstance(case["in_lexicon"], bool)
    assert set(by_type) == set(bench.NOISE_TYPES)
    assert all(v == 10 for v in by_type.values()), by_type


def test_path_noise_keeps_the_answer_unambiguous(bench, report, taxonomy):
    for case in report["cases"]:
        if case["noise"] not in ("a_wrong_level", "d_dropped_level", "e_extra_level"):
            continue
        target = taxonomy.get(case["target_id"])
        segs = [normalise_key(s) for s in case["raw"].split(" > ")[:-1]]

        def overlap(c, segs=segs):
            lineage = {normalise_key(n) for n in c.path[:-1]}
            return sum(s in lineage for s in segs)

        for other in taxonomy.by_leaf_name(target.name):
            if other.id != target.id:
                assert overlap(other) < overlap(target), case


def test_generation_is_seeded(bench, taxonomy):
    a, _ = bench.generate_cases(taxonomy, 5, seed=11)
    b, _ = bench.generate_cases(taxonomy, 5, seed=11)
    c, _ = bench.generate_cases(taxonomy, 5, seed=12)
    assert a == b and a != c


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Dresses", "Dress"),
        ("Dress", "Dresses"),
        ("Knives", "Knife"),
        ("Smart Watches", "Smart Watch"),
        ("Batteries", "Battery"),
        ("Glass", "Glasses"),
        ("Shoes", "Shoe"),
        ("Tomatoes", "Tomato"),
        ("Bone-Anchored Hearing Aids (BAHA)", "Bone-Anchored Hearing Aid (BAHA)"),
        ("TV", None),
    ],
)
def test_toggle_number(bench, name, expected):
    assert bench.toggle_number(name) == expected


def test_main_writes_json_and_rejects_a_missing_taxonomy(bench, tmp_path, capsys):
    out = tmp_path / "c.json"
    rc = bench.main(
        [
            "--taxonomy",
            str(SAMPLE_TAXONOMY_DIR),
            "--n",
            "4",
            "--seed",
            "1",
            "--repeat",
            "1",
            "--no-baseline",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["params"]["baseline"] is False and "baseline_accuracy" not in data["results"]["b_typo"]
    assert "structural errors" in capsys.readouterr().out
    rc = bench.main(["--taxonomy", str(tmp_path / "nope"), "--json", str(out)])
    assert rc == 2
    assert "taxonomy not found" in capsys.readouterr().err
