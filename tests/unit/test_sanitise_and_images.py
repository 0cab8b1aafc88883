from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from transforms.images.prepare import ImageConfig, ImageError, fetch_image, prepare_image
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
    assert fetch_image(f"file://{tmp_path}/a.png", ImageConfig(), str(tmp_path))
    with pytest.raises(ImageError, match="cannot be read") as info:
        fetch_image("missing.png", ImageConfig(), str(tmp_path))
    assert info.value.kind == "unreachable"
    with pytest.raises(ImageError, match="byte limit"):
        fetch_image("a.png", ImageConfig(max_bytes=10), str(tmp_path))
    with pytest.raises(ImageError, match="not supported"):
        fetch_image("ftp://x/y.png", ImageConfig())


def test_fetch_unreachable_http_is_bounded_in_time() -> None:
    with pytest.raises(ImageError) as info:
        fetch_image("http://127.0.0.1:9/x.jpg", ImageConfig(timeout_s=2, allow_private_addresses=True))
    assert info.value.kind == "unreachable"


def test_loopback_http_is_refused_by_default() -> None:
    with pytest.raises(ImageError) as info:
        fetch_image("http://127.0.0.1:9/x.jpg", ImageConfig(timeout_s=2))
    assert info.value.kind == "refused"


def _fifo(tmp_path: Path) -> Path:
    import os

    path = tmp_path / "fifo.png"
    os.mkfifo(path)
    return path


def test_local_files_need_a_base_directory_and_stay_inside_it(tmp_path: Path) -> None:
    base = tmp_path / "images"
    base.mkdir()
    (base / "a.png").write_bytes(_png((10, 10)))
    (tmp_path / "outside.png").write_bytes(_png((10, 10)))
    (base / "link.png").symlink_to(tmp_path / "outside.png")
    (base / "dir").mkdir()
    fifo = _fifo(base)
    for url in ("a.png", f"file://{base}/a.png", str(base / "a.png")):
        with pytest.raises(ImageError) as info:
            fetch_image(url, ImageConfig())  # no base directory: no local files at all
        assert info.value.kind == "refused"
    assert fetch_image(str(base / "a.png"), ImageConfig(), str(base)).startswith(b"\x89PNG")
    refused = [
        "../outside.png",
        str(tmp_path / "outside.png"),
        f"file://{tmp_path}/outside.png",
        "link.png",
        "/etc/passwd",
        "/proc/self/environ",
        "../../../../../etc/hostname",
        "/dev/zero",
        "dir",
        fifo.name,
        "a.png\x00.jpg",
    ]
    for url in refused:
        with pytest.raises(ImageError) as info:
            fetch_image(url, ImageConfig(), str(base))
        assert info.value.kind in ("refused", "unreachable"), url
        assert "passwd" not in str(info.value) or url == "/etc/passwd"


def test_formats_outside_the_allow_list_are_refused() -> None:
    for fmt in ("TIFF", "ICO", "TGA", "PPM"):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), "red").save(buf, format=fmt)
        with pytest.raises(ImageError) as info:
            prepare_image(buf.getvalue(), ImageConfig())
        assert info.value.kind == "not_an_image", fmt
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageError) as info:
        prepare_image(eps, ImageConfig())
    assert info.value.kind == "not_an_image"
    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP"):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), "red").save(buf, format=fmt)
        assert prepare_image(buf.getvalue(), ImageConfig())[:2] == b"\xff\xd8", fmt


def test_header_bombs_and_fuzzed_headers_are_image_errors() -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageError) as info:
        prepare_image(bomb, ImageConfig())
    assert info.value.kind == "too_large"
    gif = b"GIF89a" + struct.pack("<HH", 20000, 20000) + b"\x00\x00\x00;"
    with pytest.raises(ImageError) as info:
        prepare_image(gif, ImageConfig())
    assert info.value.kind in ("too_large", "not_an_image")
    good = _png((64, 64))
    import random

    rng = random.Random(7)
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            prepare_image(bytes(data), ImageConfig())
        except ImageError as exc:
            assert exc.kind in ("too_large", "not_an_image")


def test_image_config_validates() -> None:
    with pytest.raises(ValueError, match="max_side"):
        ImageConfig(max_side=5)
