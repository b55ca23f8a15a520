"""Whether a copied attribute keeps the rules of its VR (PS3.5 6.2): length, characters, VM.

The outputs copy the source's patient, study and acquisition attributes. A value the
source got wrong (an 84-character Patient's Name, a Study Date written 2024-01-31,
two Patient IDs) would make the outputs invalid, so it is left out of them; it is
never shortened to fit, since a cut identifier names someone else.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable

from pydicom import config
from pydicom.datadict import dictionary_VM
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value

# Characters a VR allows besides the default repertoire's graphic characters: ESC
# (for code extensions) in every text VR, and the format effectors in the long texts.
_ESC = "\x1b"
_FORMAT_EFFECTORS = "\x1b\r\n\x0c\t"
_TEXT_ALLOWED_CONTROLS = {"LT": _FORMAT_EFFECTORS, "ST": _FORMAT_EFFECTORS, "UT": _FORMAT_EFFECTORS}
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
_PN_GROUP_MAX = 64  # characters per component group (alphabetic, ideographic, phonetic)
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")


def element_conforms(element: DataElement) -> bool:
    """Whether ``element``'s value keeps its VR's rules and the attribute's VM.

    A sequence is not looked into here (see :func:`drop_non_conforming`). An empty
    value always conforms.

    Args:
        element: an element of a received dataset.

    Returns:
        False for a value too long for its VR, a character the VR does not allow, a
        date or time that is not one, or more or fewer values than the attribute takes.
    """
    if element.VR == "SQ":
        return True
    values = _values(element)
    if not values:
        return True
    if not _vm_allows(element, len(values)):
        return False
    if element.VR not in _STRING_VRS:
        return True
    return all(_string_conforms(element.VR, str(v)) for v in values)


def drop_non_conforming(ds: Dataset, *, keep: Iterable[str] = ()) -> list[str]:
    """Remove from ``ds`` (and its sequences' items) every element that breaks its VR's rules.

    Args:
        ds: a dataset to clean in place.
        keep: keywords left as they are whatever their value (checked elsewhere).

    Returns:
        The keywords (or tags, for unknown elements) of what was removed, in order.
    """
    kept = frozenset(keep)
    removed: list[str] = []
    for element in list(ds):
        name = element.keyword or str(element.tag)
        if element.VR == "SQ":
            for item in element.value:
                removed.extend(f"{name} > {inner}" for inner in drop_non_conforming(item))
        elif name not in kept and not element_conforms(element):
            del ds[element.tag]
            removed.append(name)
    return removed


def _values(element: DataElement) -> list[object]:
    value = element.value
    if value is None or value == "" or value == b"":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return list(value)
    return [value]  # one value: a str, a PersonName, a number, bytes


def _vm_allows(element: DataElement, count: int) -> bool:
    if element.tag.is_private:
        return True
    try:
        vm = dictionary_VM(element.tag)
    except KeyError:
        return True
    low_text, _, high_text = vm.partition("-")
    if not low_text.isdigit():
        return True
    low = int(low_text)
    if not high_text:
        return count == low
    if high_text.endswith("n"):
        step = int(high_text[:-1] or "1")
        return count >= low and (count - low) % step == 0 if step > 1 else count >= low
    return low <= count <= int(high_text)


def _string_conforms(vr: str, value: str) -> bool:
    allowed = _TEXT_ALLOWED_CONTROLS.get(vr, _ESC)
    if any((ord(c) < 0x20 and c not in allowed) or ord(c) == 0x7F for c in value):
        return False
    if vr == "PN":
        groups = value.split("=")
        if len(groups) > 3:
            return False
        return all(len(g) <= _PN_GROUP_MAX and g.count("^") <= 4 for g in groups)
    try:
        validate_value(vr, value, config.RAISE)
    except ValueError:
        return False
    if vr == "DA":
        return _is_date(value)
    if vr == "TM":
        return _is_time(value)
    if vr == "DT":
        return _is_date(value[:8]) if len(value) >= 8 else value.isdigit()
    return True


def _is_date(value: str) -> bool:
    try:
        datetime.datetime.strptime(value.strip(), "%Y%m%d")
    except ValueError:
        return False
    return True


def _is_time(value: str) -> bool:
    match = _TIME.match(value.strip())
    if match is None:
        return False
    hours, minutes, seconds = match.group(1), match.group(2), match.group(3)
    return (
        int(hours) < 24
        and (minutes is None or int(minutes) < 60)
        and (seconds is None or int(seconds) < 61)  # 60: a leap second
    )
