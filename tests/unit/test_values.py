"""ValueNormaliser: exact / handle / fuzzy value matching, rejects, attribute lookup."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from taxonomy.loader import load_taxonomy
from taxonomy.model import normalise_key
from taxonomy.values import ValueNormaliser, attribute_for, compact_key, slug

FULL_TREE = Path(__file__).resolve().parents[3] / "shared" / "taxonomy" / "shopify-2024-07"
needs_full_tree = pytest.mark.skipif(not FULL_TREE.exists(), reason="../shared taxonomy not present")


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


@pytest.fixture(scope="module")
def norm(taxonomy):
    return ValueNormaliser(taxonomy)


@pytest.fixture(scope="module")
def attrs(taxonomy):
    return taxonomy.attributes


def _name(match):
    return match.value.name if match else None


# -- exact -----------------------------------------------------------------------------------


def test_exact_name_is_not_corrected(norm, attrs):
    m = norm.normalise(attrs["color"], "Navy")
    assert (m.value.handle, m.method, m.corrected, m.score, m.raw) == ("color__navy", "exact", False, 1.0, "Navy")


@pytest.mark.parametrize("raw", ["navy", "NAVY", "  Navy  "])
def test_case_and_whitespace_variants_are_exact_but_corrected(norm, attrs, raw):
    m = norm.normalise(attrs["color"], raw)
    assert _name(m) == "Navy" and m.method == "exact" and m.corrected


@pytest.mark.parametrize("raw", ["rose gold", "Rose-Gold", "ROSEGOLD", "rose  gold"])
def test_spacing_and_punctuation_variants(norm, attrs, raw):
    m = norm.normalise(attrs["color"], raw)
    assert _name(m) == "Rose gold" and m.method == "exact"


@pytest.mark.parametrize(
    ("handle", "raw", "expected"),
    [
        ("size", "XL", "Extra large (XL)"),
        ("size", "m", "Medium (M)"),
        ("size", "Extra Large", "Extra large (XL)"),
        ("size", "4XL", "Four extra large (4XL)"),
        ("material", "PVC", "Polyvinyl chloride (PVC)"),
        ("activity", "MMA", "Mixed martial arts (MMA)"),
    ],
)
def test_abbreviation_and_bare_name_aliases(norm, attrs, handle, raw, expected):
    m = norm.normalise(attrs[handle], raw)
    assert _name(m) == expected and m.method == "exact" and m.corrected


def test_numeric_values_stay_apart(norm, attrs):
    shoe = attrs["shoe-size"]
    assert _name(norm.normalise(shoe, "1.5")) == "1.5"
    assert _name(norm.normalise(shoe, "15")) == "15"
    assert _name(norm.normalise(shoe, 15)) == "15"  # JSON numbers are accepted
    assert norm.normalise(shoe, "151") is None


# -- handles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["color__navy", "COLOR__NAVY"])
def test_full_value_handle(norm, attrs, raw):
    m = norm.normalise(attrs["color"], raw)
    assert _name(m) == "Navy" and m.method == "handle" and m.score == 1.0 and m.corrected


def test_bare_handle_suffix(norm, attrs):
    m = norm.normalise(attrs["color"], "rose-gold")
    assert _name(m) == "Rose gold"
    m = norm.normalise(attrs["sleeve-length-type"], "spaghetti-strap")
    assert _name(m) == "Spaghetti strap" and m.method in ("exact", "handle")


@pytest.mark.parametrize(
    "raw",
    ["shopify--color-pattern-navy", "color-pattern-navy", "shopify.navy", "color-navy", "navy-1", "color__navy-2"],
)
def test_prefixed_and_deduplicated_handles(norm, attrs, raw):
    m = norm.normalise(attrs["color"], raw)
    assert _name(m) == "Navy" and m.method == "handle" and m.score < 1.0


def test_metaobject_handle_named_after_a_value(norm, attrs):
    m = norm.normalise(attrs["color"], "navy-blazer")
    assert _name(m) == "Navy" and m.method == "handle" and m.score == pytest.approx(0.8)
    assert _name(norm.normalise(attrs["color"], "rose-gold-ring")) == "Rose gold"  # longest wins


def test_metaobject_prefix_rejects_two_values_and_names(norm, attrs):
    assert norm.normalise(attrs["color"], "blue-green") is None  # names two colours
    # "High-top" is a real name (sneaker style), not "High" plus a suffix.
    assert norm.normalise(attrs["heel-height-type"], "High-top") is None


def test_extended_attribute_uses_its_base_values(norm, attrs):
    band = attrs["band-color"]
    assert band.base_handle == "color"
    assert _name(norm.normalise(band, "color__black")) == "Black"
    assert _name(norm.normalise(band, "band-color__black")) == "Black"
    assert _name(norm.normalise(band, "Black")) == "Black"


# -- fuzzy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("handle", "raw", "expected"),
    [
        ("color", "Bleu", "Blue"),  # swapped pair in a short word
        ("color", "Purpel", "Purple"),
        ("color", "Yelow", "Yellow"),  # dropped letter
        ("material", "Coton", "Cotton"),
        ("material", "Polyestre", "Polyester"),
        ("activity", "Basketbal", "Basketball"),
        ("color", "Grey", "Gray"),  # spelling variant
        ("material", "Aluminium", "Aluminum"),
        ("color", "multicoloured", "Multicolor"),
        ("color", "Golds", "Gold"),  # inflection
        ("shoe-size", "10,5", "10.5"),  # decimal comma
    ],
)
def test_fuzzy_near_misses(norm, attrs, handle, raw, expected):
    m = norm.normalise(attrs[handle], raw)
    assert _name(m) == expected and m.method == "fuzzy" and m.corrected
    assert 0.0 < m.score < 1.0


@pytest.mark.parametrize(
    ("handle", "raw"),
    [
        ("color", "Rose"),  # not "Red", not "Rose gold"
        ("color", "Bed"),  # not "Red": three letters are never fuzzy
        ("color", "Reed"),
        ("color", "Mink"),  # one substitution from "Pink", but a word of its own
        ("color", "Whte"),
        ("color", "Navy blue"),  # not an allowed value; no guessing between Navy and Blue
        ("color", "dark-blue"),
        ("color", "Teal"),
        ("shape", "Narrow"),  # not "Arrow": different first letter
        ("closure-type", "Plastic"),  # not "Elastic"
        ("activity", "Bullet"),  # not "Ballet": one substitution in a 6-letter word
        ("material", "Wook"),  # one edit from both Wool and Wood
        ("shoe-size", "1,50"),  # digits must agree
    ],
)
def test_conservative_rejects(norm, attrs, handle, raw):
    assert norm.normalise(attrs[handle], raw) is None


@pytest.mark.parametrize("raw", [None, "", "   ", "???", "-"])
def test_empty_and_garbage_are_rejected(norm, attrs, raw):
    assert norm.normalise(attrs["color"], raw) is None


def test_no_cross_attribute_false_matches_beyond_known_pairs(norm, taxonomy):
    """Feed every value name of every other attribute; fuzzy/handle matches must be rare
    and limited to inflections or the one known Slide/Slider pair."""
    base = [a for a in taxonomy.attributes.values() if not a.extended]
    names = sorted({v.name for a in base for v in a.values})
    surprises = []
    for a in base:
        own = {normalise_key(v.name) for v in a.values}
        for x in names:
            if normalise_key(x) in own:
                continue
            m = norm.normalise(a, x)
            if m and m.method != "exact" and m.score < 0.97:
                surprises.append((a.handle, x, m.value.name))
    assert sorted(surprises) == [("bracelet-design", "Slide", "Slider"), ("slipper-style", "Slider", "Slide")]


def test_value_match_is_frozen(norm, attrs):
    m = norm.normalise(attrs["color"], "Navy")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.score = 0.1  # type: ignore[misc]


# -- normalise_many --------------------------------------------------------------------------


def test_normalise_many_dedupes_and_reports_rejects(norm, attrs):
    matches, rejected = norm.normalise_many(attrs["color"], ["Red", "red", "color__red", "Bed", "Navy", "", "Teal"])
    assert [m.value.name for m in matches] == ["Red", "Navy"]
    assert matches[0].corrected is False
    assert rejected == ["Bed", "", "Teal"]


def test_normalise_many_splits_listed_values(norm, attrs):
    matches, rejected = norm.normalise_many(attrs["color"], ["Navy, Blue; Teal", "Rose gold"])
    assert [m.value.name for m in matches] == ["Navy", "Blue", "Rose gold"]
    assert rejected == ["Teal"]


def test_normalise_many_empty(norm, attrs):
    assert norm.normalise_many(attrs["color"], []) == ([], [])


# -- attribute_for ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dresses(taxonomy):
    return taxonomy.by_full_name("Apparel & Accessories > Clothing > Dresses")


@pytest.fixture(scope="module")
def smart_watches(taxonomy):
    return taxonomy.by_full_name("Apparel & Accessories > Jewelry > Smart Watches")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("color", "color"),
        ("Color", "color"),
        ("color-pattern", "color"),  # Shopify's metafield key for Color
        ("shopify.color-pattern", "color"),
        ("colour", "color"),
        ("skirt-dress-length-type", "skirt-dress-length-type"),
        ("skirt_dress_length_type", "skirt-dress-length-type"),
        ("Skirt/Dress length type", "skirt-dress-length-type"),
        ("sleeve-length", "sleeve-length-type"),
        ("age", "age-group"),
        ("neck-line", "neckline"),
        ("Neckline", "neckline"),
    ],
)
def test_attribute_for(norm, dresses, raw, expected):
    a = norm.attribute_for(dresses, raw)
    assert a is not None and a.handle == expected


@pytest.mark.parametrize("raw", ["material", "foo", "", "watch-display"])
def test_attribute_for_rejects_handles_the_category_lacks(norm, dresses, raw):
    assert norm.attribute_for(dresses, raw) is None


def test_attribute_for_extended_and_ambiguous(norm, smart_watches):
    assert norm.attribute_for(smart_watches, "band-color").handle == "band-color"
    assert norm.attribute_for(smart_watches, "band_colour").handle == "band-color"
    assert norm.attribute_for(smart_watches, "Dial color").handle == "dial-color"
    # Band, case and dial colour all fit plain "color": no guess.
    assert norm.attribute_for(smart_watches, "color") is None


def test_module_level_attribute_for(taxonomy, dresses):
    assert attribute_for(taxonomy, dresses, "colour").handle == "color"


def test_helpers():
    assert slug("Skirt/Dress length type") == "skirt-dress-length-type"
    assert compact_key("Hook & Loop") == compact_key("hook and loop")
    assert compact_key("1.5") != compact_key("15")


# -- full tree -------------------------------------------------------------------------------


@needs_full_tree
def test_full_tree_values_and_attributes():
    full = load_taxonomy(FULL_TREE)
    norm = ValueNormaliser(full)
    tee = full.by_full_name("Apparel & Accessories > Clothing > Clothing Tops > T-Shirts")
    color = norm.attribute_for(tee, "color-pattern")
    assert color is not None and color.handle == "color"
    assert _name(norm.normalise(color, "color__navy")) == "Navy"
    assert norm.normalise(color, "Bed") is None
    # Categories outside Apparel carry no attributes in this excerpt: nothing to match.
    sofas = full.by_full_name("Furniture > Sofas")
    assert norm.attribute_for(sofas, "color") is None
