"""CategoryCorrector: each rule, the threshold / unresolved path, and rejects.

Most tests run on the bundled 840-category sample (SAMPLE_TAXONOMY_DIR, fast); a few run on
the full 10,281-category tree in ../shared and skip with a reason when it is absent.
Localized paths are tested in test_taxonomy_locales.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from taxonomy.corrector import CategoryCorrection, CategoryCorrector, split_path, stem_key
from taxonomy.loader import SAMPLE_TAXONOMY_DIR, load_taxonomy

FULL_TREE = Path(__file__).resolve().parents[3] / "shared" / "taxonomy" / "shopify-2024-07"
needs_full_tree = pytest.mark.skipif(not FULL_TREE.exists(), reason="../shared taxonomy not present")

DRESSES = "Apparel & Accessories > Clothing > Dresses"
TOPS_TEES = "Apparel & Accessories > Clothing > Clothing Tops > T-Shirts"
MATERNITY_TEES = "Apparel & Accessories > Clothing > Maternity Clothing > Maternity Tops > T-Shirts"
SMART_WATCHES = "Apparel & Accessories > Jewelry > Smart Watches"


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy(SAMPLE_TAXONOMY_DIR)


@pytest.fixture(scope="module")
def corrector(taxonomy):
    return CategoryCorrector(taxonomy)


@pytest.fixture(scope="module")
def full_corrector():
    return CategoryCorrector(load_taxonomy(FULL_TREE))


def _name(result: CategoryCorrection) -> str | None:
    return result.category.full_name if result.category else None


# -- rule 1: exact path / id -------------------------------------------------------------


def test_exact_full_path_is_not_corrected(corrector):
    r = corrector.correct(DRESSES)
    assert _name(r) == DRESSES
    assert (r.method, r.corrected, r.score, r.resolved, r.raw) == ("exact_path", False, 1.0, True, DRESSES)


@pytest.mark.parametrize(
    "raw", ["apparel & accessories > clothing > dresses", "  Apparel &  Accessories >  Clothing > DRESSES  "]
)
def test_exact_path_ignores_case_and_whitespace(corrector, raw):
    r = corrector.correct(raw)
    assert _name(r) == DRESSES and r.method == "exact_path" and not r.corrected


@pytest.mark.parametrize("raw", ["gid://shopify/TaxonomyCategory/aa-1-4", "aa-1-4"])
def test_gid_and_short_id_are_exact(corrector, taxonomy, raw):
    r = corrector.correct(raw)
    assert r.category == taxonomy.get("aa-1-4")
    assert _name(r) == DRESSES and r.method == "exact_path" and not r.corrected


@pytest.mark.parametrize(
    "raw",
    [
        "Apparel & Accessories>Clothing>Dresses",
        "Apparel & Accessories / Clothing / Dresses",
        "Apparel & Accessories › Clothing › Dresses",
        "Apparel & Accessories - Clothing - Dresses",
        "Apparel & Accessories | Clothing | Dresses",
        "Apparel & Accessories -> Clothing -> Dresses",
    ],
)
def test_other_separators_are_an_exact_path_respelt(corrector, raw):
    r = corrector.correct(raw)
    assert _name(r) == DRESSES
    assert r.method == "exact_path" and r.corrected and r.score == 1.0


def test_split_path_keeps_hyphenated_names_whole():
    assert split_path("Apparel & Accessories > Clothing Tops > T-Shirts") == [
        "Apparel & Accessories",
        "Clothing Tops",
        "T-Shirts",
    ]
    assert split_path("A - B - T-Shirts") == ["A", "B", "T-Shirts"]
    assert split_path("T-Shirts") == ["T-Shirts"]


def test_stem_key_is_inflection_insensitive():
    assert stem_key("Dresses") == stem_key("dress")
    assert stem_key("Hoodies") == stem_key("Hoodie")
    assert stem_key("Women's T-Shirts") == stem_key("womens t shirt")
    assert stem_key("Shoes and Boots") == stem_key("Shoe & Boot")
    assert stem_key("Dress") != stem_key("Dresser")


# -- rule 2: unique leaf ---------------------------------------------------------------------


def test_unique_leaf_name_alone(corrector):
    r = corrector.correct("Dresses")
    assert _name(r) == DRESSES
    assert r.method == "unique_leaf" and r.corrected and r.score == 1.0


def test_unique_leaf_under_a_wrong_path_is_still_recovered(corrector):
    r = corrector.correct("Baby & Toddler > Baby Toys > Sofas")
    assert _name(r) == "Furniture > Sofas"
    assert r.method == "unique_leaf"
    # The path disagrees completely, so the score is the unique-leaf floor, not 1.
    assert r.score == pytest.approx(0.9)


def test_unique_leaf_score_rises_with_path_consistency(corrector):
    wrong = corrector.correct("Baby & Toddler > Baby Toys > Sofas").score
    near = corrector.correct("Apparel & Accessories > Clothing > Skirts > Dresses").score
    assert 0.9 <= wrong < near < 1.0


def test_a_strict_threshold_sends_inconsistent_unique_leaves_to_review(taxonomy):
    strict = CategoryCorrector(taxonomy, threshold=0.95)
    r = strict.correct("Baby & Toddler > Baby Toys > Sofas")
    assert r.category is None and r.method == "unresolved" and not r.resolved


def test_a_leaf_shared_by_several_categories_alone_is_unresolved(corrector, taxonomy):
    assert len(taxonomy.by_leaf_name("T-Shirts")) > 1
    r = corrector.correct("T-Shirts")
    assert r.category is None and r.method == "unresolved"


# -- rule 3: fuzzy with path consistency -----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # wrong intermediate level, leaf spelt differently (the design's example)
        ("Apparel & Accessories > Watches > Smartwatches", SMART_WATCHES),
        # dropped level
        ("Apparel & Accessories > Clothing Tops > T-Shirts", TOPS_TEES),
        ("Clothing > Maternity Tops > T-Shirts", MATERNITY_TEES),
        # extra level inserted
        ("Apparel & Accessories > Clothing > Kitchen > Clothing Tops > T-Shirts", TOPS_TEES),
        # typos in the leaf
        ("Apparel & Accessories > Jewelry > Smart Wacthes", SMART_WATCHES),
        (
            "Apparel & Accessories > Clothing > Clothing Tops > Sweatshrits",
            "Apparel & Accessories > Clothing > Clothing Tops > Sweatshirts",
        ),
        # plural / singular
        ("Apparel & Accessories > Clothing > Dress", DRESSES),
        ("Apparel & Accessories > Clothing > Clothing Tops > T-Shirt", TOPS_TEES),
        # synonyms, disambiguated by the path
        ("Apparel & Accessories > Clothing > Clothing Tops > Tees", TOPS_TEES),
        ("Apparel & Accessories > Clothing > Maternity Clothing > Maternity Tops > Tee", MATERNITY_TEES),
        ("Furniture > Couch", "Furniture > Sofas"),
        # a path written without separators
        ("apparel accessories clothing dresses", DRESSES),
    ],
)
def test_fuzzy_recovers_structural_errors(corrector, raw, expected):
    r = corrector.correct(raw)
    assert _name(r) == expected, (raw, r)
    assert r.method == "fuzzy" and r.corrected
    assert corrector.threshold <= r.score <= 1.0


def test_path_decides_between_same_named_leaves(corrector):
    tops = corrector.correct("Apparel & Accessories > Clothing > Clothing Tops > T-Shrts")
    maternity = corrector.correct("Apparel & Accessories > Clothing > Maternity Clothing > Maternity Tops > T-Shrts")
    assert _name(tops) == TOPS_TEES
    assert _name(maternity) == MATERNITY_TEES


def test_custom_synonym_lexicon(taxonomy, corrector):
    raw = "Apparel & Accessories > Clothing > Frock"
    assert corrector.correct(raw).category is None  # not in the default lexicon
    custom = CategoryCorrector(taxonomy, synonyms={"frock": ["Dresses"]})
    assert _name(custom.correct(raw)) == DRESSES
    assert [c.full_name for c in custom.synonym_targets("Frocks")] == [DRESSES]
    assert custom.synonym_targets("Tee") == []  # a replacement lexicon, not an addition


def test_lexicon_ignores_terms_that_are_real_category_names(taxonomy):
    # "Dresses" is a category: a synonym entry must not redirect it.
    c = CategoryCorrector(taxonomy, synonyms={"dresses": ["Skirts"]})
    assert c.synonym_targets("Dresses") == []
    assert _name(c.correct(DRESSES)) == DRESSES


# -- threshold, unresolved, rejects ----------------------------------------------------------


@pytest.mark.parametrize("raw", ["", "   ", "!!!", " > > ", "qwzxvbnm", "Zzzqx Plorbs"])
def test_empty_and_garbage_are_unresolved(corrector, raw):
    r = corrector.correct(raw)
    assert r.category is None and not r.resolved
    assert r.method == "unresolved" and r.corrected and r.raw == raw
    assert 0.0 <= r.score < corrector.threshold


def test_none_is_unresolved_not_an_error(corrector):
    r = corrector.correct(None)  # type: ignore[arg-type]
    assert r.category is None and r.method == "unresolved"


def test_unknown_leaf_under_a_real_path_is_not_guessed(corrector):
    # The path is fine but the leaf names nothing in it: neither the parent nor a
    # lookalike child is returned.
    r = corrector.correct("Apparel & Accessories > Clothing > Spaceship")
    assert r.category is None and r.method == "unresolved"
    assert r.score < corrector.threshold


def test_threshold_one_accepts_only_exact_rules(taxonomy):
    c = CategoryCorrector(taxonomy, threshold=1.0)
    assert c.correct(DRESSES).resolved
    assert c.correct("Dresses").resolved  # unique leaf with no path: score 1.0
    r = c.correct("Apparel & Accessories > Jewelry > Smart Wacthes")
    assert r.category is None and r.method == "unresolved" and 0.8 < r.score < 1.0


def test_lower_threshold_admits_weaker_matches(taxonomy):
    raw = "Apparel & Accessories > Clothing > Clothing Tops > Hdz"
    assert CategoryCorrector(taxonomy, threshold=0.8).correct(raw).category is None
    loose = CategoryCorrector(taxonomy, threshold=0.5).correct(raw)
    assert loose.resolved and loose.method == "fuzzy" and 0.5 <= loose.score < 0.8


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_threshold_is_validated(taxonomy, bad):
    with pytest.raises(ValueError, match="threshold"):
        CategoryCorrector(taxonomy, threshold=bad)


def test_correction_is_frozen(corrector):
    r = corrector.correct(DRESSES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.score = 0.5  # type: ignore[misc]


def test_correct_many_keeps_order(corrector):
    out = corrector.correct_many([DRESSES, "", "Dresses"])
    assert [x.method for x in out] == ["exact_path", "unresolved", "unique_leaf"]


# -- full tree (../shared) -------------------------------------------------------------------


@needs_full_tree
def test_full_tree_wrong_parent_and_synonyms(full_corrector):
    r = full_corrector.correct("Apparel & Accessories > Watches > Smartwatches")
    assert _name(r) == SMART_WATCHES and r.method == "fuzzy"
    assert _name(full_corrector.correct("Furniture > Couches")) == "Furniture > Sofas"
    assert _name(full_corrector.correct("Electronics > Audio > Earbuds")) == (
        "Electronics > Audio > Audio Components > Headphones & Headsets > Headphones"
    )


@needs_full_tree
def test_full_tree_name_with_a_slash_is_not_split(full_corrector):
    r = full_corrector.correct("AM/FM Radios")
    assert r.method == "unique_leaf"
    assert r.category is not None and r.category.name == "AM/FM Radios"


@needs_full_tree
def test_full_tree_qualifier_added_to_the_leaf(full_corrector):
    # "Desktop Computers" is the closer spelling; the word-subset rule plus the path
    # find "Laptops".
    r = full_corrector.correct("Electronics > Computers > Laptop Computers")
    assert _name(r) == "Electronics > Computers > Laptops"


@needs_full_tree
def test_full_tree_five_t_shirts_need_a_path(full_corrector):
    assert full_corrector.correct("T-Shirts").category is None
    r = full_corrector.correct("Arts & Entertainment > Sports Fan Accessories > T-Shirt")
    assert r.category is not None and r.category.full_name.startswith("Arts & Entertainment")
