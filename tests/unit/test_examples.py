"""The bundled example data in examples/ is valid, self-consistent and up to date."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from taxonomy.loader import load_taxonomy
from transforms.records import EventType, ProductEvent, content_hash

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BAD_DECODE_LINES = (1, 2, 3, 4, 6, 10, 11, 12)
BAD_VALID_LINES = (5, 7, 8, 9)


def _events() -> list[ProductEvent]:
    lines = (EXAMPLES / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [ProductEvent.model_validate_json(line) for line in lines]


def _bad_lines() -> list[bytes]:
    data = (EXAMPLES / "bad_events.jsonl").read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def _is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def test_events_all_validate() -> None:
    lines = (EXAMPLES / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 60
    events = _events()
    assert len({e.event_id for e in events}) == len(events)
    kinds = {e.type for e in events}
    assert {EventType.CREATE, EventType.UPDATE, EventType.DELETE} <= kinds
    for e in events:
        assert e.occurred_at.tzinfo is not None
        assert e.product_id.startswith("gid://shopify/Product/")


def test_events_cover_edge_cases() -> None:
    events = _events()
    created = {e.product_id for e in events if e.type is EventType.CREATE}
    deletes = [e for e in events if e.type is EventType.DELETE]
    assert len(deletes) == 1 and deletes[0].product is None and deletes[0].product_id in created
    # One duplicated listing: identical content under two product ids.
    by_hash: dict[str, set[str]] = {}
    for e in events:
        if e.type is EventType.CREATE and e.product is not None:
            by_hash.setdefault(content_hash(e.product), set()).add(e.product_id)
    assert sum(1 for ids in by_hash.values() if len(ids) > 1) == 1
    counts = [len(e.product.image_urls) for e in events if e.type is EventType.CREATE and e.product]
    assert counts.count(0) >= 2 and counts.count(2) >= 2 and counts.count(1) >= 0.7 * len(counts)


def test_every_image_reference_exists() -> None:
    urls = [u for e in _events() if e.product for u in e.product.image_urls]
    for i, line in enumerate(_bad_lines(), 1):
        if i in BAD_VALID_LINES:
            urls += ProductEvent.model_validate_json(line).product.image_urls  # type: ignore[union-attr]
    local = [u for u in urls if not _is_remote(u)]
    assert local and all(not Path(u).is_absolute() for u in local)
    missing = [u for u in local if not (EXAMPLES / u).is_file()]
    assert not missing
    assert [u for u in urls if _is_remote(u)] == ["http://127.0.0.1:9/unreachable.jpg"]


def test_images_are_small() -> None:
    pngs = sorted((EXAMPLES / "images").glob("*.png"))
    assert len(pngs) >= 20
    assert sum(p.stat().st_size for p in pngs) < 1_000_000
    for p in pngs:
        assert p.stat().st_size < 20_000, p.name
        if p.name in ("not-an-image.png", "oversized.png"):
            continue
        with Image.open(p) as im:
            assert im.size == (256, 256), p.name


def test_deliberately_bad_images(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow's default bomb guard: the pipeline lowers it to its own pixel budget
    # (process-wide), and this checks the file itself.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(EXAMPLES / "images" / "not-an-image.png")
    with Image.open(EXAMPLES / "images" / "oversized.png") as im:  # header only, not decoded
        assert im.size == (9000, 9000)


def test_expected_categories_exist_in_sample_taxonomy() -> None:
    expected = json.loads((EXAMPLES / "expected_categories.json").read_text())
    taxonomy = load_taxonomy()
    assert not [p for p in expected.values() if taxonomy.by_full_name(p) is None]
    with_product = {e.product_id for e in _events() if e.product is not None}
    assert with_product == set(expected)
    apparel = sum(p.startswith("Apparel & Accessories") for p in expected.values())
    assert apparel >= 40 and len(expected) - apparel >= 20


def test_bad_events() -> None:
    lines = _bad_lines()
    assert len(lines) == 12
    with pytest.raises(UnicodeDecodeError):
        lines[5].decode("utf-8")
    for i, line in enumerate(lines, 1):
        if i == 6:
            continue
        line.decode("utf-8")  # only line 6 is not UTF-8
    for i in BAD_DECODE_LINES:
        with pytest.raises(ValidationError):
            ProductEvent.model_validate_json(lines[i - 1])
    for i in BAD_VALID_LINES:
        ProductEvent.model_validate_json(lines[i - 1])
    assert b"<script>alert(1)</script>" in lines[4] and b"onclick=" in lines[4]
    table = (EXAMPLES / "bad_events.md").read_text()
    assert all(f"| {i} |" in table for i in range(1, 13))


def test_generator_is_deterministic_and_committed_files_are_current(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path, check_taxonomy=False)
    for name in ("events.jsonl", "expected_categories.json", "bad_events.jsonl", "bad_events.md"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(
        p.name for p in (EXAMPLES / "images").iterdir()
    )
