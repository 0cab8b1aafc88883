from __future__ import annotations

import json
from pathlib import Path

import pytest

from taxonomy.loader import SAMPLE_TAXONOMY_DIR, TaxonomyError, load_taxonomy, parse_taxonomy
from tests.conftest import SHARED_TAXONOMY, needs_shared_taxonomy


@pytest.fixture(scope="module")
def sample_taxonomy():
    # The small fixture explicitly: the default (`load_taxonomy()`) is the full bundled tree.
    return load_taxonomy(SAMPLE_TAXONOMY_DIR)


def test_sample_is_official_shape_with_apparel_attributes(sample_taxonomy) -> None:
    t = sample_taxonomy
    assert t.version == "2024-07"
    assert 300 <= len(t) <= 1500
    dresses = t.by_full_name("Apparel & Accessories > Clothing > Dresses")
    assert dresses is not None and dresses.level == 2
    handles = {a.handle for a in t.attributes_of(dresses)}
    assert {"color", "neckline", "sleeve-length-type"} <= handles
    color = t.attributes["color"]
    assert any(v.name == "Red" for v in color.values)


def test_lookups_and_ancestors(sample_taxonomy) -> None:
    t = sample_taxonomy
    c = t.get("aa-1-1-1-2")  # short id
    assert c is not None and c.name == "Leggings"
    assert t.get(c.id) is c
    assert [a.name for a in t.ancestors(c)] == ["Apparel & Accessories", "Clothing", "Activewear", "Activewear Pants"]
    assert t.lineage(c)[-1] is c
    assert t.by_full_name("  apparel & accessories >  clothing > activewear > activewear pants > LEGGINGS ") is c
    assert c in t.by_leaf_name("leggings")
    parent = t.get(c.parent_id)
    assert c in t.children(parent)


def test_extended_attribute_takes_base_values(sample_taxonomy) -> None:
    t = sample_taxonomy
    band = t.attributes["band-color"]
    assert band.extended and band.base_handle == "color"
    assert band.values == t.attributes["color"].values
    watches = t.by_full_name("Apparel & Accessories > Jewelry > Watches")
    assert "band-color" in {a.handle for a in t.attributes_of(watches)}


def test_combined_taxonomy_json(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "taxonomy" / "data" / "sample-2024-07"
    cats = json.loads((src / "categories.json").read_text())
    attrs = json.loads((src / "attributes.json").read_text())
    (tmp_path / "taxonomy.json").write_text(json.dumps({**cats, "attributes": attrs["attributes"]}))
    t = load_taxonomy(tmp_path, use_cache=False)
    assert len(t) == len(load_taxonomy(src, use_cache=False))
    assert load_taxonomy(tmp_path / "taxonomy.json", use_cache=False).version == "2024-07"


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TaxonomyError, match="does not exist"):
        load_taxonomy(tmp_path / "nope")
    with pytest.raises(TaxonomyError, match="neither"):
        load_taxonomy(tmp_path)
    (tmp_path / "taxonomy.json").write_text("{not json")
    with pytest.raises(TaxonomyError, match="not valid JSON"):
        load_taxonomy(tmp_path, use_cache=False)
    with pytest.raises(TaxonomyError, match="verticals"):
        parse_taxonomy({"version": "x"})


def test_cache_is_used_and_survives_corruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCTLENS_CACHE", str(tmp_path))
    first = load_taxonomy(SAMPLE_TAXONOMY_DIR)
    files = list((tmp_path / "taxonomy").glob("*.pickle"))
    assert len(files) == 1
    assert len(load_taxonomy(SAMPLE_TAXONOMY_DIR)) == len(first)
    files[0].write_bytes(b"torn")
    assert len(load_taxonomy(SAMPLE_TAXONOMY_DIR)) == len(first)


def test_default_is_the_full_bundled_taxonomy_with_locales() -> None:
    from taxonomy.loader import DEFAULT_TAXONOMY_DIR

    t = load_taxonomy()
    assert len(t) == 10281 and len(t.verticals) == 25 and t.version == "2024-07"
    assert len(t.locales) == 13 and "es" in t.locales and "en" not in t.locales
    assert t.stats()["categories_with_attributes"] == 459
    assert (DEFAULT_TAXONOMY_DIR / "categories.json.xz").is_file()
    assert "MIT" in (DEFAULT_TAXONOMY_DIR / "README.md").read_text()


@needs_shared_taxonomy
def test_full_tree_cached_equals_parsed() -> None:
    t = load_taxonomy(SHARED_TAXONOMY)
    assert len(t) == 10281 and len(t.verticals) == 25
    cold = load_taxonomy(SHARED_TAXONOMY, use_cache=False)
    assert cold.stats() == t.stats()
    assert all(t.categories[a] for c in t.categories.values() for a in c.ancestor_ids)
