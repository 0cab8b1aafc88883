"""The baseline's classification method: tokens, fusion, tree masses, calibration, back-off,
and products written in other languages (issue 12, items 2-4).

The multilingual and English checks run the real default model over the bundled full
taxonomy (shipped category index, so a few seconds); the rest use small hand-made arrays.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_repository.contract import ModelProduct, ModelRequest, Task, parse_classify_answer
from model_repository.product_baseline.calibration import Calibrator, fit_platt
from model_repository.product_baseline.engine import BaselineModel
from model_repository.product_baseline.retrieval import CategoryTree, head_key, lexical_tokens, word_keys
from taxonomy.loader import SAMPLE_TAXONOMY_DIR, load_taxonomy

# -- tokens ------------------------------------------------------------------------------------


def test_lexical_tokens_fold_accents_strip_plurals_and_add_prefixes() -> None:
    tokens = lexical_tokens("Camisetas de Fútbol")
    assert "camisetas" in tokens and "camiseta" in tokens and "camis~" in tokens
    assert "futbol" in tokens  # accents folded, so "futbol" and "fútbol" meet
    assert "de" not in tokens  # a stopword
    assert lexical_tokens("Scarves") == ["scarves", "scarf", "scarf~"]


def test_lexical_tokens_split_cjk_into_characters_and_bigrams() -> None:
    tokens = lexical_tokens("腕時計")
    assert {"腕", "時", "計", "腕時", "時計"} <= set(tokens)


def test_word_keys_and_head_nouns() -> None:
    assert word_keys("Women's Floral Dresses") == {"women", "flora", "dress"}
    assert head_key("Women's floral midi dress - red", head_first=False) == "dress"
    assert head_key("Silk scarf, 70 x 12 in", head_first=False) == "scarf"
    assert head_key("Anillo de plata con circonitas", head_first=True) == "anill"
    assert head_key("2025", head_first=False) is None


# -- the tree ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_tree() -> tuple[CategoryTree, dict[str, int]]:
    taxonomy = load_taxonomy(SAMPLE_TAXONOMY_DIR)
    tree = CategoryTree.of(taxonomy)
    return tree, {taxonomy.categories[cid].full_name: i for i, cid in enumerate(tree.ids)}


def test_masses_sum_own_probabilities_over_each_subtree(sample_tree) -> None:
    tree, index = sample_tree
    own = np.zeros((1, len(tree.ids)), dtype=np.float32)
    rings = index["Apparel & Accessories > Jewelry > Rings"]
    earrings = index["Apparel & Accessories > Jewelry > Earrings"]
    jewelry = index["Apparel & Accessories > Jewelry"]
    own[0, [rings, earrings, jewelry]] = [0.3, 0.2, 0.1]
    own[0, index["Electronics"]] = 0.4
    mass = tree.masses(own)[0]
    assert mass[jewelry] == pytest.approx(0.6)
    assert mass[index["Apparel & Accessories"]] == pytest.approx(0.6)
    assert mass[rings] == pytest.approx(0.3)
    assert sum(mass[r] for r in tree.roots) == pytest.approx(1.0)


def test_a_confident_parent_is_not_lost_to_a_diffuse_set_of_leaves(sample_tree) -> None:
    """The single best leaf is in Electronics, but Jewelry's leaves together outweigh it:
    the descent answers within Jewelry (argmax over leaves would answer Electronics)."""
    tree, index = sample_tree
    own = np.zeros(len(tree.ids), dtype=np.float32)
    jewelry_leaves = [c for c in tree.children[index["Apparel & Accessories > Jewelry"]] if not tree.children[c]]
    own[jewelry_leaves[:6]] = 0.1  # 0.6 spread over six jewellery leaves
    own[index["Electronics"]] = 0.4
    mass = tree.masses(own[None])[0]
    best = tree.descend(own, mass)
    assert best in jewelry_leaves
    assert int(np.argmax(own)) == index["Electronics"]


def test_the_descent_stops_at_a_node_whose_own_probability_beats_its_children(sample_tree) -> None:
    tree, index = sample_tree
    own = np.zeros(len(tree.ids), dtype=np.float32)
    jewelry = index["Apparel & Accessories > Jewelry"]
    own[jewelry] = 0.5
    own[index["Apparel & Accessories > Jewelry > Rings"]] = 0.3
    own[index["Electronics"]] = 0.2
    assert tree.descend(own, tree.masses(own[None])[0]) == jewelry


# -- calibration and back-off ----------------------------------------------------------------------


def test_platt_fit_recovers_a_known_calibration() -> None:
    rng = np.random.default_rng(7)
    masses = rng.uniform(0.05, 0.999, size=4000)
    truth = Calibrator(slope=0.6, intercept=-0.4)
    correct = [rng.random() < truth.probability(m) for m in masses]
    fitted = fit_platt(masses.tolist(), correct)
    assert fitted.slope == pytest.approx(0.6, abs=0.1)
    assert fitted.intercept == pytest.approx(-0.4, abs=0.15)
    probabilities = [fitted.probability(m) for m in (0.1, 0.5, 0.9, 0.99)]
    assert probabilities == sorted(probabilities)  # monotone in the mass
    assert Calibrator().probability(0.3) == pytest.approx(0.3)  # identity by default


@pytest.fixture(scope="module")
def sample_model() -> BaselineModel:
    return BaselineModel(load_taxonomy(SAMPLE_TAXONOMY_DIR), calibrator=Calibrator())


def test_backs_off_to_the_deepest_ancestor_that_clears_the_threshold(sample_model: BaselineModel) -> None:
    tree = sample_model.retriever.tree
    index = {sample_model.taxonomy.categories[cid].full_name: i for i, cid in enumerate(tree.ids)}
    own = np.zeros(len(tree.ids), dtype=np.float32)
    rings = index["Apparel & Accessories > Jewelry > Rings"]
    own[rings] = 0.35
    own[index["Apparel & Accessories > Jewelry > Earrings"]] = 0.3
    own[index["Apparel & Accessories > Jewelry > Necklaces"]] = 0.15
    own[index["Electronics"]] = 0.2
    mass = tree.masses(own[None])[0]

    sample_model.backoff_threshold = 0.5
    ranking = sample_model._decide(own, mass)
    assert tree.ids[ranking.index] == sample_model.taxonomy.by_full_name("Apparel & Accessories > Jewelry").id
    assert ranking.backed_off_from_depth == 3  # Rings is at depth 3 (root = 1)
    assert ranking.probability == pytest.approx(0.8, abs=1e-6)

    sample_model.backoff_threshold = 0.0  # never back off
    ranking = sample_model._decide(own, mass)
    assert ranking.index == rings and ranking.backed_off_from_depth is None
    assert ranking.candidates[0] == (rings, pytest.approx(0.35))


# -- the default model over the full taxonomy ------------------------------------------------------


@pytest.fixture(scope="module")
def default_model() -> BaselineModel:
    return BaselineModel()  # the bundled full 2024-07 taxonomy with its 13 locales


def _classify(model: BaselineModel, product: ModelProduct) -> dict:
    request = ModelRequest(task=Task.CLASSIFY, product=product).model_dump_json().encode()
    return json.loads(model.infer_batch([(request, None)])[0])


# (localized title, localized product type, English title, English product type, the leaf both
# must reach). Written for this test, not taken from any dataset.
LANGUAGES = [
    ("Anillo de plata con circonitas", "Anillos", "Silver ring with cubic zirconia", "Rings", "Rings"),
    ("Silla de oficina ergonómica", "Sillas", "Ergonomic office chair", "Chairs", "Chairs"),
    ("Champú de argán 500 ml", "Champú", "Argan shampoo 500 ml", "Shampoo", "Shampoo"),
    ("Hundespielzeug aus Gummi", "Hundespielzeug", "Rubber dog toy", "Dog toys", "Dog Toys"),
    ("Damen Lederhandtasche", "Handtaschen", "Women's leather handbag", "Handbags", "Handbags"),
    ("メンズ 腕時計 ステンレス", "腕時計", "Men's stainless steel wrist watch", "Watches", "Watches"),
    ("ステンレス 水筒 500ml", "水筒", "Stainless steel water bottle 500 ml", "Water bottles", "Water Bottles"),
    ("女士 真皮 手提包", "手提包", "Women's leather handbag", "Handbags", "Handbags"),
]


@pytest.mark.parametrize("title, product_type, english_title, english_type, leaf", LANGUAGES)
def test_a_product_in_another_language_is_classified_like_its_english_twin(
    default_model: BaselineModel, title: str, product_type: str, english_title: str, english_type: str, leaf: str
) -> None:
    localized = _classify(default_model, ModelProduct(title=title, product_type=product_type))
    english = _classify(default_model, ModelProduct(title=english_title, product_type=english_type))
    assert leaf in english["category"], english
    assert leaf in localized["category"], localized


def test_answers_carry_calibrated_probability_and_candidates_the_contract_reads(default_model: BaselineModel) -> None:
    answer = _classify(default_model, ModelProduct(title="Gold hoop earrings", product_type="Earrings"))
    parsed = parse_classify_answer(json.dumps(answer))
    assert parsed.category == "Apparel & Accessories > Jewelry > Earrings"
    assert 0.5 <= parsed.confidence <= 1.0
    assert parsed.candidates[0].category == parsed.category
    assert len(parsed.candidates) == default_model.top_k
    assert [c.score for c in parsed.candidates] == sorted((c.score for c in parsed.candidates), reverse=True)


@pytest.mark.parametrize(
    "product",
    [
        ModelProduct(title="Produkt 7781"),  # a language the taxonomy lacks words for, no type
        ModelProduct(title="Zzxq vlorp"),
        ModelProduct(title="T-shirt", product_type="Camisetas"),  # the type in another language
        ModelProduct(title="!!!", description=""),
    ],
)
def test_odd_products_get_a_category_never_an_error(default_model: BaselineModel, product: ModelProduct) -> None:
    answer = _classify(default_model, product)
    assert "error" not in answer
    assert default_model.taxonomy.by_full_name(answer["category"]) is not None
    assert 0.0 <= answer["confidence"] <= 1.0
    if "backed_off_from_depth" in answer:
        assert answer["backed_off_from_depth"] > answer["category"].count(" > ") + 1


def test_the_same_product_gets_the_same_answer_alone_or_in_any_batch(default_model: BaselineModel) -> None:
    products = [ModelProduct(title=t) for t in ("Silk scarf", "Leather belt", "Yoga mat", "Ceramic coffee mug")]
    requests = [(ModelRequest(task=Task.CLASSIFY, product=p).model_dump_json().encode(), None) for p in products]
    together = default_model.infer_batch(requests)
    alone = [default_model.infer_batch([r])[0] for r in requests]
    reversed_batch = default_model.infer_batch(requests[::-1])[::-1]
    assert together == alone == reversed_batch


def test_a_product_that_matches_nothing_well_gets_a_low_probability(default_model: BaselineModel) -> None:
    """The "none of them" option of the softmax: a weak best match is not a sure one."""
    gibberish = default_model.rank([ModelProduct(title="Zzxq vlorp")])[0]
    clear = default_model.rank([ModelProduct(title="Gold hoop earrings", product_type="Earrings")])[0]
    assert gibberish.probability < 0.2 < 0.9 < clear.probability
    assert gibberish.backed_off_from_depth is not None  # answered a coarse ancestor


def test_english_words_that_look_foreign_are_not_pseudo_translated(default_model: BaselineModel) -> None:
    retriever = default_model.retriever
    # "course" is French for race, yet this title is English.
    assert retriever._lexical(ModelProduct(title="Online Yoga Course", product_type="Course"))[1:] == ("", "en")
    translated, locale = retriever._lexical(ModelProduct(title="Anillo de plata", product_type="Anillos"))[1:]
    assert locale == "es" and "Rings" in translated
