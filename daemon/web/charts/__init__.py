"""Inline SVG charts for the admin dashboard.

Pure functions: numbers in, one standalone ``<svg>`` string out; no database, clock,
JavaScript or plotting library. The pages embed the strings with ``|safe``, so every
piece of text is XML-escaped here (and characters XML cannot carry are replaced).

Every chart has ``role="img"``, an ``aria-label`` and a ``<title>`` naming it, a
``<desc>`` summing up its data, a ``viewBox`` and ``width="100%"`` without a height,
so it scales with its container. No ``id`` attributes are used, so any number of
charts can share a page. The data behind each mark is repeated in ``data-``
attributes (``data-role`` names the kind of mark) for tests and the browser test.
Empty input gives a small placeholder chart with ``data-empty="true"``.

One module a chart (``reliability``, ``distribution``, ``confusion``, ``psi``), on
shared building blocks: ``svg`` (markup, the root element, colours), ``plot``
(scales, frame, axes, ticks, rules, legends, marks) and ``checks`` (input checks).
"""

from daemon.web.charts.confusion import confusion_matrix_svg
from daemon.web.charts.distribution import score_distribution_svg
from daemon.web.charts.psi import psi_history_svg
from daemon.web.charts.reliability import reliability_diagram_svg
from daemon.web.charts.svg import SVG_NS

__all__ = [
    "SVG_NS",
    "confusion_matrix_svg",
    "psi_history_svg",
    "reliability_diagram_svg",
    "score_distribution_svg",
]
