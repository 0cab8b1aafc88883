"""Cheap image understanding for the CPU baseline: dominant colours and background.

A vision LLM describes the picture; the baseline can only say what colours it sees. That
is still useful: colour is the attribute merchants most often leave out of the text.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

from PIL import Image

__all__ = [
    "NAMED_COLOURS",
    "ImageSummary",
    "nearest_colour",
    "summarise_image",
]

# Reference RGB points for the colour names in Shopify's `color` attribute.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "Black": (20, 20, 20),
    "White": (245, 245, 245),
    "Gray": (128, 128, 128),
    "Silver": (192, 192, 198),
    "Red": (200, 30, 35),
    "Pink": (240, 140, 180),
    "Orange": (240, 130, 30),
    "Yellow": (240, 220, 40),
    "Green": (40, 150, 60),
    "Blue": (40, 90, 200),
    "Navy": (25, 35, 90),
    "Purple": (120, 50, 160),
    "Brown": (110, 70, 40),
    "Beige": (225, 205, 165),
    "Gold": (212, 175, 55),
    "Bronze": (160, 105, 50),
    "Rose gold": (200, 140, 130),
}


@dataclass(frozen=True, slots=True)
class ImageSummary:
    width: int
    height: int
    subject_colours: tuple[str, ...]  # most frequent first, background excluded
    background: str | None

    def describe(self) -> str:
        if not self.subject_colours:
            return f"Plain {self.background or 'unknown'} image."
        colours = " and ".join(c.lower() for c in self.subject_colours[:2])
        bg = f" on a {self.background.lower()} background" if self.background else ""
        return f"A {colours} product{bg}."


def nearest_colour(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    return min(
        NAMED_COLOURS,
        key=lambda n: (r - NAMED_COLOURS[n][0]) ** 2 + (g - NAMED_COLOURS[n][1]) ** 2 + (b - NAMED_COLOURS[n][2]) ** 2,
    )


def summarise_image(data: bytes) -> ImageSummary:
    """Dominant colour names of the subject and of the background (the border pixels)."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        small = img.convert("RGB").resize((48, 48))
    pixels = list(small.get_flattened_data()) if hasattr(small, "get_flattened_data") else list(small.getdata())
    border = [p for i, p in enumerate(pixels) if i < 48 or i >= 48 * 47 or i % 48 in (0, 47)]
    background = Counter(nearest_colour(p) for p in border).most_common(1)[0][0]
    counts = Counter(nearest_colour(p) for p in pixels)
    total = len(pixels)
    subject = tuple(
        name
        for name, n in counts.most_common()
        # Ignore the background and specks (anti-aliasing, outlines) under 4% of pixels.
        if name != background and n / total >= 0.04
    )
    return ImageSummary(width, height, subject, background)
