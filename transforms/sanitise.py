"""Merchant HTML to the plain text a model sees, with a note of anything dangerous removed.

Script, style and event-handler content never reach the model or the output: they are
stripped and the prediction is flagged with a warning, rather than the product dropped.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from model_repository.contract import defuse_markup

_DROP_CONTENT = {"script", "style", "iframe", "object", "embed", "noscript", "template"}
_ANY_TAG = re.compile(r"<[^<>]*+>?")
_BLOCK = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.removed: set[str] = set()
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT:
            self._skip_depth += 1
            self.removed.add(f"<{tag}>")
        if any(name.lower().startswith("on") for name, _ in attrs):
            self.removed.add("event-handler attributes")
        if any((value or "").strip().lower().startswith("javascript:") for _, value in attrs):
            self.removed.add("javascript: URLs")
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT and self._skip_depth:
            self._skip_depth -= 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def html_to_text(markup: str) -> tuple[str, list[str]]:
    """Return (plain text, warnings). Paragraph breaks survive as newlines."""
    if "<" not in markup and "&" not in markup:
        return " ".join(markup.split()), []
    parser = _TextExtractor()
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
    warnings = (
        [f"description contained {', '.join(sorted(parser.removed))}; removed"] if parser.removed else []
    )
    return "\n".join(line for line in lines if line), warnings
