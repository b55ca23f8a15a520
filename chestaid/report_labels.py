"""A pneumonia label read from the text of a radiologist's final chest-radiograph report.

The label feeds ChestAid's feedback log: it says what the report says about
pneumonia on this study, so that the model's call can be compared with the
radiologist's. It is a triage support label derived by rules from free text, not a
diagnosis, and it can be wrong: a person's feedback outranks it.

What the three labels mean:

- ``pneumonia``: the report calls pneumonia or lung infection present on this study,
  including as the leading call ("likely", "consistent with", "concerning for") and
  when it is improving, unchanged, worse or only partly resolved;
- ``no_pneumonia``: the report denies pneumonia, consolidation, infiltrate or focal
  airspace disease, calls the lungs clear or the chest normal, or says a previous
  pneumonia has resolved;
- ``indeterminate``: the report hedges ("possible", "cannot exclude", "atelectasis
  or pneumonia"), or mentions pneumonia only as the reason for the examination or
  the patient's past, or says nothing that decides.

How it reads (in the manner of NegEx): the report is cut into sections by its
headers; the request and history sections (INDICATION, CLINICAL HISTORY, REASON...)
and the technical ones are skipped; the rest is cut into sentences and clauses; each
term of :mod:`chestaid.report_cues` is judged by the cues that reach it. The
concluding section (IMPRESSION, CONCLUSION, OPINION) decides when it says anything
about pneumonia or the lungs; the findings (or a report without headers) decide
otherwise. Within the deciding part, a term present outranks a hedged one, and a
hedged one outranks a denial, so that "no effusion; right lower lobe pneumonia" is
pneumonia and "no large consolidation; a small pneumonia is not excluded" is
indeterminate.

The text is the report as a person reads it (HL7 escapes already undone); nothing
here reads a file, the network or the clock.
"""

from __future__ import annotations

import bisect
import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass

from chestaid.report_cues import (
    ALTERNATIVE,
    CLAUSE_BREAK,
    CONCLUDING_HEADERS,
    CUES,
    DESCRIBING_HEADERS,
    FINDING,
    HEADER,
    INFECTION_QUALIFIERS,
    INFECTION_WORD,
    MENTION,
    NORMAL,
    NORMAL_DENIED,
    SENTENCE_END,
    WORD,
    Cue,
    CueKind,
    Direction,
)

_OR = re.compile(r"\bor\b|/|\bvs\b", re.IGNORECASE)
_ALTERNATIVE_REACH = 5  # words between "atelectasis" and "pneumonia" in "... or ..."
_QUALIFIER_REACH = 4  # words before "infection" that can make it not pneumonia


class PneumoniaLabel(enum.StrEnum):
    """What a report says about pneumonia on its study.

    The values are those of the feedback log's labels, so that one can be stored as
    the other.
    """

    PNEUMONIA = "pneumonia"
    NO_PNEUMONIA = "no_pneumonia"
    INDETERMINATE = "indeterminate"


class LabelRule(enum.StrEnum):
    """Which reading decided a label."""

    PRESENT = "present"  # pneumonia named, neither denied nor hedged
    UNCERTAIN = "uncertain"  # pneumonia named with a hedge
    NEGATED = "negated"  # pneumonia, consolidation or infiltrate denied
    RESOLVED = "resolved"  # pneumonia or consolidation said to have gone
    NORMAL = "normal"  # lungs clear, chest normal, no acute cardiopulmonary process
    NO_STATEMENT = "no_statement"  # nothing in the report decides


_LABEL_OF_RULE = {
    LabelRule.PRESENT: PneumoniaLabel.PNEUMONIA,
    LabelRule.UNCERTAIN: PneumoniaLabel.INDETERMINATE,
    LabelRule.NEGATED: PneumoniaLabel.NO_PNEUMONIA,
    LabelRule.RESOLVED: PneumoniaLabel.NO_PNEUMONIA,
    LabelRule.NORMAL: PneumoniaLabel.NO_PNEUMONIA,
    LabelRule.NO_STATEMENT: PneumoniaLabel.INDETERMINATE,
}

# Which reading wins inside the deciding part of a report, strongest first.
_PRECEDENCE = (
    LabelRule.PRESENT,
    LabelRule.UNCERTAIN,
    LabelRule.RESOLVED,
    LabelRule.NEGATED,
    LabelRule.NORMAL,
)


@dataclass(frozen=True)
class ReportLabel:
    """The label of one report and why.

    Attributes:
        label: what the report says about pneumonia on its study.
        evidence: the sentence of the report that decided, exactly as it stands in
            the text (a substring of it); None when nothing decided.
        rule: which reading decided.
        section: ``"impression"`` or ``"findings"`` (a report without headers is all
            findings); None when nothing decided.
    """

    label: PneumoniaLabel
    evidence: str | None
    rule: LabelRule
    section: str | None


@dataclass(frozen=True)
class _Span:
    start: int
    end: int


# Words of a clause read together (see _pieces); far above any real clause's length.
MAX_CLAUSE_WORDS = 120


def label_report(text: str) -> ReportLabel:
    """Label a chest-radiograph report: pneumonia, no pneumonia or indeterminate.

    Args:
        text: the report's text, with its section headers if it has them.

    Returns:
        The label with the sentence that decided it and the rule that read it; an
        empty or irrelevant report is indeterminate with no evidence.
    """
    concluding: list[_Span] = []
    describing: list[_Span] = []
    for kind, span in _sections(text):
        if kind == "impression":
            concluding.append(span)
        elif kind == "findings":
            describing.append(span)
    for name, spans in (("impression", concluding), ("findings", describing)):
        readings = [
            (rule, sentence)
            for span in spans
            for sentence in _sentences(text, span)
            for rule in _sentence_rules(text, sentence)
        ]
        for wanted in _PRECEDENCE:
            for rule, sentence in readings:
                if rule is wanted:
                    return ReportLabel(
                        label=_LABEL_OF_RULE[rule],
                        evidence=text[sentence.start : sentence.end],
                        rule=rule,
                        section=name,
                    )
    return ReportLabel(
        label=PneumoniaLabel.INDETERMINATE,
        evidence=None,
        rule=LabelRule.NO_STATEMENT,
        section=None,
    )


def _sections(text: str) -> Iterator[tuple[str, _Span]]:
    """Each section's kind ("impression", "findings" or "skipped") and body.

    Text before the first header is findings: most short reports have no headers.
    """
    headers = list(HEADER.finditer(text))
    first = headers[0].start() if headers else len(text)
    yield "findings", _Span(0, first)
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        name = " ".join(header.group("name").lower().split())
        if name.startswith(CONCLUDING_HEADERS):
            kind = "impression"
        elif name.startswith(DESCRIBING_HEADERS):
            kind = "findings"
        else:
            kind = "skipped"
        yield kind, _Span(header.end(), end)


def _sentences(text: str, span: _Span) -> Iterator[_Span]:
    """The sentences of a span, trimmed of surrounding blanks; empty ones left out."""
    start = span.start
    body = text[span.start : span.end]
    cuts = [span.start + m.end() for m in SENTENCE_END.finditer(body)]
    for end in [*cuts, span.end]:
        trimmed = _trim(text, start, end)
        if trimmed is not None:
            yield trimmed
        start = end


def _trim(text: str, start: int, end: int) -> _Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return _Span(start, end) if start < end else None


def _sentence_rules(text: str, sentence: _Span) -> list[LabelRule]:
    """Every reading one sentence gives: one per term, and NORMAL if it says so."""
    rules: list[LabelRule] = []
    body = text[sentence.start : sentence.end]
    start = 0
    for brk in CLAUSE_BREAK.finditer(body):
        for piece in _pieces(body[start : brk.start()]):
            rules.extend(_clause_rules(piece))
        start = brk.start() if brk.group() != ";" else brk.end()
    for piece in _pieces(body[start:]):
        rules.extend(_clause_rules(piece))
    if any(p.search(body) for p in NORMAL) and not NORMAL_DENIED.search(body):
        rules.append(LabelRule.NORMAL)
    return rules


def _pieces(clause: str) -> list[str]:
    """The clause, cut after every :data:`MAX_CLAUSE_WORDS` words when it is longer.

    Reading a clause compares each term with each cue, so its cost grows with the
    square of its length; a text without punctuation (a dictation run-on, or a hostile
    message) would take minutes. No clause of a real report comes near the bound, and a
    cue reaches a few words only, so cutting there changes no reading of a real one.
    """
    ends = [m.end() for m in WORD.finditer(clause)]
    if len(ends) <= MAX_CLAUSE_WORDS:
        return [clause]
    cuts = ends[MAX_CLAUSE_WORDS - 1 :: MAX_CLAUSE_WORDS]
    return [clause[a:b] for a, b in zip([0, *cuts], [*cuts, len(clause)], strict=True)]


def _clause_rules(clause: str) -> list[LabelRule]:
    """The reading of each pneumonia term and each denied or resolved finding."""
    words = [m.span() for m in WORD.finditer(clause)]
    starts = [w[0] for w in words]
    cues = _cues(clause)
    taken = [span for _, span in cues]
    rules: list[LabelRule] = []
    for pattern, is_mention in ((MENTION, True), (FINDING, False)):
        for match in pattern.finditer(clause):
            term = match.span()
            if any(_overlaps(term, span) for span in taken):
                continue
            if is_mention and _qualified_infection(clause, match.group(), term, words, starts):
                continue
            kinds = {cue.kind for cue, span in cues if _reaches(cue, span, term, starts)}
            rule = _rule_of(kinds, is_mention)
            if rule is LabelRule.PRESENT and _has_alternative(clause, term, starts):
                rule = LabelRule.UNCERTAIN
            if rule is not None:
                rules.append(rule)
    return rules


def _cues(clause: str) -> list[tuple[Cue, tuple[int, int]]]:
    """The cues of a clause, earlier patterns taking their spans first."""
    found: list[tuple[Cue, tuple[int, int]]] = []
    for cue in CUES:
        for match in cue.pattern.finditer(clause):
            span = match.span()
            if span[0] == span[1] or any(_overlaps(span, s) for _, s in found):
                continue
            found.append((cue, span))
    return found


def _reaches(cue: Cue, span: tuple[int, int], term: tuple[int, int], starts: list[int]) -> bool:
    """Whether a cue at ``span`` reaches the term: on its side, within its window."""
    cue_first = bisect.bisect_left(starts, span[0])
    cue_last = bisect.bisect_left(starts, span[1]) - 1
    term_first = bisect.bisect_left(starts, term[0])
    term_last = bisect.bisect_left(starts, term[1]) - 1
    if cue.direction is not Direction.BACKWARD and span[1] <= term[0]:
        return term_first - cue_last <= cue.window
    if cue.direction is not Direction.FORWARD and term[1] <= span[0]:
        return cue_first - term_last <= cue.window
    return False


def _rule_of(kinds: set[CueKind], is_mention: bool) -> LabelRule | None:
    """The reading of one term from the kinds of cue that reach it.

    A finding (consolidation, infiltrate) counts only when denied or resolved; a
    mention in the past or in the question asked does not count at all.
    """
    if CueKind.RESOLVED in kinds:
        return LabelRule.RESOLVED
    if CueKind.NEGATION in kinds:
        return LabelRule.NEGATED
    if not is_mention or CueKind.HISTORY in kinds:
        return None
    if CueKind.UNCERTAINTY in kinds:
        return LabelRule.UNCERTAIN
    return LabelRule.PRESENT


def _qualified_infection(
    clause: str, word: str, term: tuple[int, int], words: list[tuple[int, int]], starts: list[int]
) -> bool:
    """Whether an infection word is of the airways or elsewhere ("viral ... infection")."""
    if not INFECTION_WORD.match(word):
        return False
    index = bisect.bisect_left(starts, term[0])
    before = words[max(0, index - _QUALIFIER_REACH) : index]
    if not before:
        return False
    return INFECTION_QUALIFIERS.search(clause[before[0][0] : term[0]]) is not None


def _has_alternative(clause: str, term: tuple[int, int], starts: list[int]) -> bool:
    """Whether another cause is offered beside pneumonia ("atelectasis or pneumonia")."""
    for match in ALTERNATIVE.finditer(clause):
        a, b = sorted((term, match.span()))
        if _overlaps(a, b):
            continue
        between = clause[a[1] : b[0]]
        gap = bisect.bisect_left(starts, b[0]) - bisect.bisect_left(starts, a[1])
        if gap <= _ALTERNATIVE_REACH and _OR.search(between):
            return True
    return False


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]
