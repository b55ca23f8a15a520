"""How long the admin dashboard's four charts take to draw, for this tree or another.

The charts are drawn on every dashboard load, in the web role's threads. This times
each with a year of data (the largest period the dashboard offers) and prints a table:
the median of ``--repeat`` draws and the size of the SVG. Give ``--tree DIR`` (a git
worktree of another version: ``git worktree add /tmp/other REV``) to time that
version's charts instead, for a ratio measured on one machine in one run.

    .venv/bin/python benchmarks/bench_charts.py [--tree DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any


def _cpu() -> str:
    # Not chestaid.runtimes.cpu.cpu_name: importing chestaid here would make a --tree
    # run's charts use this tree's chestaid instead of their own.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _charts(tree: Path | None) -> Any:
    if tree is not None:
        sys.path.insert(0, str(tree.resolve()))
    return importlib.import_module("daemon.web.charts")


def _cases(charts: Any) -> dict[str, Callable[[], str]]:
    rng = random.Random(0)
    start = date(2026, 1, 1)
    days = [
        (start + timedelta(days=i), [rng.betavariate(0.6, 2.0) for _ in range(40)])
        for i in range(365)
    ]
    scores = [rng.random() for _ in range(2000)]
    labels = [int(rng.random() < s) for s in scores]
    runs = [
        (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=6 * i), abs(rng.gauss(0.05, 0.05)))
        for i in range(1460)
    ]
    return {
        "score distribution (365 days x 40)": lambda: charts.score_distribution_svg(
            days, threshold=0.9
        ),
        "reliability diagram (2,000 cases)": lambda: charts.reliability_diagram_svg(scores, labels),
        "confusion matrix": lambda: charts.confusion_matrix_svg(tp=90, fp=40, tn=800, fn=10),
        "PSI history (1,460 runs)": lambda: charts.psi_history_svg(runs, alert_level=0.25),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=None, help="another version's checkout")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    charts = _charts(args.tree)
    print(f"charts from {Path(charts.__file__).parent}; CPU {_cpu()}")
    print(f"{'chart':40} {'median ms':>10} {'SVG kB':>8}")
    for name, draw in _cases(charts).items():
        svg = draw()  # warm up (imports, caches)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            draw()
            times.append(time.perf_counter() - start)
        print(f"{name:40} {statistics.median(times) * 1000:10.1f} {len(svg) / 1000:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
