"""Options and answers as the sources encode them, relettered A, B, C, ... in a recorded order.

Every adapter ends with ``reletter``: the options that exist (empty/None/NaN cells skipped) get
consecutive letters in their source order, and the answer letter follows its option. The
original letters and order go into the sample's ``meta`` so the mapping is never lost.

Encodings handled (see docs/datasets.md in the shared reference):
- option columns ``A``, ``B``, ... with unused cells empty/None/NaN (VLMEvalKit, 3DSRBench, MMBench);
- a list of option texts (CV-Bench ``choices``, SAT ``answers``, Geometry3K ``choices``);
- a list of prefixed texts ``"(A) White"`` (MME-RealWorld ``multi-choice options``);
- options embedded in the question, ``\\nA. text`` (Spatial-MM) or ``(A) text`` (V*Bench);
- answers as a bare letter, ``"(C)"``, ``"B. right"`` (letter and text) or the option text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cotprobe.io import InputError
from cotprobe.records import LETTERS

SOURCE_LETTERS = "ABCDEFGHIJ"
_LETTER = re.compile(r"^\s*\(?\s*([A-Ja-j])\s*\)?\s*[.:]?\s*$")
_MARKERS = {"dot": re.compile(r"\n\s*([A-J])\.\s+"), "paren": re.compile(r"(?:^|(?<=\s))\(([A-J])\)\s*")}
_PREFIXED = re.compile(r"^\s*\(([A-J])\)\s*(.*)$", re.DOTALL)


class Contradiction(InputError):
    """The answer contradicts the options (names no option, or its text matches none)."""


@dataclass(frozen=True)
class Choices:
    """Options in source order with their source letters, and the index of the correct one.

    Attributes:
        texts: Option texts, in the order they are shown.
        answer: Index of the correct option in ``texts``.
        source_letters: The letter each option had in the source (None where it had none).
    """

    texts: list[str]
    answer: int
    source_letters: list[str | None]


def missing(value: Any) -> bool:
    """True for an empty option cell: None, NaN, '', 'nan' (pandas writes NaN as 'nan')."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "nan", "none")


def norm_text(text: str) -> str:
    """Compare option texts case- and whitespace-insensitively, ignoring a final full stop."""
    return " ".join(str(text).split()).lower().rstrip(".")


def parse_letter(value: Any) -> str | None:
    """'C', '(C)', 'c.', ' C ' -> 'C'; anything else -> None."""
    if not isinstance(value, str):
        return None
    m = _LETTER.match(value)
    return m.group(1).upper() if m else None


def from_columns(row: dict[str, Any], letters: str = SOURCE_LETTERS) -> list[tuple[str, str]]:
    """(letter, text) of the option columns present and non-empty, in letter order."""
    return [(k, str(row[k]).strip()) for k in letters if k in row and not missing(row[k])]


def from_embedded(text: str, style: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a question with embedded options into (question, [(letter, text), ...]).

    Args:
        text: The question text.
        style: ``dot`` for ``\\nA. text`` lines, ``paren`` for ``(A) text``.
    """
    # Markers must run A, B, C, ... so that "(a) note" or "B." inside a text is not an option.
    markers = []
    for m in _MARKERS[style].finditer(text):
        if m.group(1) == SOURCE_LETTERS[len(markers)]:
            markers.append(m)
    if not markers:
        return text.strip(), []
    question = text[: markers[0].start()].strip()
    options = []
    for k, m in enumerate(markers):
        end = markers[k + 1].start() if k + 1 < len(markers) else len(text)
        # The last option ends at its line's end (an instruction may follow).
        body = text[m.end() : end].split("\n")[0] if k + 1 == len(markers) else text[m.end() : end]
        options.append((m.group(1), " ".join(body.split())))
    return question, options


def from_prefixed(items: list[Any]) -> list[tuple[str, str]]:
    """["(A) White", "(B) Red"] -> [("A", "White"), ("B", "Red")]; unprefixed items get None."""
    out = []
    for item in items:
        m = _PREFIXED.match(str(item))
        out.append((m.group(1), m.group(2).strip()) if m else (None, str(item).strip()))
    return out


def by_letter(
    options: list[tuple[str | None, str]], letter: str | None, *, where: str, field: str
) -> Choices:
    """Choices whose answer is the option with source letter ``letter``.

    Raises:
        Contradiction: ``letter`` is not a letter, or names no option.
    """
    letters = [k for k, _ in options]
    if letter is None or letter not in letters:
        raise Contradiction(
            f"{where}: field {field!r}: answer {letter!r} names no option (options: {', '.join(map(str, letters))})"
        )
    return Choices([t for _, t in options], letters.index(letter), letters)


def by_text(options: list[tuple[str | None, str]], text: Any, *, where: str, field: str) -> Choices:
    """Choices whose answer is the option whose text equals ``text``.

    Raises:
        Contradiction: ``text`` matches no option, or more than one.
    """
    hits = [i for i, (_, t) in enumerate(options) if norm_text(t) == norm_text(text)]
    if len(hits) != 1:
        problem = "matches no option" if not hits else "matches several options"
        shown = "; ".join(t for _, t in options)
        raise Contradiction(f"{where}: field {field!r}: answer {text!r} {problem} (options: {shown})")
    return Choices([t for _, t in options], hits[0], [k for k, _ in options])


def check_distinct(choices: Choices, *, where: str, field: str) -> None:
    """Two options with the same text make the answer ambiguous."""
    seen = [norm_text(t) for t in choices.texts]
    if len(set(seen)) != len(seen):
        raise Contradiction(f"{where}: field {field!r}: duplicate option texts {choices.texts}")


def reletter(choices: Choices, order: list[int] | None = None) -> tuple[dict[str, str], str, dict[str, Any]]:
    """Letter the options A, B, C, ... in ``order`` (default: source order).

    Args:
        choices: The parsed options.
        order: A permutation of option indices (for seeded constructions), or None.

    Returns:
        (options, answer letter, meta): meta records ``source_letters`` (the source letter of
        each shown option, None for sources without letters) and ``source_order`` (the source
        index of each shown option).
    """
    order = list(range(len(choices.texts))) if order is None else list(order)
    if len(order) > len(LETTERS):
        raise ValueError(f"too many options ({len(order)}); at most {len(LETTERS)}")
    options = {LETTERS[pos]: choices.texts[i] for pos, i in enumerate(order)}
    answer = LETTERS[order.index(choices.answer)]
    meta = {"source_letters": [choices.source_letters[i] for i in order], "source_order": order}
    return options, answer, meta
