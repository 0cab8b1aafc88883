"""Merchant HTML to the plain text a model sees, with a note of anything dangerous removed.

Script, style and event-handler content never reach the model or the output: they are
stripped and the prediction is flagged with a warning, rather than the product dropped.
"""

from __future__ import annotations

import html
import re

from model_repository.contract import MarkupText, defuse_markup

__all__ = [
    "html_to_text",
]

_ANY_TAG = re.compile(r"<[^<>]*+>?")


def html_to_text(markup: str) -> tuple[str, list[str]]:
    """Return (plain text, warnings). Paragraph breaks survive as newlines."""
    if "<" not in markup and "&" not in markup:
        return " ".join(markup.split()), []
    parser = MarkupText()
    try:
        # defuse_markup: html.parser is quadratic on unterminated comments and unclosable
        # `<` runs (200k characters of `<a` took 40 s), and raises AssertionError on
        # unknown `<![` sections; both are merchant-controlled.
        parser.feed(defuse_markup(markup))
        parser.close()
        text = html.unescape("".join(parser.parts))
    except Exception:  # noqa: BLE001 - markup the parser cannot read is still a product
        parser.removed.add("unparseable markup")
        text = html.unescape(_ANY_TAG.sub(" ", markup))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    warnings = [f"description contained {', '.join(sorted(parser.removed))}; removed"] if parser.removed else []
    return "\n".join(line for line in lines if line), warnings
