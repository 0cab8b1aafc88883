from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from transforms.records import (
    DeadLetter,
    EventType,
    Prediction,
    Product,
    ProductEvent,
    content_hash,
    export_schemas,
    prediction_id,
)

EVENT = {
    "event_id": "e1",
    "type": "update",
    "product_id": "gid://shopify/Product/1",
    "shop_id": "shop",
    "occurred_at": "2026-11-01T10:00:00Z",
    "product": {
        "title": "Linen Shirt",
        "description_html": "<p>Soft linen.</p>",
        "tags": "summer, linen",
        "image_urls": ["images/a.png"],
        "variant_options": [{"name": "Size", "values": ["S", "M"]}],
        "price": 40.0,
        "inventory_quantity": 3,
    },
}


def test_event_round_trip_and_tag_splitting() -> None:
    e = ProductEvent.model_validate(EVENT)
    assert e.type is EventType.UPDATE and e.product is not None
    assert e.product.tags == ("summer", "linen")
    assert ProductEvent.model_validate_json(e.model_dump_json()) == e


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"product_id": None}, "product_id"),
        ({"type": "upsert"}, "type"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"product": {"title": "   "}}, "product.title"),
        ({"product": None}, "needs a product"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_events_name_the_field(patch: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ProductEvent.model_validate({**EVENT, **patch})
    assert field.split(".")[0] in str(info.value)


def test_delete_needs_no_product() -> None:
    e = ProductEvent.model_validate({**EVENT, "type": "delete", "product": None})
    assert e.product is None


def test_content_hash_ignores_price_inventory_and_case() -> None:
    p = Product.model_validate(EVENT["product"])
    cheaper = p.model_copy(update={"price": 1.0, "inventory_quantity": 0, "title": "linen  SHIRT"})
    assert content_hash(p) == content_hash(cheaper)
    assert content_hash(p) != content_hash(p.model_copy(update={"title": "Silk Shirt"}))
    assert content_hash(p) != content_hash(p.model_copy(update={"image_urls": ("images/b.png",)}))


def test_prediction_id_is_deterministic_and_versioned() -> None:
    a = prediction_id("p", "h", "m1", "2024-07")
    assert a == prediction_id("p", "h", "m1", "2024-07")
    assert a != prediction_id("p", "h", "m2", "2024-07")
    assert a != prediction_id("p", "h", "m1", "2024-10")


def test_schemas_export(tmp_path: Path) -> None:
    paths = export_schemas(tmp_path)
    names = {p.name for p in paths}
    assert names == {"product_event.schema.json", "prediction.schema.json", "dead_letter.schema.json"}
    schema = json.loads((tmp_path / "prediction.schema.json").read_text())
    assert "prediction_id" in schema["properties"]


def test_committed_schemas_are_current(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "schemas"
    for p in export_schemas(tmp_path):
        assert (docs / p.name).read_text() == p.read_text(), f"run `make schemas`: {p.name} is stale"


def test_prediction_and_dead_letter_validate() -> None:
    DeadLetter.model_validate(
        {
            "stage": "decode",
            "error_type": "MalformedJson",
            "message": "m",
            "original_payload": "{",
            "time": "2026-01-01T00:00:00Z",
        }
    )
    with pytest.raises(ValidationError):
        Prediction.model_validate({"product_id": "p"})
