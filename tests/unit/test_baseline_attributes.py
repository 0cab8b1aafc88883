"""The CPU baseline's attribute extraction (step 2) and the evaluation's reading of gold values."""

from __future__ import annotations

import pytest

from model_repository.contract import ModelAttribute, ModelProduct, ModelRequest, Task
from model_repository.product_baseline.attributes import AttributeExtractor, english_value_words
from taxonomy.model import Attribute, Value
from taxonomy.values import ValueNormaliser
from transforms.evaluation.metrics import normalise_gold_value

COLOR = ModelAttribute(
    handle="color",
    name="Color",
    values=("Beige", "Black", "Blue", "Gold", "Gray", "Green", "Navy", "Pink", "Red", "Rose gold", "White", "Yellow"),
)
FABRIC = ModelAttribute(
    handle="fabric", name="Fabric", values=("Cotton", "Faux leather", "Leather", "Polyester", "Wool")
)
SIZE = ModelAttribute(
    handle="size",
    name="Size",
    values=(
        "Small (S)",
        "Medium (M)",
        "Large (L)",
        "Extra large (XL)",
        "Double extra large (XXL)",
        "Triple extra large (XXXL)",
        "40",
        "42",
        "50",
        "One size",
    ),
)
SHOE_SIZE = ModelAttribute(handle="shoe-size", name="Shoe size", values=("8", "8.5", "9", "10", "42"))
GENDER = ModelAttribute(handle="target-gender", name="Target gender", values=("Female", "Male", "Unisex"))
SLEEVE = ModelAttribute(handle="sleeve-length-type", name="Sleeve length type", values=("Long", "Short", "Sleeveless"))
FEATURES = ModelAttribute(
    handle="activewear-clothing-features",
    name="Activewear clothing features",
    values=("Breathable design", "Moisture wicking", "Quick drying", "Other"),
)
ACTIVITY = ModelAttribute(handle="activity", name="Activity", values=("Football", "Running", "Soccer"))
ALL = (COLOR, FABRIC, SIZE, GENDER, SLEEVE, FEATURES, ACTIVITY)


@pytest.fixture(scope="module")
def extractor() -> AttributeExtractor:
    return AttributeExtractor()


def extract(
    extractor: AttributeExtractor,
    title: str,
    description: str = "",
    attributes: tuple[ModelAttribute, ...] = ALL,
    **product: object,
) -> dict[str, list[str]]:
    request = ModelRequest(
        task=Task.EXTRACT,
        product=ModelProduct(title=title, description=description, **product),
        attributes=attributes,
    )
    return extractor.extract(request, None)


# -- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Hoodie 2XL", ["Double extra large (XXL)"]),
        ("Hoodie XXL", ["Double extra large (XXL)"]),
        ("Hoodie 3XL", ["Triple extra large (XXXL)"]),
        ("Tee, sizes S M L", ["Small (S)", "Medium (M)", "Large (L)"]),
        ("Tee - Size: M", ["Medium (M)"]),
        ("Camiseta talla M", ["Medium (M)"]),
        ("Jacket EU 42", ["42"]),
        ("Jacket size 42", ["42"]),
        ("Beanie, one size fits all", ["One size"]),
        ("Mütze Einheitsgröße", ["One size"]),
    ],
)
def test_sizes_as_merchants_write_them(extractor: AttributeExtractor, title: str, expected: list[str]) -> None:
    assert extract(extractor, title, attributes=(SIZE,)).get("size") == expected


@pytest.mark.parametrize(
    "title",
    [
        "Hoodie now $50",  # a price, not size 50
        "Pack of 50 socks",
        "Tee L by M Studio",  # lone letters outside a list of sizes
        "Team shirt 2025-26",
    ],
)
def test_numbers_and_letters_that_are_not_sizes(extractor: AttributeExtractor, title: str) -> None:
    assert "size" not in extract(extractor, title, attributes=(SIZE,))


def test_shoe_sizes_with_system_and_width(extractor: AttributeExtractor) -> None:
    assert extract(extractor, "Women's Sail Sandal, Black, 9 M US", attributes=(SHOE_SIZE,)) == {"shoe-size": ["9"]}
    assert extract(extractor, "Runner 8.5 US", attributes=(SHOE_SIZE,)) == {"shoe-size": ["8.5"]}
    assert extract(extractor, "Runner, 10 pairs", attributes=(SHOE_SIZE,)) == {}


def test_size_option_values_count_without_a_size_word(extractor: AttributeExtractor) -> None:
    found = extract(
        extractor, "Tee", attributes=(SIZE, COLOR), variant_options={"Talla": ("M", "XL"), "Farbe": ("Rot",)}
    )
    assert found == {"size": ["Medium (M)", "Extra large (XL)"], "color": ["Red"]}


# -- colours and materials in the taxonomy's languages ------------------------------------


@pytest.mark.parametrize(
    ("title", "color", "fabric"),
    [
        ("Camiseta roja de algodón", "Red", "Cotton"),
        ("Herren T-Shirt schwarz aus Baumwolle", "Black", "Cotton"),
        ("Pull en laine bleu marine", "Navy", "Wool"),
        ("Maglietta bianca in cotone", "White", "Cotton"),
        ("Zwarte trui van wol", "Black", "Wool"),
        ("Koszulka czerwona bawełna", "Red", "Cotton"),
        ("Camiseta azul de poliéster", "Blue", "Polyester"),
        ("赤いTシャツ 綿100%", "Red", "Cotton"),
        ("黑色纯棉T恤", "Black", "Cotton"),
        ("빨간색 면 티셔츠 코튼", "Red", "Cotton"),
    ],
)
def test_localized_colours_and_materials(extractor: AttributeExtractor, title: str, color: str, fabric: str) -> None:
    found = extract(extractor, title, attributes=(COLOR, FABRIC))
    assert found == {"color": [color], "fabric": [fabric]}


def test_longest_value_wins(extractor: AttributeExtractor) -> None:
    assert extract(extractor, "Navy blue polo", attributes=(COLOR,)) == {"color": ["Navy"]}
    assert extract(extractor, "Rose gold watch", attributes=(COLOR,)) == {"color": ["Rose gold"]}
    assert extract(extractor, "粉红色连衣裙", attributes=(COLOR,)) == {"color": ["Pink"]}  # not 红色 (red)
    assert extract(extractor, "Vegan leather bag", attributes=(FABRIC,)) == {"fabric": ["Faux leather"]}


def test_title_colour_wins_over_description_accents(extractor: AttributeExtractor) -> None:
    found = extract(
        extractor, "Red home jersey", "Red with white trim; pair it with black shorts.", attributes=(COLOR,)
    )
    assert found == {"color": ["Red"]}
    found = extract(extractor, "Home jersey", "A sleek black design with yellow stripes.", attributes=(COLOR,))
    assert found == {"color": ["Black", "Yellow"]}


# -- precision guards ----------------------------------------------------------------------


def test_phrases_that_are_not_values(extractor: AttributeExtractor) -> None:
    assert extract(extractor, "Black Friday deal: hoodie", attributes=(COLOR,)) == {}
    assert extract(extractor, "Green tea gift box", attributes=(COLOR,)) == {}
    assert extract(extractor, "Hoodie, no polyester", attributes=(FABRIC,)) == {}


def test_vague_words_need_their_attribute(extractor: AttributeExtractor) -> None:
    assert extract(extractor, "Tee with short sleeves", attributes=(SLEEVE,)) == {"sleeve-length-type": ["Short"]}
    assert extract(extractor, "In short, the best tee", attributes=(SLEEVE,)) == {}
    assert extract(extractor, "Camiseta manga larga", attributes=(SLEEVE,)) == {"sleeve-length-type": ["Long"]}
    assert extract(extractor, "半袖Tシャツ", attributes=(SLEEVE,)) == {"sleeve-length-type": ["Short"]}


def test_spider_man_is_not_a_gender(extractor: AttributeExtractor) -> None:
    assert extract(extractor, "Spider-Man tee", attributes=(GENDER,)) == {}


# -- gender, features, activities ----------------------------------------------------------


def test_gender_words(extractor: AttributeExtractor) -> None:
    assert extract(extractor, "Men's running shorts", attributes=(GENDER,)) == {"target-gender": ["Male"]}
    assert extract(extractor, "Damen Laufhose", attributes=(GENDER,)) == {"target-gender": ["Female"]}
    assert extract(extractor, "レディース Tシャツ", attributes=(GENDER,)) == {"target-gender": ["Female"]}
    assert extract(extractor, "Goggles for men women", attributes=(GENDER,)) == {"target-gender": ["Unisex"]}
    assert extract(extractor, "Unisex men's cap", attributes=(GENDER,)) == {"target-gender": ["Unisex"]}


def test_features_as_merchants_phrase_them(extractor: AttributeExtractor) -> None:
    found = extract(
        extractor, "Jersey", "Breathable fabric that wicks away moisture. Quick-dry.", attributes=(FEATURES,)
    )
    assert found == {"activewear-clothing-features": ["Breathable design", "Moisture wicking", "Quick drying"]}
    found = extract(extractor, "Camiseta deportiva transpirable", attributes=(FEATURES,))
    assert found == {"activewear-clothing-features": ["Breathable design"]}


def test_football_with_a_club_is_soccer(extractor: AttributeExtractor) -> None:
    found = extract(extractor, "Club home jersey", "For every football fan on the pitch.", attributes=(ACTIVITY,))
    assert found == {"activity": ["Football", "Soccer"]}
    found = extract(extractor, "NFL jersey", "For every football fan, touchdown!", attributes=(ACTIVITY,))
    assert found == {"activity": ["Football"]}
    assert extract(extractor, "Camiseta de fútbol", attributes=(ACTIVITY,)) == {"activity": ["Soccer"]}


def test_extraction_is_cheap(extractor: AttributeExtractor) -> None:
    description = "Breathable red cotton jersey for football fans on the pitch. " * 40
    extract(extractor, "Warm-up", description)  # patterns built and cached
    import time

    start = time.perf_counter()
    for _ in range(50):
        extract(extractor, "Kids Home Kit 2025-26 Red", description)
    assert (time.perf_counter() - start) / 50 < 0.02  # generous: ~1 ms on a laptop


# -- the evaluation's reading of gold values -----------------------------------------------


def _attribute(handle: str, names: list[str]) -> Attribute:
    values = tuple(
        Value(id=f"{handle}/{i}", name=n, handle=f"{handle}__{n.casefold().replace(' ', '-')}")
        for i, n in enumerate(names)
    )
    return Attribute(
        id=handle, name=handle.replace("-", " ").capitalize(), handle=handle, description="", values=values
    )


GOLD_SIZE = _attribute("size", ["Medium (M)", "Double extra large (XXL)", "Four extra large (4XL)", "16", "42"])
GOLD_COLOR = _attribute("color", ["Black", "Blue", "Gold", "Green", "Red", "White"])
GOLD_GENDER = _attribute("target-gender", ["Female", "Male", "Unisex"])
GOLD_FABRIC = _attribute("fabric", ["Cotton", "Polyester"])


@pytest.mark.parametrize(
    ("attribute", "raw", "expected"),
    [
        (GOLD_SIZE, "2xl", ["Double extra large (XXL)"]),
        (GOLD_SIZE, "XXXXL", ["Four extra large (4XL)"]),
        (GOLD_SIZE, "m", ["Medium (M)"]),
        (GOLD_SIZE, "16-18", None),  # a range is not size 16
        (GOLD_SIZE, "EU 42", ["42"]),
        (GOLD_COLOR, "sky-blue", ["Blue"]),
        (GOLD_COLOR, "blue-green", None),  # two colours, not a shade
        (GOLD_COLOR, "golden", ["Gold"]),
        (GOLD_COLOR, "rojo", ["Red"]),
        (GOLD_COLOR, "noir-1", ["Black"]),
        (GOLD_COLOR, "Black/White", ["Black", "White"]),
        (GOLD_GENDER, "Men's", ["Male"]),
        (GOLD_GENDER, "damen", ["Female"]),
        (GOLD_FABRIC, "100% Cotton", ["Cotton"]),
        (GOLD_FABRIC, "moisture-wicking", None),
    ],
)
def test_gold_values_as_merchants_write_them(attribute: Attribute, raw: str, expected: list[str] | None) -> None:
    normaliser = ValueNormaliser(taxonomy=None)  # type: ignore[arg-type]  # the value index needs no taxonomy
    hit = normalise_gold_value(normaliser, [attribute], raw)
    names = {v.id: v.name for v in attribute.values}
    assert (None if hit is None else [names[i] for i in hit[1]]) == expected


def test_english_value_words() -> None:
    assert english_value_words("azul-marino") == ("navy",)
    assert english_value_words("Men's") == ("male",)
    assert english_value_words("黑色") == ("black",)
    assert english_value_words("unknown-word") == ()
