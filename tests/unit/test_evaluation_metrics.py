"""Evaluation metrics against hand-computed examples on a small hand-built tree.

The tree (two verticals; the implicit root above them is not a category):

    A                 X
    ├── A > B         └── X > Y
    │   ├── A > B > C
    │   └── A > B > D
    └── A > E

Kiritchenko et al.: α = predicted category + ancestors, β = gold + ancestors, the root
excluded (here: the verticals count, there is no node above them); micro-averaged.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
import typer
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from typer.testing import CliRunner

from pipelines.evaluate import evaluate_command, evaluation_options, run
from taxonomy.loader import parse_taxonomy
from taxonomy.mapping import MappingError, build_mapping, load_mapping, source_key
from taxonomy.model import Taxonomy
from taxonomy.values import ValueNormaliser, slug
from transforms.evaluation.metrics import (
    SCORE_SCALE,
    EvalAccumulator,
    EvaluatePredictions,
    EvaluationCombineFn,
    GoldenRecordError,
    InputNote,
    calibration_bin,
    calibration_summary,
    compute_metrics,
    coverage_curve,
    golden_event,
    hierarchical_counts,
    hierarchical_scores,
    lineage_ids,
    parse_golden,
    prf,
    quantise_score,
    resolve_gold_category,
    score_attributes,
    score_product,
    store_of,
)
from transforms.evaluation.report import render_report
from transforms.records import Prediction, ProductEvent

PATHS = ["A > B > C", "A > B > D", "A > E", "X > Y"]
ATTRIBUTES = {
    "color": ["Navy", "Red", "Blue", "White"],
    "pattern": ["Striped", "Solid"],
    "size": ["Small", "Medium", "Large (L)"],
    "target-gender": ["Female", "Male", "Unisex"],
    "fabric": ["Cotton", "Polyester"],
}
CATEGORY_ATTRIBUTES = {"A > B > C": ["color", "pattern", "size", "target-gender"], "A > B > D": ["color"]}


def build_taxonomy_docs(
    paths: list[str] = PATHS,
    attributes: dict[str, list[str]] = ATTRIBUTES,
    category_attributes: dict[str, list[str]] = CATEGORY_ATTRIBUTES,
    version: str = "test-1",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """categories.json + attributes.json documents in Shopify's dist shape for `paths`
    (every prefix of a path becomes a category)."""
    attr_docs = []
    for i, (handle, names) in enumerate(attributes.items(), start=1):
        attr_docs.append(
            {
                "id": f"gid://shopify/TaxonomyAttribute/{i}",
                "name": handle.replace("-", " ").capitalize(),
                "handle": handle,
                "description": "",
                "values": [
                    {
                        "id": f"gid://shopify/TaxonomyValue/{i}{j:02d}",
                        "name": n,
                        "handle": f"{handle}__{slug(n.split(' (')[0])}",
                    }
                    for j, n in enumerate(names, start=1)
                ],
            }
        )
    attr_by_handle = {a["handle"]: a for a in attr_docs}
    full_names: list[str] = []
    for p in paths:
        parts = p.split(" > ")
        for k in range(1, len(parts) + 1):
            name = " > ".join(parts[:k])
            if name not in full_names:
                full_names.append(name)
    ids: dict[str, str] = {}
    for name in full_names:
        parts = name.split(" > ")
        if len(parts) == 1:
            ids[name] = f"gid://shopify/TaxonomyCategory/{parts[0].lower()}{parts[0].lower()}"
        else:
            parent = " > ".join(parts[:-1])
            siblings = [
                n for n in full_names if n.rsplit(" > ", 1)[0] == parent and n.count(" > ") == name.count(" > ")
            ]
            ids[name] = f"{ids[parent]}-{siblings.index(name) + 1}"
    verticals = []
    for v in [n for n in full_names if " > " not in n]:
        cats = []
        for name in [n for n in full_names if n == v or n.startswith(v + " > ")]:
            parts = name.split(" > ")
            ancestors = [" > ".join(parts[:k]) for k in range(len(parts) - 1, 0, -1)]  # nearest first
            children = [
                n for n in full_names if n.rsplit(" > ", 1)[0] == name and n.count(" > ") == name.count(" > ") + 1
            ]
            cats.append(
                {
                    "id": ids[name],
                    "level": len(parts) - 1,
                    "name": parts[-1],
                    "full_name": name,
                    "parent_id": ids[ancestors[0]] if ancestors else None,
                    "attributes": [
                        {
                            "id": attr_by_handle[h]["id"],
                            "name": attr_by_handle[h]["name"],
                            "handle": h,
                            "description": "",
                            "extended": False,
                        }
                        for h in category_attributes.get(name, [])
                    ],
                    "children": [{"id": ids[c], "name": c.rsplit(" > ", 1)[-1]} for c in children],
                    "ancestors": [{"id": ids[a], "name": a.rsplit(" > ", 1)[-1]} for a in ancestors],
                }
            )
        verticals.append({"name": v, "prefix": v.lower(), "categories": cats})
    return {"version": version, "verticals": verticals}, {"version": version, "attributes": attr_docs}


@pytest.fixture(scope="module")
def tree() -> Taxonomy:
    return parse_taxonomy(*build_taxonomy_docs())


@pytest.fixture(scope="module")
def normaliser(tree: Taxonomy) -> ValueNormaliser:
    return ValueNormaliser(tree)


def cat(t: Taxonomy, path: str):  # noqa: ANN201
    c = t.by_full_name(path)
    assert c is not None, path
    return c


def golden(
    gid: str,
    path: str,
    *,
    taxonomy: str = "shopify",
    attributes: dict[str, list[str]] | None = None,
    source: str = "shop/one/export.csv@abc",
) -> dict[str, Any]:
    return {
        "id": gid,
        "title": f"product {gid}",
        "description": "<p>text</p>",
        "image_urls": ["a.png"],
        "vendor": "V",
        "product_type": "T",
        "gold_category_path": path,
        "gold_category_taxonomy": taxonomy,
        "gold_attributes": attributes or {},
        "source": source,
    }


def prediction(
    t: Taxonomy,
    pid: str,
    path: str | None,
    *,
    status: str | None = None,
    attributes: dict[str, list[str]] | None = None,
    score: float = 0.9,
    backed_off_from_depth: int | None = None,
) -> Prediction:
    category = None
    if path is not None:
        c = cat(t, path)
        category = {
            "id": c.id,
            "full_name": c.full_name,
            "score": score,
            "corrected": status == "corrected",
            "raw": path,
            "backed_off_from_depth": backed_off_from_depth,
        }
    attrs = []
    for handle, names in (attributes or {}).items():
        a = t.attributes[handle]
        values = [{"id": v.id, "name": v.name} for v in a.values if v.name in names]
        attrs.append({"handle": handle, "name": a.name, "values": values})
    return Prediction.model_validate(
        {
            "product_id": pid,
            "shop_id": "s",
            "prediction_id": f"p-{pid}",
            "content_hash": "h",
            "model_version": "m-1",
            "taxonomy_version": t.version,
            "category": category,
            "attributes": attrs,
            "status": status or ("unresolved" if path is None else "ok"),
            "predicted_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
    )


# -- hierarchical metrics on the hand-built tree ---------------------------------------------------


def test_lineage_includes_the_vertical_and_excludes_the_implicit_root(tree: Taxonomy) -> None:
    assert lineage_ids(tree, cat(tree, "A > B > C")) == {cat(tree, p).id for p in ("A", "A > B", "A > B > C")}
    assert lineage_ids(tree, cat(tree, "X")) == {cat(tree, "X").id}
    assert lineage_ids(tree, None) == frozenset()


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [
        ("A > B > C", "A > B > D", (2, 3, 3)),  # siblings: share A and A > B
        ("A > B", "A > B > C", (2, 2, 3)),  # too shallow: precise, not complete
        ("A > B > C", "A > B", (2, 3, 2)),  # too deep: complete, not precise
        ("X > Y", "A > E", (0, 2, 2)),  # another vertical: nothing shared (the root is not counted)
        ("A > E", "A > E", (2, 2, 2)),
        (None, "A > B > C", (0, 0, 3)),  # unresolved: α = ∅
    ],
)
def test_hierarchical_counts_per_item(
    tree: Taxonomy, predicted: str | None, gold: str, expected: tuple[int, int, int]
) -> None:
    c = hierarchical_counts(tree, cat(tree, predicted) if predicted else None, cat(tree, gold))
    assert (c.intersection, c.predicted, c.gold) == expected


def test_scores_are_micro_averaged_and_hf_is_the_harmonic_mean() -> None:
    hp, hr, hf = hierarchical_scores(4, 7, 11)
    assert hp == pytest.approx(4 / 7) and hr == pytest.approx(4 / 11)
    assert hf == pytest.approx(2 * hp * hr / (hp + hr)) == pytest.approx(4 / 9)
    assert hierarchical_scores(0, 0, 0) == (None, None, None)  # nothing counted: undefined, not 0
    assert hierarchical_scores(0, 0, 3) == (None, 0.0, 0.0)  # all unresolved: precision undefined
    assert prf(2, 1, 3) == (pytest.approx(2 / 3), pytest.approx(2 / 5), pytest.approx(0.5))


def _five_products(tree: Taxonomy) -> list[Any]:
    """The worked example of docs/EVALUATION.md."""
    gold = [
        golden("p1", "A > B > D"),
        golden("p2", "A > B > C"),
        golden("p3", "A > E", source="shop/two/x.csv@1"),
        golden("p4", "A > B > C", source="shop/two/x.csv@1"),
        golden("p5", "X > Y"),
    ]
    preds = [
        prediction(tree, "p1", "A > B > C"),
        prediction(tree, "p2", "A > B", status="corrected"),
        prediction(tree, "p3", "X > Y"),
        prediction(tree, "p4", None),
        prediction(tree, "p5", "X > Y"),
    ]
    return [parse_golden(g) for g in gold], preds


def test_overall_per_vertical_and_per_depth_on_the_worked_example(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    golds, preds = _five_products(tree)
    m = compute_metrics(score_product(g, p, tree, normaliser) for g, p in zip(golds, preds))
    c = m["category"]
    # Σ|α∩β| = 2+2+0+0+2 = 6, Σ|α| = 3+2+2+0+2 = 9, Σ|β| = 3+3+2+3+2 = 13
    assert c["sums"] == {"intersection": 6, "predicted": 9, "gold": 13}
    assert c["hierarchical_precision"] == pytest.approx(6 / 9)
    assert c["hierarchical_recall"] == pytest.approx(6 / 13)
    assert c["hierarchical_f1"] == pytest.approx(12 / 22)
    assert c["accuracy"] == pytest.approx(1 / 5) and m["n"] == 5
    a = c["per_vertical"]["A"]["category"]
    assert (a["n"], a["exact_matches"]) == (4, 0)
    assert (a["hierarchical_precision"], a["hierarchical_recall"]) == (pytest.approx(4 / 7), pytest.approx(4 / 11))
    x = c["per_vertical"]["X"]["category"]
    assert (x["accuracy"], x["hierarchical_f1"]) == (1.0, 1.0)
    d3, d2 = c["per_depth"]["3"]["category"], c["per_depth"]["2"]["category"]
    assert d3["sums"] == {"intersection": 4, "predicted": 5, "gold": 9}  # p1, p2, p4
    assert d2["sums"] == {"intersection": 2, "predicted": 4, "gold": 4}  # p3, p5
    assert set(c["per_depth"]) == {"2", "3"}
    # rates are over predictions: one corrected, one unresolved of five
    assert m["correction_rate"] == pytest.approx(0.2) and m["unresolved_rate"] == pytest.approx(0.2)
    assert m["status_counts"] == {"ok": 3, "corrected": 1, "unresolved": 1, "missing": 0}
    pairs = {(p["gold"], p["predicted"]): p["count"] for p in c["confusion_pairs"]}
    assert pairs == {
        ("A > B > D", "A > B > C"): 1,
        ("A > B > C", "A > B"): 1,
        ("A > E", "X > Y"): 1,
        ("A > B > C", "(unresolved)"): 1,
    }
    stores = m["per_store"]
    assert set(stores) == {"shop/one", "shop/two"}
    assert stores["shop/two"]["category"]["sums"] == {"intersection": 0, "predicted": 2, "gold": 5}
    assert stores["shop/two"]["unresolved_rate"] == pytest.approx(0.5)


def test_unresolved_hurts_recall_not_precision(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    g = [parse_golden(golden("a", "A > B > C")), parse_golden(golden("b", "A > B > C"))]
    both = compute_metrics(
        [
            score_product(g[0], prediction(tree, "a", "A > B > C"), tree, normaliser),
            score_product(g[1], prediction(tree, "b", "A > B > C"), tree, normaliser),
        ]
    )["category"]
    one_unresolved = compute_metrics(
        [
            score_product(g[0], prediction(tree, "a", "A > B > C"), tree, normaliser),
            score_product(g[1], prediction(tree, "b", None), tree, normaliser),
        ]
    )["category"]
    assert both["hierarchical_precision"] == one_unresolved["hierarchical_precision"] == 1.0
    assert one_unresolved["hierarchical_recall"] == pytest.approx(0.5)
    assert one_unresolved["accuracy"] == pytest.approx(0.5)


def test_a_product_without_prediction_is_missing_and_counts_like_unresolved(
    tree: Taxonomy, normaliser: ValueNormaliser
) -> None:
    s = score_product(parse_golden(golden("a", "A > E")), None, tree, normaliser)
    assert (s.status, s.h_predicted, s.h_gold, s.exact, s.predicted_path) == ("missing", 0, 2, False, "(no prediction)")
    m = compute_metrics([s])
    assert m["status_counts"]["missing"] == 1 and m["missing_rate"] == 1.0
    assert m["correction_rate"] is None  # no predictions: the rate is undefined


# -- attributes ------------------------------------------------------------------------------------


def test_attribute_prf_with_normalisation_unmappable_values_and_missing_handles(
    tree: Taxonomy, normaliser: ValueNormaliser
) -> None:
    gold_attrs = {
        "color-pattern": ["navy-blazer", "red", "striped", "plaidish"],  # metaobject handles; one no value
        "target-gender": ["unisex"],
        "fabric": ["cotton"],  # not an attribute of A > B > C: a miss, not a drop
        "sports-logo": ["x"],  # no such attribute in the taxonomy
    }
    g = parse_golden(golden("a", "A > B > C", attributes=gold_attrs))
    p = prediction(
        tree, "a", "A > B > C", attributes={"color": ["Navy", "Blue"], "target-gender": ["Unisex"], "size": ["Small"]}
    )
    s = score_product(g, p, tree, normaliser)
    assert s.attributes is not None
    rows = {h: (tp, fp, fn) for h, tp, fp, fn in s.attributes.per_attribute}
    assert rows == {"color": (1, 1, 1), "pattern": (0, 0, 1), "target-gender": (1, 0, 0), "fabric": (0, 0, 1)}
    assert s.attributes.unmappable_values == (("color-pattern", "plaidish"),)
    assert s.attributes.unmappable_handles == (("sports-logo", 1),)
    assert s.attributes.unannotated_predicted == 1  # size: the gold does not say
    m = compute_metrics([s])
    a = m["attributes"]
    assert (a["tp"], a["fp"], a["fn"]) == (2, 1, 3)
    assert a["micro_precision"] == pytest.approx(2 / 3) and a["micro_recall"] == pytest.approx(2 / 5)
    assert a["micro_f1"] == pytest.approx(0.5)
    assert a["per_attribute"]["color"]["f1"] == pytest.approx(0.5)
    assert a["per_attribute"]["fabric"]["recall"] == 0.0 and a["per_attribute"]["fabric"]["precision"] is None
    un = m["unmappable"]
    assert un["attribute_values"]["count"] == 1 and un["attribute_values"]["by_handle"] == {
        "color-pattern": {"plaidish": 1}
    }
    assert un["attribute_values"]["examples"] == [{"id": "a", "handle": "color-pattern", "value": "plaidish"}]
    assert un["attribute_handles"] == {"sports-logo": {"records": 1, "values": 1}}
    assert a["unannotated_predicted_values"] == 1


def test_gold_attributes_against_a_category_without_them_are_all_misses(
    tree: Taxonomy, normaliser: ValueNormaliser
) -> None:
    # Predicted A > B > D has only color; the gold annotates target-gender on A > B > C.
    out = score_attributes(
        tree,
        normaliser,
        [("target-gender", ["female", "Male"])],
        [("color", ["x"])],
        cat(tree, "A > B > C"),
        cat(tree, "A > B > D"),
    )
    assert out.per_attribute == (("target-gender", 0, 0, 2),)
    assert out.unannotated_predicted == 1


def test_gold_value_names_and_value_handles_also_map(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    out = score_attributes(
        tree, normaliser, [("size", ["L", "size__small", "Medium"])], [], cat(tree, "A > B > C"), None
    )
    assert out.per_attribute == (("size", 0, 0, 3),) and out.unmappable_values == ()


def test_products_without_gold_attributes_do_not_enter_attribute_metrics(
    tree: Taxonomy, normaliser: ValueNormaliser
) -> None:
    s = score_product(
        parse_golden(golden("a", "A > B > C")),
        prediction(tree, "a", "A > B > C", attributes={"color": ["Red"]}),
        tree,
        normaliser,
    )
    assert s.attributes is None
    m = compute_metrics([s])
    assert m["attributes"]["products"] == 0 and m["attributes"]["micro_f1"] is None


# -- gold labels from another taxonomy, mapping files --------------------------------------------------


def test_gold_in_another_taxonomy_is_unmappable_without_a_mapping(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    records = [
        golden("g1", "Apparel > Shirts", taxonomy="google"),
        golden("g2", "Some > Other", taxonomy="other"),
        golden("g3", "A > Old Name"),  # a Shopify path of another version
        golden("g4", ""),
        golden("g5", "A > E"),
    ]
    scores = [score_product(parse_golden(r), prediction(tree, r["id"], "A > E"), tree, normaliser) for r in records]
    assert [s.gold_resolution for s in scores] == ["unmappable"] * 4 + ["exact"]
    m = compute_metrics(scores)
    assert m["n"] == 5 and m["category"]["n"] == 1  # counted, never dropped; scored only where known
    un = m["unmappable"]["categories"]
    assert un["count"] == 4
    assert un["by_reason"] == {"google_taxonomy": 1, "no_gold_category": 1, "not_in_taxonomy": 1, "other_taxonomy": 1}
    assert [e["id"] for e in un["examples"]] == ["g1", "g2", "g3", "g4"]
    assert {(r["taxonomy"], r["path"]) for r in un["by_path"]} >= {
        ("google", "Apparel > Shirts"),
        ("shopify", "A > Old Name"),
    }


def test_mapping_json_and_csv_map_gold_labels(tree: Taxonomy, normaliser: ValueNormaliser, tmp_path: Path) -> None:
    e_id = cat(tree, "A > E").id
    (tmp_path / "m.json").write_text(
        json.dumps({"Apparel > Shirts": "A > B > C", "a > old name": e_id.rsplit("/", 1)[-1]})
    )
    (tmp_path / "m.csv").write_text(
        f'# google -> shopify\nsource,target\nApparel > Shirts,A > B > C\n"A>Old Name",{e_id}\n'
    )
    (tmp_path / "bare.csv").write_text("Apparel / Shirts,A > B > C\n")
    (tmp_path / "list.json").write_text(json.dumps([{"from": "Apparel > Shirts", "to": "A > B > C"}]))
    for name in ("m.json", "m.csv"):
        mapping = load_mapping(tmp_path / name, tree)
        assert len(mapping) == 2
        s1 = score_product(
            parse_golden(golden("g1", "Apparel  >  shirts", taxonomy="google")),
            prediction(tree, "g1", "A > B > C"),
            tree,
            normaliser,
            mapping,
        )
        s2 = score_product(
            parse_golden(golden("g2", "A > Old Name")), prediction(tree, "g2", "A > B"), tree, normaliser, mapping
        )
        assert (s1.gold_resolution, s1.gold_path, s1.exact) == ("mapped", "A > B > C", True)
        assert (s2.gold_resolution, s2.gold_path) == ("mapped", "A > E")
        s3 = score_product(
            parse_golden(golden("g3", "Never > Seen", taxonomy="google")), None, tree, normaliser, mapping
        )
        assert (s3.gold_resolution, s3.unmappable_reason) == ("unmappable", "google_taxonomy")
        s4 = score_product(parse_golden(golden("g4", "A > Gone")), None, tree, normaliser, mapping)
        assert s4.unmappable_reason == "not_in_mapping"
    assert load_mapping(tmp_path / "list.json", tree).target_id("apparel > shirts") == cat(tree, "A > B > C").id
    assert source_key("Apparel / Shirts") != source_key("Apparel > Shirts")  # "/" occurs inside names
    assert len(load_mapping(tmp_path / "bare.csv", tree)) == 1


def test_mapping_errors_name_the_problem(tree: Taxonomy, tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="not a category of taxonomy test-1"):
        build_mapping([("x", "A > Nope")], tree)
    with pytest.raises(MappingError, match="mapped twice"):
        build_mapping([("x", "A > E"), ("X", "A > B")], tree)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MappingError, match="not valid JSON"):
        load_mapping(tmp_path / "bad.json", tree)
    with pytest.raises(MappingError, match="cannot be read"):
        load_mapping(tmp_path / "absent.csv", tree)
    (tmp_path / "empty.csv").write_text("# nothing\n")
    with pytest.raises(MappingError, match="holds no mappings"):
        load_mapping(tmp_path / "empty.csv", tree)


def test_an_explicit_mapping_wins_over_an_exact_path(tree: Taxonomy) -> None:
    mapping = build_mapping([("A > E", "A > B")], tree)
    r = resolve_gold_category(parse_golden(golden("g", "A > E")), tree, mapping)
    assert (r.method, r.category.full_name if r.category else None) == ("mapped", "A > B")


# -- golden records -----------------------------------------------------------------------------------


def test_golden_record_becomes_a_valid_product_event() -> None:
    g = parse_golden(
        json.dumps(golden("StrikerStore/x#kit", "A > E", source="StrikerStore/order-status-app/p.csv@c0ffee"))
    )
    event = ProductEvent.model_validate(golden_event(g))
    assert (event.event_id, event.product_id, event.shop_id) == (
        "StrikerStore/x#kit",
        "StrikerStore/x#kit",
        "StrikerStore/order-status-app",
    )
    assert event.product is not None
    assert event.product.description_html == "<p>text</p>" and event.product.image_urls == ("a.png",)
    assert (event.product.vendor, event.product.product_type) == ("V", "T")
    assert ProductEvent.model_validate(golden_event(g, include_images=False)).product.image_urls == ()  # type: ignore[union-attr]
    many = parse_golden({**golden("m", "A"), "image_urls": [f"{i}.png" for i in range(80)], "title": "t" * 5000})
    assert ProductEvent.model_validate(golden_event(many)).product is not None  # cut to the record's limits


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"title": "x"}', "'id' is missing"),
        (b'{"id": "a", "gold_attributes": []}', "gold_attributes"),
        (b'{"id": "a", "image_urls": [1]}', "image_urls"),
        (b'{"id": "a", "title": 5}', "'title' must be a string"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_golden_records_are_refused_with_the_reason(raw: bytes, message: str) -> None:
    with pytest.raises(GoldenRecordError, match=message):
        parse_golden(raw)


def test_store_is_owner_and_repo_of_the_source() -> None:
    assert store_of("otwd-srb/olt-jewellery/# Radni/products_export_1.csv@5c2a") == "otwd-srb/olt-jewellery"
    assert store_of("") == "(unknown)" and store_of("solo") == "solo"


# -- calibration, coverage, back-off ---------------------------------------------------------------------


def _calibration_products(tree: Taxonomy, normaliser: ValueNormaliser) -> list[Any]:
    """Six products, two stores (gold, answer, score; 15 bins of width 1/15):

    | id | store | gold      | answer                  | score | bin | lineage | exact |
    |----|-------|-----------|-------------------------|-------|-----|---------|-------|
    | c1 | one   | A > B > C | A > B > C               | 0.90  | 13  | yes     | yes   |
    | c2 | one   | A > B > D | A > B > C               | 0.92  | 13  | no      | no    |
    | c3 | two   | A > B > C | A > B (backed off, d 3) | 0.70  | 10  | yes     | no    |
    | c4 | two   | A > E     | X > Y                   | 0.10  | 1   | no      | no    |
    | c5 | two   | X > Y     | X > Y                   | 0.95  | 14  | yes     | yes   |
    | c6 | one   | A > B > C | unresolved (no score)   | -     | -   | -       | -     |
    """
    two = "shop/two/x.csv@1"
    rows = [
        (golden("c1", "A > B > C"), prediction(tree, "c1", "A > B > C", score=0.9)),
        (golden("c2", "A > B > D"), prediction(tree, "c2", "A > B > C", score=0.92)),
        (golden("c3", "A > B > C", source=two), prediction(tree, "c3", "A > B", score=0.7, backed_off_from_depth=3)),
        (golden("c4", "A > E", source=two), prediction(tree, "c4", "X > Y", score=0.1)),
        (golden("c5", "X > Y", source=two), prediction(tree, "c5", "X > Y", score=0.95)),
        (golden("c6", "A > B > C"), prediction(tree, "c6", None)),
    ]
    return [score_product(parse_golden(g), p, tree, normaliser) for g, p in rows]


def test_ece_by_hand_with_lineage_and_exact_correctness(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    m = compute_metrics(_calibration_products(tree, normaliser))
    cal = m["category"]["calibration"]
    # Bin 13: conf (0.90 + 0.92)/2 = 0.91, accuracy 1/2 -> gap 0.41 (n 2). Bin 10: c3 is on
    # the gold lineage (A > B is an ancestor of A > B > C): gap |1 - 0.7| = 0.3, exact gap 0.7.
    # Bin 1: 0.1. Bin 14: 0.05. N = 5 (the unresolved c6 has no score).
    assert cal["n"] == 5 and cal["bins"] == 15
    assert cal["ece"] == pytest.approx((2 * 0.41 + 0.3 + 0.1 + 0.05) / 5)  # 0.254
    assert cal["ece_exact"] == pytest.approx((2 * 0.41 + 0.7 + 0.1 + 0.05) / 5)  # 0.334
    assert cal["mce"] == pytest.approx(0.41)
    assert cal["brier"] == pytest.approx((0.01 + 0.92**2 + 0.09 + 0.01 + 0.0025) / 5)
    assert cal["mean_confidence"] == pytest.approx(3.57 / 5)
    assert (cal["lineage_accuracy"], cal["exact_accuracy"]) == (pytest.approx(3 / 5), pytest.approx(2 / 5))
    table = {r["bin"]: r for r in cal["reliability"]}
    assert len(table) == 15 and sum(r["n"] for r in table.values()) == 5
    assert (table[13]["n"], table[13]["mean_confidence"], table[13]["lineage_accuracy"]) == (
        2,
        pytest.approx(0.91),
        0.5,
    )
    assert (table[10]["lineage_accuracy"], table[10]["exact_accuracy"]) == (1.0, 0.0)
    assert table[0]["n"] == 0 and table[0]["mean_confidence"] is None
    assert (table[14]["lower"], table[14]["upper"]) == (pytest.approx(14 / 15), 1.0)
    # Per store: one = {c1, c2} in bin 13 -> 0.41; two = {c3, c4, c5} -> (0.3 + 0.1 + 0.05)/3.
    stores = m["per_store"]
    assert stores["shop/one"]["category"]["calibration"]["ece"] == pytest.approx(0.41)
    assert stores["shop/two"]["category"]["calibration"]["ece"] == pytest.approx(0.15)
    verticals = m["category"]["per_vertical"]
    assert verticals["X"]["category"]["calibration"]["ece"] == pytest.approx(0.05)
    assert "reliability" not in verticals["X"]["category"]["calibration"]  # the table is overall only


def test_a_perfectly_calibrated_set_has_zero_ece() -> None:
    # 10 answers at 0.8 in one bin, 8 of them right; 4 at 0.25, 1 right.
    histogram = {8000: [10, 8, 8, 0, 0, 0], 2500: [4, 1, 1, 0, 0, 0]}
    cal = calibration_summary(histogram)
    assert cal["ece"] == 0.0 and cal["mce"] == 0.0
    assert calibration_summary({})["ece"] is None  # nothing scored: undefined, not 0


def test_calibration_bins_are_equal_width_and_the_last_holds_one() -> None:
    assert [calibration_bin(quantise_score(x)) for x in (0.0, 0.05, 0.0667, 0.5, 0.99, 1.0)] == [0, 0, 1, 7, 14, 14]
    assert quantise_score(1.7) == SCORE_SCALE and quantise_score(-0.1) == 0


def test_coverage_curve_by_hand(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    m = compute_metrics(_calibration_products(tree, normaliser))
    rows = {round(r["target"] * 100): r for r in m["category"]["coverage"]}
    assert sorted(rows) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    # 6 scored products; by score: c5 0.95, c2 0.92, c1 0.90, c3 0.70, c4 0.10; c6 never covered.
    r10 = rows[10]  # ⌈0.6⌉ = 1 product: c5
    assert (r10["n"], r10["threshold"], r10["coverage"], r10["accuracy"]) == (1, 0.95, pytest.approx(1 / 6), 1.0)
    r20 = rows[20]  # ⌈1.2⌉ = 2: c5, c2 (Σ|α∩β| 2+2, Σ|α| 2+3, Σ|β| 2+3)
    assert (r20["n"], r20["threshold"], r20["accuracy"]) == (2, 0.92, 0.5)
    assert (r20["hierarchical_precision"], r20["hierarchical_recall"]) == (pytest.approx(4 / 5), pytest.approx(4 / 5))
    assert rows[30]["n"] == 2  # ⌈1.8⌉ = 2
    r60 = rows[60]  # ⌈3.6⌉ = 4: + c1 (3, 3, 3) + c3 (2, 2, 3)
    assert (r60["n"], r60["threshold"], r60["accuracy"], r60["lineage_accuracy"]) == (4, 0.7, 0.5, 0.75)
    assert (r60["hierarchical_precision"], r60["hierarchical_recall"]) == (pytest.approx(9 / 10), pytest.approx(9 / 11))
    r100 = rows[100]  # all five answers: + c4 (0, 2, 2); the unresolved c6 is never covered
    assert (r100["n"], r100["threshold"], r100["coverage"]) == (5, 0.1, pytest.approx(5 / 6))
    assert (r100["hierarchical_precision"], r100["hierarchical_recall"]) == (
        pytest.approx(9 / 12),
        pytest.approx(9 / 13),
    )
    assert r100["hierarchical_f1"] == pytest.approx(18 / 25)


def test_coverage_keeps_ties_at_the_threshold_together() -> None:
    histogram = {9000: [2, 2, 2, 4, 4, 4], 5000: [2, 0, 0, 0, 2, 2]}
    rows = coverage_curve(histogram, 4, percents=(10, 50, 75, 100))
    assert [(r["n"], r["threshold"]) for r in rows] == [(2, 0.9), (2, 0.9), (4, 0.5), (4, 0.5)]
    assert rows[0]["coverage"] == 0.5  # the target was 10 %: both tied products go in
    assert coverage_curve({}, 0) == []


def test_back_off_summary(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    b = compute_metrics(_calibration_products(tree, normaliser))["category"]["back_off"]
    # c3 backed off from a depth-3 leaf to A > B (depth 2): on the gold lineage, not exact.
    assert (b["n"], b["rate"], b["accuracy"], b["lineage_accuracy"]) == (1, pytest.approx(1 / 5), 0.0, 1.0)
    assert (b["hierarchical_precision"], b["hierarchical_recall"]) == (1.0, pytest.approx(2 / 3))
    assert [(r["from_depth"], r["to_depth"], r["n"]) for r in b["by_depth"]] == [(3, 2, 1)]
    rest = b["not_backed_off"]  # c1, c2, c4, c5: Σ|α∩β| 3+2+0+2, Σ|α| 3+3+2+2, Σ|β| 3+3+2+2
    assert (rest["n"], rest["accuracy"], rest["hierarchical_precision"]) == (4, 0.5, pytest.approx(7 / 10))
    # Without any back-off the summary is there and empty.
    golds, preds = _five_products(tree)
    none = compute_metrics(score_product(g, p, tree, normaliser) for g, p in zip(golds, preds))["category"]["back_off"]
    assert (none["n"], none["by_depth"], none["rate"]) == (0, [], 0.0)


def test_calibration_and_coverage_merge_like_one_pass(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    scores = _calibration_products(tree, normaliser) + _calibration_products(tree, normaliser)[:3]
    fn = EvaluationCombineFn()
    whole = EvalAccumulator()
    for s in scores:
        whole.add(s)
    for split in (2, 3):
        parts = [EvalAccumulator() for _ in range(split)]
        for i, s in enumerate(reversed(scores)):
            parts[i % split].add(s)
        merged = fn.extract_output(fn.merge_accumulators(parts))
        # Exactly equal, floats included: the sums are integers until the last division.
        assert merged == whole.to_metrics()
        for key in ("calibration", "coverage", "back_off"):
            assert merged["category"][key] == whole.to_metrics()["category"][key]
    assert whole.to_metrics()["category"]["calibration"]["n"] == 8


def test_report_shows_calibration_coverage_and_back_off(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    html = render_report(compute_metrics(_calibration_products(tree, normaliser)))
    assert "ECE 0.254 (exact node: 0.334)" in html
    assert "depth 3 → 2" in html and "[0.933, 1.000]" in html
    coverage = html.split('id="coverage"', 1)[1].split("</table>", 1)[0]
    assert coverage.count("<tr>") == 11  # header + 10 coverage levels
    assert "0.9500" in coverage  # the 10 % threshold


# -- aggregation: CombineFn merge order, Beam wiring ---------------------------------------------------


def test_accumulator_merge_is_order_independent(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    golds, preds = _five_products(tree)
    scores: list[Any] = [score_product(g, p, tree, normaliser) for g, p in zip(golds, preds)]
    scores.append(InputNote("prediction_without_gold", "zz"))
    fn = EvaluationCombineFn(top_n=3)
    whole = fn.extract_output(fn.merge_accumulators([EvalAccumulator().add(s) for s in scores]))
    parts = [EvalAccumulator(), EvalAccumulator()]
    for i, s in enumerate(reversed(scores)):
        parts[i % 2].add(s)
    assert fn.extract_output(fn.merge_accumulators(parts)) == whole
    assert len(whole["category"]["confusion_pairs"]) == 3
    assert whole["inputs"]["prediction_without_gold"] == 1


def test_evaluate_transform_joins_by_product_id(tree: Taxonomy, normaliser: ValueNormaliser, tmp_path: Path) -> None:
    cats, attrs = build_taxonomy_docs()
    (tmp_path / "categories.json").write_text(json.dumps(cats))
    (tmp_path / "attributes.json").write_text(json.dumps(attrs))
    golds, preds = _five_products(tree)
    # p5 gets no prediction (missing); p2 has an older duplicate that must lose; "stray"
    # has no golden product.
    older = preds[1].model_copy(
        update={"predicted_at": datetime(2020, 1, 1, tzinfo=UTC), "category": None, "status": "unresolved"}
    )
    stray = preds[0].model_copy(update={"product_id": "stray"})
    acc = EvalAccumulator()
    for g, pr in zip(golds, [*preds[:4], None]):
        acc.add(score_product(g, pr, tree, normaliser))
    acc.add(InputNote("duplicate_prediction", "p2"))
    acc.add(InputNote("prediction_without_gold", "stray"))
    expected = acc.to_metrics()
    assert expected["status_counts"]["missing"] == 1 and expected["inputs"]["duplicate_prediction"] == 1

    p = BeamTestPipeline(runner=FnApiRunner())
    out = {
        "golden": p | "G" >> beam.Create(golds),
        "predictions": p | "P" >> beam.Create([*preds[:4], older, stray]),
    } | EvaluatePredictions(str(tmp_path))
    assert_that(out["metrics"], equal_to([expected]))
    p.run().wait_until_finish()


# -- report ----------------------------------------------------------------------------------------------


def test_report_is_self_contained_and_escapes_data(tree: Taxonomy, normaliser: ValueNormaliser) -> None:
    golds, preds = _five_products(tree)
    scores: list[Any] = [score_product(g, p, tree, normaliser) for g, p in zip(golds, preds)]
    scores.append(
        score_product(
            parse_golden(golden("evil", "<script>alert(1)</script>", taxonomy="other")), None, tree, normaliser
        )
    )
    html = render_report(compute_metrics(scores))
    assert html.startswith("<!DOCTYPE html>")
    for ident in (
        'id="headline"',
        'id="chart-vertical-hf1"',
        'id="chart-depth"',
        'id="chart-rates"',
        'id="confusion"',
        'id="per-store"',
        'id="attributes"',
        'id="unmappable-categories"',
        'id="chart-reliability"',
        'id="reliability"',
        'id="chart-coverage"',
        'id="coverage"',
        'id="back-off"',
    ):
        assert ident in html
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<link" not in html


# -- the evaluate job on files (--predictions: no model) -------------------------------------------------


@pytest.fixture()
def files(tree: Taxonomy, tmp_path: Path) -> dict[str, Path]:
    cats, attrs = build_taxonomy_docs()
    tax = tmp_path / "tax"
    tax.mkdir()
    (tax / "categories.json").write_text(json.dumps(cats))
    (tax / "attributes.json").write_text(json.dumps(attrs))
    golds, preds = _five_products(tree)
    records = [golden(g.id, g.gold_category_path, source=g.source) for g in golds]
    records.append(golden("g6", "Apparel > Shirts", taxonomy="google"))
    (tmp_path / "golden.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "predictions.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in preds))
    (tmp_path / "map.csv").write_text("source,target\nApparel > Shirts,A > B > C\n")
    return {
        "taxonomy": tax,
        "golden": tmp_path / "golden.jsonl",
        "predictions": tmp_path / "predictions.jsonl",
        "mapping": tmp_path / "map.csv",
        "out": tmp_path / "out",
    }


def test_run_on_existing_predictions_writes_metrics_and_report(
    files: dict[str, Path], tree: Taxonomy, normaliser: ValueNormaliser
) -> None:
    seen: list[int] = []
    result = run(
        evaluation_options(
            str(files["golden"]),
            str(files["out"]),
            taxonomy=str(files["taxonomy"]),
            predictions=str(files["predictions"]),
        ),
        on_progress=seen.append,
    )
    m = json.loads((files["out"] / "metrics.json").read_text())
    assert m == result.metrics
    golds, preds = _five_products(tree)
    expected = compute_metrics(score_product(g, p, tree, normaliser) for g, p in zip(golds, preds))
    assert m["category"]["sums"] == expected["category"]["sums"]
    assert m["n"] == 6 and m["status_counts"]["missing"] == 1  # g6 has no prediction
    assert m["unmappable"]["categories"]["by_reason"] == {"google_taxonomy": 1}
    assert m["latency"] is None and m["model_calls_per_product"] is None  # no model ran here
    assert m["run"]["model_version"] == "m-1" and m["run"]["taxonomy_version"] == "test-1"
    assert sum(seen) == 6
    assert 'id="headline"' in (files["out"] / "report.html").read_text()
    assert not (files["out"] / "predictions.jsonl").exists()

    mapped = run(
        evaluation_options(
            str(files["golden"]),
            str(files["out"]),
            taxonomy=str(files["taxonomy"]),
            predictions=str(files["predictions"]),
            mapping=str(files["mapping"]),
            limit=6,
        )
    ).metrics
    assert mapped["unmappable"]["categories"]["count"] == 0 and mapped["category"]["gold_resolution"]["mapped"] == 1
    assert mapped["category"]["n"] == 6 and mapped["run"]["mapping_entries"] == 1


def _cli(args: list[str]) -> Any:
    app = typer.Typer()
    app.command("evaluate")(evaluate_command)
    app.command("noop")(lambda: None)  # a second command keeps `evaluate` a subcommand, as in the real CLI
    return CliRunner().invoke(app, ["evaluate", *args])


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda f: f["golden"].unlink(), "does not exist"),
        (lambda f: f["golden"].write_text(f["golden"].read_text() + "{oops\n"), "line 7: not JSON"),
        (lambda f: f["golden"].write_text((f["golden"].read_text().splitlines()[0] + "\n") * 2), "repeats line 1"),
        (lambda f: f["golden"].write_text("\n"), "holds no records"),
        (lambda f: f["predictions"].write_text('{"product_id": "p1"}\n'), "line 1 is not a Prediction"),
        (lambda f: f["mapping"].write_text("source,target\nx,Nowhere > Else\n"), "not a category of taxonomy test-1"),
    ],
)
def test_bad_input_files_exit_non_zero_with_a_clear_message(
    files: dict[str, Path], break_it: Any, message: str
) -> None:
    break_it(files)
    result = _cli(
        [
            "--golden",
            str(files["golden"]),
            "--out",
            str(files["out"]),
            "--taxonomy",
            str(files["taxonomy"]),
            "--predictions",
            str(files["predictions"]),
            "--mapping",
            str(files["mapping"]),
        ]
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (files["out"] / "metrics.json").exists()


def test_cli_prints_the_summary(files: dict[str, Path]) -> None:
    result = _cli(
        [
            "--golden",
            str(files["golden"]),
            "--out",
            str(files["out"]),
            "--taxonomy",
            str(files["taxonomy"]),
            "--predictions",
            str(files["predictions"]),
        ]
    )
    assert result.exit_code == 0, result.output
    for text in ("hierarchical F1", "per store", "shop/one", "per vertical"):
        assert text in result.output
