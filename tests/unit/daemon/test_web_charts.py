"""The dashboard's inline SVG charts: well-formed, accessible, and drawn from the data."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from daemon.web.charts import (
    SVG_NS,
    confusion_matrix_svg,
    psi_history_svg,
    reliability_diagram_svg,
    score_distribution_svg,
)

D0 = date(2024, 5, 1)
T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{{{SVG_NS}}}svg"
    return root


def local(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def by_role(root: ET.Element, role: str) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("data-role") == role]


def num(element: ET.Element, name: str) -> float:
    value = element.get(name)
    assert value is not None, f"{local(element)} has no {name}"
    return float(value)


def all_text(root: ET.Element) -> str:
    return " ".join("".join(e.itertext()) for e in root.iter() if local(e) == "text")


def path_vertices(d: str) -> list[tuple[str, float, float]]:
    return [(c, float(x), float(y)) for c, x, y in re.findall(r"([ML])([-\d.]+) ([-\d.]+)", d)]


def every_chart() -> dict[str, str]:
    return {
        "reliability": reliability_diagram_svg([0.1, 0.8, 0.85], [0, 1, 0]),
        "reliability-empty": reliability_diagram_svg([], []),
        "distribution": score_distribution_svg(
            [(D0, [0.1, 0.5]), (D0 + timedelta(days=1), [0.7])], threshold=0.4
        ),
        "distribution-empty": score_distribution_svg([]),
        "confusion": confusion_matrix_svg(tp=8, fp=3, tn=40, fn=2),
        "psi": psi_history_svg([(T0, 0.05), (T0 + timedelta(days=1), 0.3)], alert_level=0.2),
        "psi-empty": psi_history_svg([], alert_level=0.2),
    }


@pytest.mark.parametrize("name", list(every_chart()))
def test_every_chart_is_a_scalable_accessible_standalone_svg(name: str) -> None:
    svg = every_chart()[name]
    root = parse(svg)
    assert root.get("role") == "img"
    label = root.get("aria-label")
    assert label
    first = next(iter(root))
    assert local(first) == "title"
    assert first.text == label
    assert root.get("width") == "100%"
    assert root.get("height") is None
    view_box = [float(v) for v in (root.get("viewBox") or "").split()]
    assert len(view_box) == 4
    assert view_box[2] > 0
    assert view_box[3] > 0
    for element in root.iter():
        assert local(element) not in ("script", "foreignObject")
        # No ids: several charts share one page. No event handlers: no JavaScript.
        assert "id" not in element.attrib
        assert not any(attr.startswith("on") for attr in element.attrib)
    assert not svg.startswith("<?xml")
    # Every mark lies inside the viewBox.
    for element in root.iter():
        for attr in ("x", "cx", "x1", "x2"):
            if attr in element.attrib:
                assert 0 <= num(element, attr) <= view_box[2], (name, local(element), attr)
        for attr in ("y", "cy", "y1", "y2"):
            if attr in element.attrib:
                assert 0 <= num(element, attr) <= view_box[3], (name, local(element), attr)


# ---------------------------------------------------------------- reliability


def test_perfectly_calibrated_bins_sit_on_the_diagonal() -> None:
    scores: list[float] = []
    labels: list[int] = []
    for i in range(10):
        centre = (i + 0.5) / 10  # 0.05, 0.15, ... : 1, 3, 5, ... of 20 positive
        positives = 2 * i + 1
        scores += [centre] * 20
        labels += [1] * positives + [0] * (20 - positives)
    root = parse(reliability_diagram_svg(scores, labels))

    (diagonal,) = by_role(root, "diagonal")
    x1, y1, x2, y2 = (num(diagonal, a) for a in ("x1", "y1", "x2", "y2"))
    bins = by_role(root, "bin")
    assert [int(num(b, "data-bin")) for b in bins] == list(range(10))
    for i, marker in enumerate(bins):
        mean, observed = num(marker, "data-mean"), num(marker, "data-observed")
        assert mean == pytest.approx((i + 0.5) / 10)
        assert observed == pytest.approx(mean)
        assert num(marker, "data-count") == 20
        assert num(marker, "data-positives") == 2 * i + 1
        # On the diagonal: the position is (mean, observed) in the (0,0)-(1,1) frame.
        assert num(marker, "cx") == pytest.approx(x1 + mean * (x2 - x1), abs=0.01)
        assert num(marker, "cy") == pytest.approx(y1 + observed * (y2 - y1), abs=0.01)


def test_an_overconfident_bin_is_drawn_at_its_observed_rate_not_its_score() -> None:
    root = parse(reliability_diagram_svg([0.9] * 4, [0, 0, 0, 1]))
    (diagonal,) = by_role(root, "diagonal")
    (marker,) = by_role(root, "bin")
    assert num(marker, "data-observed") == pytest.approx(0.25)
    assert num(marker, "data-mean") == pytest.approx(0.9)
    y1, y2 = num(diagonal, "y1"), num(diagonal, "y2")
    assert num(marker, "cy") == pytest.approx(y1 + 0.25 * (y2 - y1), abs=0.01)
    assert num(marker, "cy") > y1 + 0.9 * (y2 - y1)  # below the diagonal (SVG y grows down)


def test_reliability_bins_count_their_studies() -> None:
    scores = [0.02, 0.05, 0.08, 0.55, 0.58, 1.0]
    labels = [0, 0, 1, 1, 1, 1]
    root = parse(reliability_diagram_svg(scores, labels))
    bins = {int(num(b, "data-bin")): b for b in by_role(root, "bin")}
    assert sorted(bins) == [0, 5, 9]  # empty bins get no marker; 1.0 is in the top bin
    assert [num(bins[i], "data-count") for i in (0, 5, 9)] == [3, 2, 1]
    assert num(bins[0], "data-observed") == pytest.approx(1 / 3)
    assert num(bins[0], "data-mean") == pytest.approx(0.05)
    assert num(bins[5], "data-lo") == pytest.approx(0.5)
    assert num(bins[5], "data-hi") == pytest.approx(0.6)
    # The marker's area grows with its count, and the count is written next to it.
    assert num(bins[0], "r") > num(bins[5], "r") > num(bins[9], "r")
    counts = {int(num(t, "data-bin")): t.text for t in by_role(root, "bin-count")}
    assert counts == {0: "3", 5: "2", 9: "1"}
    (curve,) = by_role(root, "curve")
    assert len((curve.get("points") or "").split()) == 3


def test_n_bins_changes_the_binning() -> None:
    root = parse(reliability_diagram_svg([0.1, 0.3], [0, 1], n_bins=2))
    (marker,) = by_role(root, "bin")
    assert num(marker, "data-count") == 2
    assert num(marker, "data-hi") == pytest.approx(0.5)


def test_reliability_without_studies_is_a_placeholder() -> None:
    root = parse(reliability_diagram_svg([], []))
    assert root.get("data-empty") == "true"
    assert "no labelled studies yet" in all_text(root).lower()
    assert by_role(root, "bin") == []


@pytest.mark.parametrize(
    ("scores", "labels", "n_bins"),
    [
        ([0.2, 0.4], [1], 10),
        ([0.2], [2], 10),
        ([0.2], [0.5], 10),
        ([1.5], [1], 10),
        ([math.nan], [1], 10),
        ([0.2], [1], 0),
    ],
)
def test_reliability_rejects_bad_input(scores: list[float], labels: list[int], n_bins: int) -> None:
    with pytest.raises(ValueError):
        reliability_diagram_svg(scores, labels, n_bins=n_bins)


# --------------------------------------------------------- score distribution


def test_day_columns_are_in_date_order_with_their_counts_and_cells() -> None:
    d1, d2, d3 = D0, D0 + timedelta(days=1), D0 + timedelta(days=2)
    days = [(d3, [0.9, 0.95, 0.85]), (d1, [0.05, 0.15, 0.5, 0.55]), (d2, [0.5])]
    root = parse(score_distribution_svg(days, threshold=0.5))

    columns = by_role(root, "day")
    assert [c.get("data-day") for c in columns] == [d.isoformat() for d in (d1, d2, d3)]
    assert [num(c, "data-count") for c in columns] == [4, 1, 3]
    assert [num(c, "data-median") for c in columns] == pytest.approx([0.325, 0.5, 0.9])
    lefts = [min(num(r, "x") for r in c if local(r) == "rect") for c in columns]
    assert lefts == sorted(lefts)

    cells = {int(num(r, "data-bin")): r for r in columns[0] if r.get("data-role") == "cell"}
    assert sorted(cells) == [0, 1, 5]
    assert num(cells[5], "data-count") == 2
    assert num(cells[5], "data-fraction") == pytest.approx(0.5)
    assert sum(num(r, "data-fraction") for r in cells.values()) == pytest.approx(1.0)
    # A larger share is shaded darker.
    assert num(cells[5], "fill-opacity") > num(cells[0], "fill-opacity")
    # Higher bins are drawn higher up.
    assert num(cells[5], "y") < num(cells[1], "y") < num(cells[0], "y")


def test_median_line_has_one_vertex_per_day_at_the_median() -> None:
    days = [(D0 + timedelta(days=i), [0.2 + 0.1 * i, 0.3 + 0.1 * i]) for i in range(5)]
    days.append((D0 + timedelta(days=5), [0.5]))
    root = parse(score_distribution_svg(days, threshold=0.5))
    (line,) = by_role(root, "median-line")
    vertices = path_vertices(line.get("d") or "")
    assert len(vertices) == 6
    assert [c for c, _, _ in vertices] == ["M", "L", "L", "L", "L", "L"]
    xs = [x for _, x, _ in vertices]
    assert xs == sorted(xs)
    points = by_role(root, "median-point")
    assert [p.get("data-day") for p in points] == [d.isoformat() for d, _ in days]
    # The day whose median is the threshold sits on the threshold line; higher is above.
    (threshold,) = by_role(root, "threshold")
    assert num(threshold, "data-threshold") == pytest.approx(0.5)
    assert num(points[5], "cy") == pytest.approx(num(threshold, "y1"), abs=0.01)
    assert num(points[4], "cy") < num(threshold, "y1") < num(points[0], "cy")
    assert vertices[5][2] == pytest.approx(num(points[5], "cy"), abs=0.01)


def test_days_without_studies_break_the_median_line() -> None:
    days = [
        (D0, [0.2]),
        (D0 + timedelta(days=1), []),
        (D0 + timedelta(days=2), [0.4]),
        (D0 + timedelta(days=4), [0.6]),  # day 3 not given at all
        (D0 + timedelta(days=5), [0.6]),
    ]
    root = parse(score_distribution_svg(days))
    columns = by_role(root, "day")
    assert [num(c, "data-count") for c in columns] == [1, 0, 1, 1, 1]
    assert columns[1].get("data-median") is None
    (line,) = by_role(root, "median-line")
    assert [c for c, _, _ in path_vertices(line.get("d") or "")] == ["M", "M", "M", "L"]
    assert len(by_role(root, "median-point")) == 4
    assert by_role(root, "threshold") == []


def test_repeated_days_are_merged() -> None:
    root = parse(score_distribution_svg([(D0, [0.1]), (D0, [0.3, 0.9])]))
    (column,) = by_role(root, "day")
    assert num(column, "data-count") == 3
    assert num(column, "data-median") == pytest.approx(0.3)


def test_date_labels_are_thinned_for_many_days() -> None:
    days = [(D0 + timedelta(days=i), [0.5]) for i in range(90)]
    root = parse(score_distribution_svg(days))
    assert len(by_role(root, "day")) == 90
    labels = [t.text or "" for t in by_role(root, "x-tick")]
    assert 2 <= len(labels) <= 8
    assert labels[0] == D0.isoformat()
    assert labels == sorted(labels)
    assert all(date.fromisoformat(label) for label in labels)


def test_a_few_days_are_all_labelled() -> None:
    days = [(D0 + timedelta(days=i), [0.5]) for i in range(3)]
    labels = [t.text for t in by_role(parse(score_distribution_svg(days)), "x-tick")]
    assert labels == ["2024-05-01", "2024-05-02", "2024-05-03"]


@pytest.mark.parametrize("days", [[], [(D0, [])]])
def test_distribution_without_scores_is_a_placeholder(days: list[tuple[date, list[float]]]) -> None:
    root = parse(score_distribution_svg(days))
    assert root.get("data-empty") == "true"
    assert "no scored studies in this period" in all_text(root).lower()
    assert by_role(root, "day") == []


def test_distribution_rejects_bad_scores_and_threshold() -> None:
    with pytest.raises(ValueError):
        score_distribution_svg([(D0, [1.2])])
    with pytest.raises(ValueError):
        score_distribution_svg([(D0, [0.2])], threshold=-0.1)
    with pytest.raises(ValueError):
        score_distribution_svg([(D0, [0.2])], n_bins=0)


# ----------------------------------------------------------- confusion matrix


def test_confusion_cells_carry_their_counts_and_row_shares() -> None:
    root = parse(confusion_matrix_svg(tp=32, fp=6, tn=54, fn=8))
    cells = {e.get("data-cell"): e for e in root.iter() if "data-cell" in e.attrib}
    assert set(cells) == {"tp", "fp", "tn", "fn"}
    assert {k: num(v, "data-count") for k, v in cells.items()} == {
        "tp": 32,
        "fp": 6,
        "tn": 54,
        "fn": 8,
    }
    assert num(cells["tp"], "data-share") == pytest.approx(0.8)  # sensitivity
    assert num(cells["tn"], "data-share") == pytest.approx(0.9)  # specificity
    for key, count in (("tp", "32"), ("fn", "8")):
        (big,) = (t for t in cells[key].iter() if t.get("data-role") == "count")
        assert big.text == count
    (share,) = (t for t in cells["tp"].iter() if t.get("data-role") == "share")
    assert share.text == "80% of row"

    def rect(key: str) -> ET.Element:
        return next(e for e in cells[key] if local(e) == "rect")

    # Truth in rows, the call in columns: tp beside fn, above fp.
    assert num(rect("tp"), "y") == num(rect("fn"), "y") < num(rect("fp"), "y")
    assert num(rect("tp"), "x") == num(rect("fp"), "x") < num(rect("fn"), "x")
    # Shaded by row share: the larger share of a row is darker.
    assert luminance(rect("tp").get("fill") or "") < luminance(rect("fn").get("fill") or "")


def luminance(colour: str) -> float:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_tiny_shares_are_escaped_and_empty_rows_have_no_share() -> None:
    svg = confusion_matrix_svg(tp=1, fp=0, tn=0, fn=999)
    assert "&lt;1% of row" in svg
    root = parse(svg)
    cells = {e.get("data-cell"): e for e in root.iter() if "data-cell" in e.attrib}
    (share,) = (t for t in cells["tp"].iter() if t.get("data-role") == "share")
    assert share.text == "<1% of row"
    assert cells["fp"].get("data-share") is None
    assert num(cells["fp"], "data-count") == 0


def test_confusion_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="fn"):
        confusion_matrix_svg(tp=1, fp=1, tn=1, fn=-1)


# ---------------------------------------------------------------- PSI history


def test_psi_runs_in_time_order_with_alerts_marked_red() -> None:
    points = [
        (T0 + timedelta(days=2), 0.31),
        (T0, 0.05),
        (T0 + timedelta(days=1), 0.2),
        (T0 + timedelta(days=3), math.nan),  # a run without a PSI
    ]
    root = parse(psi_history_svg(points, alert_level=0.2))
    runs = by_role(root, "run")
    assert [datetime.fromisoformat(r.get("data-time") or "") for r in runs] == [
        T0,
        T0 + timedelta(days=1),
        T0 + timedelta(days=2),
    ]
    assert [num(r, "data-psi") for r in runs] == pytest.approx([0.05, 0.2, 0.31])
    assert [r.get("data-alert") for r in runs] == ["false", "true", "true"]
    fills = [r.get("fill") for r in runs]
    assert fills[1] == fills[2] != fills[0]
    xs = [num(r, "cx") for r in runs]
    assert xs[0] < xs[1] < xs[2]
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.01)  # a time axis

    (alert,) = by_role(root, "alert-line")
    assert num(alert, "data-level") == pytest.approx(0.2)
    assert alert.get("stroke-dasharray")
    assert alert.get("stroke") == fills[2]
    assert num(runs[1], "cy") == pytest.approx(num(alert, "y1"), abs=0.01)
    assert num(runs[2], "cy") < num(alert, "y1") < num(runs[0], "cy")
    (line,) = by_role(root, "psi-line")
    assert len((line.get("points") or "").split()) == 3
    ticks = [t.text for t in by_role(root, "x-tick")]
    assert ticks[0] == "2024-05-02"  # midnight ticks inside the span, in UTC


def test_psi_times_in_other_zones_are_shown_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    naive = datetime(2024, 5, 1, 12, 0)
    points = [(datetime(2024, 5, 1, 9, 0, tzinfo=plus_two), 0.1), (naive, 0.1)]
    runs = by_role(parse(psi_history_svg(points, alert_level=0.25)), "run")
    assert [r.get("data-time") for r in runs] == [
        "2024-05-01T07:00:00+00:00",
        "2024-05-01T12:00:00+00:00",
    ]


def test_a_single_run_is_drawn() -> None:
    root = parse(psi_history_svg([(T0, 0.4)], alert_level=0.25))
    (run,) = by_role(root, "run")
    assert run.get("data-alert") == "true"
    assert [t.text for t in by_role(root, "x-tick")] == ["05-01 06:00"]


@pytest.mark.parametrize("points", [[], [(T0, math.nan)]])
def test_psi_without_runs_is_a_placeholder(points: list[tuple[datetime, float]]) -> None:
    root = parse(psi_history_svg(points, alert_level=0.2))
    assert root.get("data-empty") == "true"
    assert "no drift figure yet" in all_text(root).lower()


def test_psi_rejects_a_bad_alert_level_or_negative_psi() -> None:
    with pytest.raises(ValueError):
        psi_history_svg([(T0, 0.1)], alert_level=0.0)
    with pytest.raises(ValueError):
        psi_history_svg([(T0, 0.1)], alert_level=math.inf)
    with pytest.raises(ValueError):
        psi_history_svg([(T0, -0.1)], alert_level=0.2)


# ------------------------------------------------------------------ escaping

HOSTILE = 'Site <A&B> "north" \x01</svg><script>alert(1)</script>'


@pytest.mark.parametrize(
    "svg",
    [
        reliability_diagram_svg([0.3], [1], title=HOSTILE),
        reliability_diagram_svg([], [], title=HOSTILE),
        score_distribution_svg([(D0, [0.3])], title=HOSTILE),
        confusion_matrix_svg(tp=1, fp=2, tn=3, fn=4, title=HOSTILE),
        psi_history_svg([(T0, 0.1)], alert_level=0.2, title=HOSTILE),
    ],
)
def test_titles_are_escaped(svg: str) -> None:
    assert "<script" not in svg
    assert "&lt;A&amp;B&gt;" in svg
    root = parse(svg)
    # The control character XML cannot carry is replaced; the rest survives intact.
    expected = HOSTILE.replace("\x01", "\ufffd")
    assert root.get("aria-label") == expected
    assert next(iter(root)).text == expected
    assert root.find(f"{{{SVG_NS}}}script") is None
