"""SVG building blocks shared by the charts: markup, the root element, colours.

Every piece of text passes through ``esc``; no ``style`` attribute and no ``id`` is
ever written, so the charts fit the pages' Content-Security-Policy and any number of
them can share a page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

SVG_NS = "http://www.w3.org/2000/svg"

FONT = "system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"
# Colours chosen for contrast on white: ink 17:1, muted 8.5:1, blue 8:1, red 5.6:1.
INK = "#1a1a1a"
MUTED = "#4d4d4d"
GRID = "#e0e0e0"
BLUE = "#1f4e9a"
RED = "#c62828"
WHITE = "#ffffff"
DASH = "6 4"

# Characters XML 1.0 cannot carry at all, even escaped (controls, lone surrogates).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Value = str | int | float


# --------------------------------------------------------------------------- markup


def esc(content: str) -> str:
    """``content`` safe for XML character data and double- or single-quoted attributes."""
    content = _NOT_XML.sub("\ufffd", content)
    return (
        content.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _attr_text(value: Value) -> str:
    # Floats are coordinates in viewBox units: two decimals are plenty.
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def el(tag: str, attrs: Mapping[str, Value | None], *children: str) -> str:
    """One element; attributes whose value is None are left out, children are markup."""
    head = tag + "".join(
        f' {name}="{esc(_attr_text(value))}"' for name, value in attrs.items() if value is not None
    )
    if not children:
        return f"<{head}/>"
    return f"<{head}>{''.join(children)}</{tag}>"


def shape(tag: str, *children: str, **attrs: Value | None) -> str:
    """Like ``el``, with attributes as keywords that use ``_`` for ``-`` (``stroke_width``)."""
    return el(tag, {name.replace("_", "-"): value for name, value in attrs.items()}, *children)


def text(x: float, y: float, content: str, **style: Value | None) -> str:
    """A ``<text>`` at (x, y), near-black unless ``fill`` is given."""
    return shape("text", esc(content), x=x, y=y, **({"fill": INK} | style))


def tooltip(content: str) -> str:
    """A ``<title>`` child: the browser shows it on hover, screen readers read it."""
    return el("title", {}, esc(content))


def halo() -> dict[str, Value]:
    # A white outline under text that may sit on lines or shaded cells.
    return {
        "stroke": WHITE,
        "stroke_width": 3,
        "stroke_linejoin": "round",
        "paint_order": "stroke",
    }


def data_text(value: float) -> str:
    """A number for a ``data-`` attribute: six significant digits."""
    return f"{value:.6g}"


def chart(
    kind: str,
    size: tuple[int, int],
    title: str,
    desc: str,
    body: Sequence[str],
    *,
    empty: bool = False,
) -> str:
    """The root element around ``body``: accessible name, description and viewBox."""
    width, height = size
    attrs: dict[str, Value | None] = {
        "xmlns": SVG_NS,
        "viewBox": f"0 0 {width} {height}",
        "width": "100%",
        "role": "img",
        "aria-label": title,
        "class": f"chart chart-{kind}",
        "data-chart": kind,
        "data-empty": "true" if empty else None,
        "font-family": FONT,
        "font-size": 12,
    }
    return el("svg", attrs, tooltip(title), el("desc", {}, esc(desc)), *body)


def placeholder(kind: str, title: str, message: str) -> str:
    """A small chart that only says why there is nothing to draw."""
    width, height = 480, 120
    body = [
        shape(
            "rect",
            x=1,
            y=1,
            width=width - 2,
            height=height - 2,
            rx=6,
            fill="#fafafa",
            stroke="#bdbdbd",
            stroke_dasharray="4 3",
        ),
        text(
            width / 2,
            height / 2 + 5,
            message,
            fill=MUTED,
            font_size=15,
            text_anchor="middle",
            data_role="placeholder",
        ),
    ]
    return chart(kind, (width, height), title, message, body, empty=True)


# ------------------------------------------------------------------------ colours


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def mix(base: str, other: str, t: float) -> str:
    """The colour ``t`` of the way from ``base`` to ``other`` (t in [0, 1])."""
    a, b = _rgb(base), _rgb(other)
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return f"#{r:02x}{g:02x}{bl:02x}"


def _luminance(colour: str) -> float:
    """WCAG relative luminance."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ink_on(background: str) -> str:
    """White or near-black, whichever contrasts more with ``background``."""
    lum = _luminance(background)
    on_white = 1.05 / (lum + 0.05)
    on_ink = (lum + 0.05) / (_luminance(INK) + 0.05)
    return WHITE if on_white > on_ink else INK
