from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from transforms.images import ImageConfig, ImageError, fetch_image, prepare_image
from transforms.sanitise import html_to_text


def test_html_to_text_keeps_paragraphs_and_entities() -> None:
    text, warnings = html_to_text("<p>Soft &amp; warm</p><ul><li>Wool</li><li>Cotton</li></ul>")
    assert text == "Soft & warm\nWool\nCotton"
    assert warnings == []


def test_script_and_handlers_are_removed_and_flagged() -> None:
    text, warnings = html_to_text('<p onclick="x()">Nice</p><script>alert(1)</script><a href="javascript:y()">go</a>')
    assert "alert" not in text and "Nice" in text
    assert len(warnings) == 1
    assert "<script>" in warnings[0] and "event-handler" in warnings[0] and "javascript:" in warnings[0]


def _png(size: tuple[int, int], colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_prepare_resizes_and_reencodes_jpeg() -> None:
    out = prepare_image(_png((1200, 600)), ImageConfig(max_side=300))
    with Image.open(io.BytesIO(out)) as img:
        assert img.format == "JPEG" and max(img.size) == 300 and img.size == (300, 150)


def test_pixel_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(_png((4000, 4000)), ImageConfig(max_pixels=1_000_000))
    assert info.value.kind == "too_large" and "MP" in str(info.value)


def test_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(b"hello, not a picture", ImageConfig())
    assert info.value.kind == "not_an_image"


def test_fetch_local_relative_missing_and_too_big(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_png((10, 10)))
    assert fetch_image("a.png", ImageConfig(), str(tmp_path)).startswith(b"\x89PNG")
    assert fetch_image(f"file://{tmp_path}/a.png", ImageConfig())
    with pytest.raises(ImageError, match="cannot be read") as info:
        fetch_image("missing.png", ImageConfig(), str(tmp_path))
    assert info.value.kind == "unreachable"
    with pytest.raises(ImageError, match="byte limit"):
        fetch_image("a.png", ImageConfig(max_bytes=10), str(tmp_path))
    with pytest.raises(ImageError, match="not supported"):
        fetch_image("ftp://x/y.png", ImageConfig())


def test_fetch_unreachable_http_is_bounded_in_time() -> None:
    with pytest.raises(ImageError) as info:
        fetch_image("http://127.0.0.1:9/x.jpg", ImageConfig(timeout_s=2))
    assert info.value.kind == "unreachable"


def test_image_config_validates() -> None:
    with pytest.raises(ValueError, match="max_side"):
        ImageConfig(max_side=5)
