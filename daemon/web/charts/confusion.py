"""The 2x2 confusion matrix: radiologists' reading against ChestAid's call."""

from __future__ import annotations

from daemon.web.charts.svg import (
    BLUE,
    MUTED,
    RED,
    WHITE,
    chart,
    data_text,
    ink_on,
    mix,
    shape,
    text,
)


def _share_text(share: float | None) -> str:
    if share is None:
        return "no studies in row"
    if 0 < share < 0.005:
        return "<1% of row"
    if 0.995 <= share < 1:
        return ">99% of row"
    return f"{share:.0%} of row"


def confusion_matrix_svg(*, tp: int, fp: int, tn: int, fn: int, title: str | None = None) -> str:
    """A 2x2 confusion matrix: radiologists' reading (rows) against ChestAid's call.

    Rows are the truth from feedback (pneumonia, no pneumonia), columns ChestAid's
    call at the threshold (flagged, not flagged). Each cell shows its count large
    and its share of the row small, and is shaded by that share: blue where ChestAid
    agrees with the radiologist, red where it does not. Each cell is a ``<g>`` with
    ``data-cell`` (``tp``, ``fn``, ``fp`` or ``tn``), ``data-count`` and, unless its
    row is empty, ``data-share`` (the row share, e.g. the sensitivity for ``tp``).

    Args:
        tp: studies with pneumonia that ChestAid flagged.
        fp: studies without pneumonia that ChestAid flagged.
        tn: studies without pneumonia that ChestAid did not flag.
        fn: studies with pneumonia that ChestAid did not flag.
        title: accessible name of the chart; a default names what it shows.

    Returns:
        The ``<svg>`` element (all-zero counts give an empty-looking but valid grid).

    Raises:
        ValueError: a count is negative.
    """
    counts = {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    for key, value in counts.items():
        if value < 0:
            raise ValueError(f"{key} must not be negative, got {value}")
    name = (
        title if title is not None else "Confusion matrix: radiologists' reading against ChestAid"
    )

    cell_w, cell_h = 140.0, 92.0
    left, top = 168.0, 64.0
    rows = (("Pneumonia", ("tp", "fn")), ("No pneumonia", ("fp", "tn")))
    columns = ("Flagged", "Not flagged")
    captions = {
        "tp": "true positive",
        "fn": "false negative",
        "fp": "false positive",
        "tn": "true negative",
    }
    body: list[str] = [
        text(
            left + cell_w,
            top - 38,
            "ChestAid's call at the threshold",
            font_weight=600,
            text_anchor="middle",
        )
    ]
    for c, heading in enumerate(columns):
        body.append(
            text(
                left + (c + 0.5) * cell_w,
                top - 14,
                heading,
                text_anchor="middle",
                data_role="column",
            )
        )
    y_title = top + cell_h
    body.append(
        text(
            22,
            y_title,
            "Radiologists' reading",
            font_weight=600,
            text_anchor="middle",
            transform=f"rotate(-90 22 {y_title:.2f})",
        )
    )
    for r, (heading, keys) in enumerate(rows):
        row_total = sum(counts[k] for k in keys)
        mid = top + (r + 0.5) * cell_h
        body.append(text(left - 12, mid - 2, heading, text_anchor="end", data_role="row"))
        body.append(
            text(
                left - 12,
                mid + 15,
                f"n = {row_total}",
                fill=MUTED,
                font_size=11,
                text_anchor="end",
            )
        )
        for c, key in enumerate(keys):
            count = counts[key]
            share = count / row_total if row_total else None
            base = BLUE if key in ("tp", "tn") else RED
            fill = mix(WHITE, base, 0.06 + 0.8 * share) if share is not None else "#f5f5f5"
            ink = ink_on(fill)
            x, y = left + c * cell_w, top + r * cell_h
            body.append(
                shape(
                    "g",
                    shape(
                        "rect",
                        x=x,
                        y=y,
                        width=cell_w,
                        height=cell_h,
                        fill=fill,
                        stroke=WHITE,
                        stroke_width=2,
                    ),
                    text(x + 8, y + 16, captions[key], fill=ink, font_size=10),
                    text(
                        x + cell_w / 2,
                        y + cell_h / 2 + 10,
                        str(count),
                        fill=ink,
                        font_size=28,
                        font_weight=700,
                        text_anchor="middle",
                        data_role="count",
                    ),
                    text(
                        x + cell_w / 2,
                        y + cell_h - 12,
                        _share_text(share),
                        fill=ink,
                        font_size=11,
                        text_anchor="middle",
                        data_role="share",
                    ),
                    data_cell=key,
                    data_count=count,
                    data_share=data_text(share) if share is not None else None,
                )
            )
    note_y = top + 2 * cell_h + 26
    body.append(
        text(
            left - 140,
            note_y,
            "Shading: share of the row (blue: agrees with the radiologist, red: disagrees)",
            fill=MUTED,
            font_size=11,
        )
    )
    desc = (
        f"With pneumonia: {tp} flagged (true positives), {fn} not flagged (false "
        f"negatives). Without pneumonia: {fp} flagged (false positives), {tn} not "
        f"flagged (true negatives)."
    )
    return chart("confusion", (464, int(note_y) + 12), name, desc, body)
