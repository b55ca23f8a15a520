"""The labelled report sentences of ``tests/data/report_sentences``, read and scored.

Shared by the report labeller's tests and its benchmark, so that both count
agreement the same way.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from chestaid.report_labels import PneumoniaLabel, ReportLabel, label_report

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "report_sentences"
MAIN = CORPUS_DIR / "sentences.csv"
HELDOUT = CORPUS_DIR / "heldout.csv"
CATEGORIES = frozenset(
    {
        "positive",
        "persistent",
        "resolved",
        "history",
        "negation",
        "uncertainty",
        "normal",
        "nonspecific",
        "irrelevant",
        "sections",
    }
)


@dataclass(frozen=True)
class Sentence:
    """One labelled sentence or short report."""

    text: str
    expected: PneumoniaLabel
    category: str


@dataclass(frozen=True)
class Agreement:
    """How often the labeller gives the expected label, overall and by part."""

    size: int
    decided: float  # on the sentences whose expected label is not indeterminate
    overall: float
    by_category: dict[str, tuple[int, int]]  # category -> (agreed, total)
    confusion: Counter[tuple[PneumoniaLabel, PneumoniaLabel]]  # (expected, got) -> n
    misses: list[tuple[Sentence, ReportLabel]]

    def summary(self) -> str:
        """One line per figure, for an assertion message or a table's caption."""
        parts = [
            f"{self.size} sentences",
            f"agreement on non-indeterminate {self.decided:.3f}",
            f"overall {self.overall:.3f}",
        ]
        parts += [f"{c} {a}/{t}" for c, (a, t) in sorted(self.by_category.items())]
        misses = [f"{s.expected}->{got.label}: {s.text!r}" for s, got in self.misses]
        return "; ".join(parts) + ("\nmisses:\n" + "\n".join(misses) if misses else "")


def read_corpus(path: Path = MAIN) -> list[Sentence]:
    """The sentences of one corpus file (columns text, expected, category)."""
    with path.open(encoding="utf-8", newline="") as f:
        return [
            Sentence(row["text"], PneumoniaLabel(row["expected"]), row["category"])
            for row in csv.DictReader(f)
        ]


def agreement(sentences: list[Sentence]) -> Agreement:
    """Label every sentence and count agreement with the expected labels."""
    got = [label_report(s.text) for s in sentences]
    by_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    confusion: Counter[tuple[PneumoniaLabel, PneumoniaLabel]] = Counter()
    misses = []
    decided_total = decided_agreed = 0
    for sentence, result in zip(sentences, got, strict=True):
        agreed = result.label is sentence.expected
        by_category[sentence.category][0] += agreed
        by_category[sentence.category][1] += 1
        confusion[(sentence.expected, result.label)] += 1
        if sentence.expected is not PneumoniaLabel.INDETERMINATE:
            decided_total += 1
            decided_agreed += agreed
        if not agreed:
            misses.append((sentence, result))
    return Agreement(
        size=len(sentences),
        decided=decided_agreed / decided_total,
        overall=(len(sentences) - len(misses)) / len(sentences),
        by_category={c: (a, t) for c, (a, t) in by_category.items()},
        confusion=confusion,
        misses=misses,
    )
