"""The words the report labeller looks for: terms, cues around them, section headers.

Kept apart from :mod:`chestaid.report_labels`, which decides, so that the lexicon can
be read (and extended) as one list. Every pattern here is matched case-insensitively
on the original report text, so spans found in it are spans of the report.

Two kinds of terms are looked for:

- a *mention* names pneumonia or infection of the lung ("pneumonia", "PNA",
  "bronchopneumonia", "infectious"); unqualified, it calls pneumonia present;
- a *finding* names what pneumonia looks like without naming its cause
  ("consolidation", "infiltrate", "airspace disease"); denied or resolved, it counts
  as no pneumonia, but present it decides nothing (atelectasis and edema look the
  same).

A *cue* is a phrase near a term that changes what the term says: it denies it, hedges
it, places it in the past or in the request, or says it has gone. Cues reach a
limited number of words before or after them (their *window*) and never cross a
clause boundary. Pseudo-cues ("no change in", "not resolved") are matched first so
that the words inside them cannot act as a denial or a resolution.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_FLAGS = re.IGNORECASE


class CueKind(enum.Enum):
    """What a cue does to the terms it reaches."""

    PSEUDO = "pseudo"  # looks like a cue but is not one; the term stays as it is
    RESOLVED = "resolved"  # the finding was there and has gone
    HISTORY = "history"  # the term is the past or the question, not this study
    NEGATION = "negation"
    UNCERTAINTY = "uncertainty"


class Direction(enum.Enum):
    """Which side of the cue its terms stand."""

    FORWARD = "forward"  # "no pneumonia"
    BACKWARD = "backward"  # "pneumonia is not seen"
    BOTH = "both"  # "possible pneumonia", "pneumonia is possible"


@dataclass(frozen=True)
class Cue:
    """One cue pattern: what it does, which way it reaches and how many words far."""

    kind: CueKind
    pattern: re.Pattern[str]
    direction: Direction
    window: int


def _cue(kind: CueKind, pattern: str, direction: Direction, window: int = 6) -> Cue:
    return Cue(kind, re.compile(pattern, _FLAGS), direction, window)


_P, _R, _H, _N, _U = (
    CueKind.PSEUDO,
    CueKind.RESOLVED,
    CueKind.HISTORY,
    CueKind.NEGATION,
    CueKind.UNCERTAINTY,
)
_F, _B, _X = Direction.FORWARD, Direction.BACKWARD, Direction.BOTH

# Order matters: a span taken by an earlier cue is not available to a later one, so
# the long phrases that contain a shorter cue come first.
CUES: tuple[Cue, ...] = (
    # Persistence and requests for follow-up that contain "no", "not" or "resolution".
    _cue(
        _P, r"\bno\s+(?:(?:significant|appreciable|interval|substantial|definite)\s+)*change\b", _X
    ),
    _cue(_P, r"\bno\s+(?:(?:significant|interval)\s+)*(?:improvement|resolution)\b", _X),
    _cue(
        _P,
        r"\b(?:has|have|is|are)?\s*not\s+(?:yet\s+|completely\s+|fully\s+|entirely\s+)?(?:resolved|cleared)\b",
        _X,
    ),
    _cue(
        _P,
        r"\b(?:partial(?:ly)?|incomplete(?:ly)?|near(?:ly)?[\s-]+complete(?:ly)?|slowly|largely)\s+(?:resol\w*|clear\w*)\b",
        _X,
    ),
    _cue(_P, r"\b(?:resolving|clearing)\s+(?=\w)(?!of\b)", _X),
    _cue(_P, r"\b(?:document|ensure|confirm|until|to)\s+(?:complete\s+)?resolution\b", _X),
    _cue(_P, r"\bless\s+likely\s+than\b", _X),
    _cue(_P, r"\bnot\s+only\b", _X),
    # Hedges that contain a denial word.
    _cue(
        _U,
        r"\bcan\s*not\s+(?:be\s+)?(?:entirely\s+|completely\s+|totally\s+|definitively\s+)?(?:exclude[ds]?|ruled?\s+out)\b",
        _X,
    ),
    _cue(
        _U,
        r"\bnot\s+(?:be\s+)?(?:entirely\s+|completely\s+|totally\s+|definitively\s+)?(?:excluded|ruled\s+out)\b",
        _X,
    ),
    _cue(_U, r"\b(?:difficult|hard|impossible)\s+to\s+(?:exclude|rule\s+out)\b", _X),
    _cue(_U, r"\bto\s+(?:exclude|rule\s+out)\b", _F),
    # Resolution.
    _cue(
        _R,
        r"\b(?:has|have)\s+(?:since\s+|now\s+|completely\s+|entirely\s+|largely\s+)?(?:resolved|cleared)\b",
        _B,
        8,
    ),
    _cue(
        _R, r"\b(?:(?:complete|interval|total)\s+)*(?:resolution|clearing|clearance)\s+of\b", _F, 8
    ),
    _cue(_R, r"\bresolved\b", _X, 6),
    _cue(_R, r"\b(?:now\s+)?cleared\b", _B, 6),
    _cue(_R, r"\bno\s+longer\s+(?:seen|visible|present|evident|identified|apparent)\b", _B, 8),
    # The past and the question asked.
    _cue(_H, r"\b(?:history|hx)\s+of\b", _F, 4),
    _cue(_H, r"\b(?:prior|previous|previously|recent)\b(?:\s+seen\b)?", _F, 4),
    _cue(_H, r"\b(?:which|that)\s+(?:showed|demonstrated|revealed)\b", _F, 5),
    _cue(_H, r"\bwhen\b", _F, 8),
    _cue(
        _H,
        r"\b(?:rule\s+out|r/o|evaluate\s+for|evaluation\s+for|assess\s+for|question\s+of|query|referred\s+for|follow[\s-]?up\s+(?:of|for))\b",
        _F,
        5,
    ),
    _cue(
        _H,
        r"\b(?:treated\s+for|on\s+antibiotics\s+for|being\s+treated\s+for|treatment\s+for)\b",
        _F,
        4,
    ),
    _cue(_H, r"\b\d+\s+(?:days?|weeks?|months?|years?)\s+ago\b", _B, 4),
    _cue(_H, r"\bfor\s+follow[\s-]?up\b", _B, 4),
    # Denials.
    _cue(
        _N,
        r"\bno\s+(?:(?:radiographic|convincing|definite|definitive|new|residual|true|large|acute|evidence|signs?|findings?|of|to|suggest)\s+)*",
        _F,
        6,
    ),
    _cue(
        _N,
        r"\b(?:is|are)\s+(?:not\s+(?:seen|identified|present|visible|demonstrated|evident)|absent|excluded)\b",
        _B,
        8,
    ),
    _cue(
        _N,
        r"\b(?:without|negative\s+for|free\s+of|absence\s+of|neither|nor|rather\s+than|not)\b",
        _F,
        6,
    ),
    _cue(_N, r"\bunlikely\b", _B, 6),
    _cue(_N, r":\s*(?:none|negative|absent)\b", _B, 3),
    # Hedges.
    _cue(
        _U,
        r"\b(?:possible|possibly|possibility|may|might|could|can\s+be|questionable|questioned|equivocal|uncertain|indeterminate|suspected|vs\.?|versus|differential|consideration|considered|correlat\w*|if|less\s+likely|not\s+excluded)\b",
        _X,
        8,
    ),
    _cue(_U, r"\?", _F, 4),
)

# "pneumonia" and its dictation slips, "pneumonic", "bronchopneumonia", "PNA".
MENTION = re.compile(
    r"\b(?:broncho)?pn(?:eu|ue|e|u)mon(?:ia|iae|ias|ic|a)\b|\bpna\b"
    r"|\binfect(?:ion|ions|ious|ive)\b",
    _FLAGS,
)

# Infection words that are not of the lung parenchyma when these stand just before.
INFECTION_QUALIFIERS = re.compile(
    r"\b(?:viral|respiratory|airways?|urinary|wound|line|catheter|soft\s+tissue|sinus)\b",
    _FLAGS,
)
INFECTION_WORD = re.compile(r"^infect", _FLAGS)

FINDING = re.compile(
    r"\bconsolid\w*|\bconsol\b|\binfiltrat\w*"
    r"|\bair[\s-]?space\s+(?:disease|opacit(?:y|ies)|process)"
    r"|\b(?:focal\s+)?(?:lung\s+)?opacit(?:y|ies)\b|\bopacification\b",
    _FLAGS,
)

# Other things an opacity can be; "atelectasis or pneumonia" hedges.
ALTERNATIVE = re.compile(
    r"\b(?:atelecta\w+|atx|collapse|aspiration|edema|oedema|effusions?|hemorrhage|"
    r"haemorrhage|scar(?:ring)?|fibrosis|mass|tumou?r|malignancy|contusion|infarct\w*)\b",
    _FLAGS,
)

# A study called normal, or lungs called clear, without naming pneumonia.
NORMAL = (
    re.compile(
        r"\b(?:lungs?|lung\s+fields?|lobes?|bases?)\b(?:\s+(?:are|is|remain|appear|now|"
        r"otherwise|well|expanded|aerated|hyperinflated|hyperexpanded|and|but|both|"
        r"grossly|bilaterally|today))*[\s,:]+clear\b",
        _FLAGS,
    ),
    re.compile(r"\bclear\s+(?:lungs?|lung\s+fields?)\b", _FLAGS),
    re.compile(r"\blungs?\s+(?:have|has)\s+(?:now\s+)?cleared\b", _FLAGS),
    re.compile(
        r"\bno\s+(?:(?:acute|active|radiographic|significant)\s+)*(?:(?:cardiopulmonary|"
        r"cardio-pulmonary|cardiothoracic|intrathoracic|thoracic|pulmonary|lung|chest)\s+)?"
        r"(?:process|disease|abnormalit(?:y|ies)|findings?|pathology)\b",
        _FLAGS,
    ),
    re.compile(
        r"\b(?:normal|unremarkable|negative)\s+(?:appearances?\s+of\s+the\s+)?(?:(?:pediatric|paediatric|frontal|portable|"
        r"adult)\s+)?(?:chest|study|examination|exam|radiograph|x-?ray)\b",
        _FLAGS,
    ),
    re.compile(r"\bnormal\s+heart\s+and\s+lungs\b", _FLAGS),
    re.compile(r"\blungs?\s+(?:are|is)\s+(?:\w+\s+)?normal\b", _FLAGS),
    re.compile(r"\bchest\s*:\s*normal\b", _FLAGS),
    re.compile(r"^\W*(?:\d+\W+)?normal\W*$", _FLAGS),
)
NORMAL_DENIED = re.compile(r"\bnot\s+(?:\w+\s+)?clear\b", _FLAGS)

# Words that end the reach of a cue inside a sentence.
CLAUSE_BREAK = re.compile(
    r";|\b(?:but|however|although|though|whereas|while|which|except|apart\s+from|"
    r"aside\s+from|yet)\b",
    _FLAGS,
)

# Section headers, and what their sections are to the labeller.
HEADER = re.compile(
    r"(?:^|(?<=[\s.]))(?P<name>clinical\s+(?:history|indications?|information|details|question)"
    r"|indications?|history|hx|reason\s+for\s+(?:exam(?:ination)?|study|request|referral)"
    r"|reason|comparisons?|technique|exam(?:ination)?|procedure|findings|report"
    r"|impressions?|conclusions?|opinion|summary)\s*:",
    _FLAGS,
)
CONCLUDING_HEADERS = ("impression", "conclusion", "opinion", "summary")
DESCRIBING_HEADERS = ("findings", "report")

# Sentence ends: a full stop before a space or the end (not after "vs" or "e.g"),
# a new line.
SENTENCE_END = re.compile(r"(?<!\bvs)(?<!\be\.g)(?<!\bi\.e)\.(?=\s|$)|\n", _FLAGS)

WORD = re.compile(r"[A-Za-z0-9]+(?:['/-][A-Za-z0-9]+)*|\?")
