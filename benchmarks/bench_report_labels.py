"""The report labeller on the written report sentences: agreement and speed; prints tables.

For each corpus of ``tests/data/report_sentences`` (the main one, in view while the
rules were written, and the held-out one, written after them): its size, agreement
on the sentences whose expected label is not indeterminate (the figure the tests
hold at 0.95 for the main corpus), agreement over all sentences, agreement by
category, and the confusion of expected against given labels. Then throughput:
``chestaid.report_labels.label_report`` over the main corpus repeated ``--repeat``
times, one report at a time, reports per second and p50 / p95 milliseconds per report;
and the same on longer reports made of ten corpus entries each.

    .venv/bin/python benchmarks/bench_report_labels.py [--repeat 20] [--misses]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chestaid.report_labels import PneumoniaLabel, label_report  # noqa: E402
from tests.report_corpus import HELDOUT, MAIN, Agreement, agreement, read_corpus  # noqa: E402

SHORT = {"pneumonia": "pneu", "no_pneumonia": "no_pneu", "indeterminate": "indet"}


def print_agreement(name: str, result: Agreement, misses: bool) -> None:
    """The agreement table of one corpus, with its confusion table."""
    print(f"\n{name}: {result.size} sentences")
    print(f"  agreement, non-indeterminate expected: {result.decided:.3f}")
    print(f"  agreement, all sentences:              {result.overall:.3f}")
    print(f"\n  {'category':12} {'agreed':>7} {'total':>6} {'share':>6}")
    for category, (agreed, total) in sorted(result.by_category.items()):
        print(f"  {category:12} {agreed:7d} {total:6d} {agreed / total:6.2f}")
    print(f"\n  {'expected / given':17}" + "".join(f"{SHORT[g]:>9}" for g in PneumoniaLabel))
    for expected in PneumoniaLabel:
        cells = "".join(f"{result.confusion[(expected, g)]:9d}" for g in PneumoniaLabel)
        print(f"  {expected.value:17}{cells}")
    if misses:
        print("\n  misses (expected -> given, rule):")
        for sentence, got in result.misses:
            text = " | ".join(sentence.text.splitlines())
            print(f"  {sentence.expected} -> {got.label} ({got.rule}): {text}")


def throughput(texts: list[str], repeat: int) -> tuple[float, float, float]:
    """Reports per second, p50 and p95 ms per report, labelling ``texts`` ``repeat`` times."""
    for text in texts:  # warm up: regular expressions compile on first use
        label_report(text)
    times = []
    for _ in range(repeat):
        for text in texts:
            start = time.perf_counter()
            label_report(text)
            times.append(time.perf_counter() - start)
    cuts = statistics.quantiles(times, n=20)
    return len(times) / sum(times), statistics.median(times) * 1000, cuts[18] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="passes over the main corpus")
    parser.add_argument("--misses", action="store_true", help="list the sentences missed")
    args = parser.parse_args(argv)
    main_corpus = read_corpus(MAIN)
    print_agreement("main corpus (sentences.csv)", agreement(main_corpus), args.misses)
    print_agreement("held-out corpus (heldout.csv)", agreement(read_corpus(HELDOUT)), args.misses)
    sentences = [s.text for s in main_corpus]
    # Whole reports are longer than one sentence: ten corpus entries, run together.
    reports = ["\n".join(sentences[i : i + 10]) for i in range(0, len(sentences), 10)]
    print(f"\nthroughput, one report at a time, {args.repeat} passes over each set")
    print(f"  {'set':28} {'reports':>7} {'chars':>6} {'reports/s':>10} {'p50 ms':>8} {'p95 ms':>8}")
    for name, texts in (("corpus entries", sentences), ("ten entries run together", reports)):
        per_second, p50, p95 = throughput(texts, args.repeat)
        chars = statistics.mean(len(t) for t in texts)
        print(f"  {name:28} {len(texts):7d} {chars:6.0f} {per_second:10.0f} {p50:8.3f} {p95:8.3f}")
    # A run-on without punctuation (a dictation fault, or a hostile message): the time
    # should grow with the length, not its square (clauses are read in bounded pieces).
    print("\nrun-on text without punctuation ('no evidence of pneumonia' repeated)")
    print(f"  {'chars':>8} {'ms':>9} {'us per char':>12}")
    for repeats in (400, 4_000, 40_000):
        text = " ".join(["no evidence of pneumonia"] * repeats)
        start = time.perf_counter()
        label_report(text)
        elapsed = time.perf_counter() - start
        print(f"  {len(text):8d} {elapsed * 1000:9.1f} {elapsed / len(text) * 1e6:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
