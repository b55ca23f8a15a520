"""The robustness report in words and pictures: summary, tables, comparison, plots.

Functions here read the JSON-ready dict :func:`chestaid.robustness.run_robustness`
returns (as stored in ``robustness.json``); none of them scores anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chestaid.corruptions import NORMAL_SHIFT_SEVERITIES, REPORT_SEVERITIES
from chestaid.errors import ConfigurationError

# Raised whenever a condition, a severity or a rule of the report changes, so stored
# results of another protocol are not compared or reused as if they were alike.
PROTOCOL_VERSION = 1


def protocol(*, seed: int, n_boot: int, input_size: int) -> dict[str, Any]:
    """The fixed conditions and rules of the report, recorded with every result."""
    return {
        "version": PROTOCOL_VERSION,
        "report_severities": {k: list(v) for k, v in REPORT_SEVERITIES.items()},
        "normal_shift_severities": {k: list(v) for k, v in NORMAL_SHIFT_SEVERITIES.items()},
        "quarter_turns": [1, 2, 3],
        "featureless_input_size": input_size,
        "applied_to": "decoded grey image in [0, 1], before chestaid.preprocess.preprocess",
        "seed": seed,
        "bootstrap": {"resamples": n_boot, "unit": "patient", "stratified_by_class": True},
        "flag_rule": "flagged = assessable and calibrated score >= governed threshold; "
        "a not-assessable image counts as not flagged (also for score >= 0.5)",
        "auc_rule": "ROC-AUC of the logit on all images, and on assessable images only",
    }


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a recipe is chosen on, read from a full result."""
    corrupted = [
        (c["label"], c["roc_auc_logit"]["value"])
        for c in result["corruptions"][1:]
        if c["roc_auc_logit"] is not None
    ]
    clean_auc = result["corruptions"][0]["roc_auc_logit"]
    worst = min(corrupted, key=lambda item: item[1]) if corrupted else None
    shifts = [s for s in result["normal_shifts"][1:] if s["flag_rate"] is not None]
    worst_shift = max(shifts, key=lambda s: s["flag_rate"]) if shifts else None
    turned = [o["flag_rate"] for o in result["orientation"] if o["family"] == "quarter_turn"]
    by_condition = {o["condition"]: o for o in result["orientation"]}
    governed = bool(result["threshold"]["governed"])
    return {
        "clean_roc_auc_logit": clean_auc["value"] if clean_auc else None,
        "mean_corrupted_roc_auc_logit": (
            float(np.mean([v for _, v in corrupted])) if corrupted else None
        ),
        "worst_corrupted_roc_auc_logit": (
            {"value": worst[1], "condition": worst[0]} if worst else None
        ),
        "normals_flag_rate_clean": result["normal_shifts"][0]["flag_rate"],
        "normals_flag_rate_worst_shift": (
            {"value": worst_shift["flag_rate"], "condition": worst_shift["label"]}
            if worst_shift
            else None
        ),
        "featureless_flagged": (
            sum(bool(f["flagged"]) for f in result["featureless"]) if governed else None
        ),
        "featureless_score_ge_050": sum(f["score_ge_050"] for f in result["featureless"]),
        "featureless_not_assessable": sum(not f["assessable"] for f in result["featureless"]),
        "featureless_n": len(result["featureless"]),
        "upright_pneumonia_flag_rate": by_condition["pneumonia, upright"]["flag_rate"],
        "turned_pneumonia_flag_rate_mean": (
            float(np.mean(turned)) if turned and None not in turned else None
        ),
        "inverted_normals_flag_rate": by_condition["normal, inverted (1 - x)"]["flag_rate"],
        "inverted_pneumonia_flag_rate": by_condition["pneumonia, inverted (1 - x)"]["flag_rate"],
    }


def write_plots(result: dict[str, Any], out: Path) -> list[Path]:
    """ROC-AUC against severity per family, and normals' flag rate against severity."""
    from chestaid import plots

    auc_series: dict[str, list[tuple[str, float]]] = {}
    clean = result["corruptions"][0]["roc_auc_logit"]
    for c in result["corruptions"][1:]:
        if c["roc_auc_logit"] is None or clean is None:
            continue
        series = auc_series.setdefault(c["family"], [("clean", clean["value"])])
        series.append((c["label"], c["roc_auc_logit"]["value"]))
    governed = bool(result["threshold"]["governed"])
    key = "flag_rate" if governed else "flag_rate_050"
    first = result["normal_shifts"][0]
    flag_series: dict[str, list[tuple[str, float]]] = {}
    if first[key] is not None:
        for s in result["normal_shifts"][1:]:
            series = flag_series.setdefault(s["family"], [("clean", first[key])])
            series.append((s["label"], s[key]))
    # A good model's AUCs sit close to 1: zoom in on the range they span.
    lowest = min((v for points in auc_series.values() for _, v in points), default=0.0)
    written = [
        plots.plot_levels(
            auc_series,
            out / "robustness_auc.png",
            ylabel="ROC-AUC (logit)",
            title="ROC-AUC under corruptions",
            ylim=(max(0.0, lowest - 0.05), 1.005),
        ),
        plots.plot_levels(
            flag_series,
            out / "robustness_normals_flagged.png",
            ylabel="normals flagged" + (" (governed threshold)" if governed else " (score >= 0.5)"),
            title="Normals flagged under acquisition shifts",
        ),
    ]
    return written


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _auc_cell(auc: dict[str, Any] | None) -> str:
    if auc is None:
        return "-"
    if auc.get("ci95") is None:
        return _num(auc["value"])
    low, high = auc["ci95"]
    return f"{auc['value']:.4f} [{low:.4f}, {high:.4f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _summary_lines(s: dict[str, Any]) -> list[str]:
    worst = s["worst_corrupted_roc_auc_logit"]
    shift = s["normals_flag_rate_worst_shift"]
    flagged = "-" if s["featureless_flagged"] is None else str(s["featureless_flagged"])
    return [
        "### Summary",
        "",
        f"- ROC-AUC clean {_num(s['clean_roc_auc_logit'])}, mean under corruptions "
        f"{_num(s['mean_corrupted_roc_auc_logit'])}, worst "
        + ("-" if worst is None else f"{worst['value']:.4f} ({worst['condition']})"),
        f"- normals flagged: clean {_pct(s['normals_flag_rate_clean'])}, worst shift "
        + ("-" if shift is None else f"{_pct(shift['value'])} ({shift['condition']})"),
        f"- featureless inputs: {flagged} of {s['featureless_n']} flagged, "
        f"{s['featureless_score_ge_050']} with score >= 0.5, "
        f"{s['featureless_not_assessable']} not assessable",
        f"- pneumonia flagged: upright {_pct(s['upright_pneumonia_flag_rate'])}, turned "
        f"(mean of 90/180/270) {_pct(s['turned_pneumonia_flag_rate_mean'])}; inverted: "
        f"normals {_pct(s['inverted_normals_flag_rate'])}, "
        f"pneumonias {_pct(s['inverted_pneumonia_flag_rate'])}",
    ]


def robustness_table(result: dict[str, Any]) -> str:
    """The whole report of one bundle as markdown (what ``chestaid evaluate --robustness`` prints)."""
    cases, threshold = result["cases"], result["threshold"]
    bundle = result.get("bundle", {})
    governed = bool(threshold["governed"])
    lines = [
        f"## Robustness of {bundle.get('version', 'the model')} "
        f"({bundle.get('architecture', '?')}, {bundle.get('input_size', '?')} px)",
        "",
        f"{cases['n']} cases ({cases['positives']} pneumonia, {cases['negatives']} normal; "
        f"{cases['source']}, split {cases['split']}). "
        + (
            f"Governed threshold {threshold['value']:.6g}."
            if governed
            else "No governed threshold: only score >= 0.5 is counted."
        ),
        "ROC-AUC is of the logit, 95% patient-bootstrap interval in brackets. "
        "A not-assessable image counts as NOT flagged.",
        "",
        *_summary_lines(result["summary"]),
        "",
        "### ROC-AUC under corruptions (applied before preprocessing)",
        "",
    ]
    lines += _table(
        [
            "condition",
            "ROC-AUC [95% CI]",
            "ROC-AUC assessable (n)",
            "not assessable",
            "normals flagged",
            "normals >= 0.5",
            "pneumonia flagged",
        ],
        [
            [
                c["label"],
                _auc_cell(c["roc_auc_logit"]),
                (
                    "-"
                    if c["roc_auc_logit_assessable"] is None
                    else f"{c['roc_auc_logit_assessable']['value']:.4f} "
                    f"({c['roc_auc_logit_assessable']['n']})"
                ),
                _pct(c["not_assessable_rate"]),
                _pct(c["normal"]["flag_rate"]),
                _pct(c["normal"]["flag_rate_050"]),
                _pct(c["pneumonia"]["flag_rate"]),
            ]
            for c in result["corruptions"]
        ],
    )
    lines += [
        "",
        f"Inverted grey scale (1 - x), all cases: ROC-AUC {_auc_cell(result['inverted_roc_auc_logit'])}",
        "",
        f"### Normals under acquisition shifts (n = {result['normal_shifts'][0]['n']})",
        "",
    ]
    lines += _table(
        ["condition", "flagged", "score >= 0.5", "not assessable", "median logit shift"],
        [
            [
                s["label"],
                _pct(s["flag_rate"]),
                _pct(s["flag_rate_050"]),
                _pct(s["not_assessable_rate"]),
                "-" if s["median_logit_shift"] is None else f"{s['median_logit_shift']:+.3f}",
            ]
            for s in result["normal_shifts"]
        ],
    )
    size = result["protocol"]["featureless_input_size"]
    lines += ["", f"### Featureless inputs ({size} x {size})", ""]
    lines += _table(
        ["input", "logit", "score", "flagged", "score >= 0.5", "assessable"],
        [
            [
                f["input"],
                f"{f['logit']:+.3f}",
                f"{f['score']:.4f}",
                "-" if f["flagged"] is None else ("yes" if f["flagged"] else "no"),
                "yes" if f["score_ge_050"] else "no",
                "yes" if f["assessable"] else f"no ({f['reason']})",
            ]
            for f in result["featureless"]
        ],
    )
    lines += ["", "### Turned and inverted", ""]
    lines += _table(
        [
            "condition",
            "n",
            "flagged",
            "score >= 0.5",
            "not assessable",
            "turned upright",
            "median logit",
        ],
        [
            [
                o["condition"],
                str(o["n"]),
                _pct(o["flag_rate"]),
                _pct(o["flag_rate_050"]),
                _pct(o["not_assessable_rate"]),
                str(o.get("turned_upright", "-")),
                _num(o["median_logit"], 3),
            ]
            for o in result["orientation"]
        ],
    )
    return "\n".join(lines)


Row = tuple[str, Callable[[dict[str, Any]], str]]


def _by(items: Sequence[dict[str, Any]], key: str, value: str) -> dict[str, Any] | None:
    return next((item for item in items if item.get(key) == value), None)


def _labels(results: Sequence[dict[str, Any]], section: str, key: str = "label") -> list[str]:
    """The conditions of ``section`` across results, in first-seen order."""
    seen: list[str] = []
    for r in results:
        seen += [item[key] for item in r[section] if item[key] not in seen]
    return seen


def _comparison_rows(results: Sequence[dict[str, Any]]) -> list[Row]:
    def auc_of(label: str) -> Callable[[dict[str, Any]], str]:
        def cell(r: dict[str, Any]) -> str:
            c = _by(r["corruptions"], "label", label)
            return _num(c["roc_auc_logit"]["value"]) if c and c["roc_auc_logit"] else "-"

        return cell

    def shift_of(label: str) -> Callable[[dict[str, Any]], str]:
        def cell(r: dict[str, Any]) -> str:
            s = _by(r["normal_shifts"], "label", label)
            if s is None:
                return "-"
            shift = s["median_logit_shift"]
            return f"{_pct(s['flag_rate'])} / {_pct(s['flag_rate_050'])}" + (
                "" if shift is None or s["family"] == "clean" else f" ({shift:+.2f})"
            )

        return cell

    def turned_of(condition: str) -> Callable[[dict[str, Any]], str]:
        def cell(r: dict[str, Any]) -> str:
            o = _by(r["orientation"], "condition", condition)
            return "-" if o is None else f"{_pct(o['flag_rate'])} / {_pct(o['flag_rate_050'])}"

        return cell

    def worst(r: dict[str, Any]) -> str:
        w = r["summary"]["worst_corrupted_roc_auc_logit"]
        return "-" if w is None else f"{w['value']:.4f} ({w['condition']})"

    def not_assessable(r: dict[str, Any]) -> str:
        rates = [c["not_assessable_rate"] or 0.0 for c in r["corruptions"]]
        return _pct(max(rates)) if rates else "-"

    def featureless(r: dict[str, Any]) -> str:
        s = r["summary"]
        flagged = "-" if s["featureless_flagged"] is None else str(s["featureless_flagged"])
        return (
            f"{flagged} / {s['featureless_score_ge_050']} / {s['featureless_not_assessable']}"
            f" of {s['featureless_n']}"
        )

    rows: list[Row] = [
        ("cases", lambda r: f"{r['cases']['n']} ({r['cases']['split']})"),
        (
            "governed threshold",
            lambda r: _num(r["threshold"]["value"], 6) if r["threshold"]["governed"] else "none",
        ),
    ]
    rows += [(f"ROC-AUC {label}", auc_of(label)) for label in _labels(results, "corruptions")]
    rows += [
        ("ROC-AUC mean corrupted", lambda r: _num(r["summary"]["mean_corrupted_roc_auc_logit"])),
        ("ROC-AUC worst corrupted", worst),
        ("ROC-AUC inverted", lambda r: _num((r["inverted_roc_auc_logit"] or {}).get("value"))),
        ("not assessable, most in a condition", not_assessable),
    ]
    rows += [
        (f"normals flagged / >= 0.5: {label}", shift_of(label))
        for label in _labels(results, "normal_shifts")
    ]
    rows.append(("featureless flagged / >= 0.5 / not assessable", featureless))
    rows += [
        (f"{condition}: flagged / >= 0.5", turned_of(condition))
        for condition in _labels(results, "orientation", "condition")
    ]
    return rows


def compare_robustness(
    results: Sequence[dict[str, Any]], names: Sequence[str] | None = None
) -> str:
    """A markdown table with one column per bundle's robustness result, one row per measure.

    Columns are named by ``names`` when given, else by bundle version (and folder
    name when versions repeat); a measure a result lacks shows as ``-``. Normal-shift
    cells read "flagged at the governed threshold / score >= 0.5 (median logit shift)".

    Raises:
        ConfigurationError: ``names`` of another length than ``results``.
    """
    if names is None:
        versions = [r.get("bundle", {}).get("version", "?") for r in results]
        names = [
            f"{v} ({r.get('bundle', {}).get('name', i)})" if versions.count(v) > 1 else v
            for i, (v, r) in enumerate(zip(versions, results, strict=True))
        ]
    if len(names) != len(results):
        raise ConfigurationError(f"{len(names)} names for {len(results)} results")
    rows = [[label, *(cell(r) for r in results)] for label, cell in _comparison_rows(results)]
    return "\n".join(_table(["measure", *names], rows))


def write_comparison_plots(
    results: Sequence[dict[str, Any]], names: Sequence[str], out: Path
) -> list[Path]:
    """Two bar charts with one bar per bundle: ROC-AUC per corruption (and turned or
    inverted images' flag rates are in the table), and normals flagged per shift.

    Raises:
        ConfigurationError: ``names`` of another length than ``results``.
    """
    from chestaid import plots

    if len(names) != len(results):
        raise ConfigurationError(f"{len(names)} names for {len(results)} results")

    def auc(r: dict[str, Any], label: str) -> float | None:
        c = _by(r["corruptions"], "label", label)
        return None if c is None or c["roc_auc_logit"] is None else c["roc_auc_logit"]["value"]

    def flagged(r: dict[str, Any], label: str) -> float | None:
        s = _by(r["normal_shifts"], "label", label)
        return None if s is None else s["flag_rate"]

    corruptions = _labels(results, "corruptions")
    shifts = _labels(results, "normal_shifts")
    aucs = {n: [auc(r, c) for c in corruptions] for n, r in zip(names, results, strict=True)}
    lowest = min((v for vs in aucs.values() for v in vs if v is not None), default=0.0)
    return [
        plots.plot_grouped_bars(
            corruptions,
            aucs,
            out / "comparison_auc.png",
            xlabel="ROC-AUC (logit), report split",
            title="ROC-AUC under corruptions, per recipe",
            xlim=(max(0.0, lowest - 0.05), 1.0),
        ),
        plots.plot_grouped_bars(
            shifts,
            {n: [flagged(r, s) for s in shifts] for n, r in zip(names, results, strict=True)},
            out / "comparison_normals_flagged.png",
            xlabel="normals flagged at the governed threshold",
            title="Normals flagged under acquisition shifts, per recipe",
        ),
    ]
