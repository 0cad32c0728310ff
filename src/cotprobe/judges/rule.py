"""A deterministic judge: regular expressions over the think, no model.

Which option does a think *finally* settle on? Rules, in order of precedence:

1. **Option lists are ignored.** Two or more consecutive lines shaped like option lines
   (``A. yellow`` / ``B) green`` / ``(C) red``, letters among the sample's options) are the
   model re-copying the options, not concluding anything; their letters and texts never count.
2. **The last explicit letter reference wins.** A reference is one of
   ``option C`` / ``choice (C)``; ``answer is C`` / ``answer: C`` / ``answer would be (C)``;
   a bracketed ``(C)``; ``C is correct`` / ``C is the answer``; ``so C`` / ``therefore C`` /
   ``I think C`` / ``it is C`` / ``I'll go with C`` (followed by punctuation, the line end, or ``is``...);
   a line that is only a letter (``C`` / ``C.`` / ``(C)``); a single option line
   (``C. red``) that is not part of a list. Letters must be upper case (``option c`` and
   ``choice c`` excepted) and among the sample's option letters; others are ignored.
   References that are negated (``not C``, ``rather than C``, ``rule out C``,
   ``C is wrong``, ``option C is not ...``) are dropped. Because the latest reference wins, a
   correction after a pre-fill (``So the answer is B. ... But I think the answer is C``)
   settles on C, and a concluding ``so option C`` beats any option list, before or after it.
3. **Else the last mention of an option's text** (``use_option_text``): whole-word,
   case-insensitive, outside option lists, not negated (``red, not purple``). A mention
   contained in a longer option's mention (``red`` inside ``dark red``) belongs to the longer
   one. The mention that ends last wins; two different options ending at the same place are
   ambiguous and settle on nothing.
4. Else the think settles on no option (the verdict is ``unparseable`` with a reason).

Letters beat texts even when a text comes later (``answer is B. Hmm, it looks red.`` settles
on B): a text mention is weaker evidence than an explicit pick.
"""

from __future__ import annotations

import re
from typing import ClassVar, NamedTuple

from cotprobe.judges.base import Judge, ThinkReading
from cotprobe.records import Generation, Prompt

_L = r"(?P<L>[A-Z])"
_NOT_WORD = r"(?![A-Za-z0-9])"
# What may follow a letter after a weak cue ("so", "I think"): punctuation, line end or a verb,
# so that "so A shape" (the article) is not read as option A.
_WEAK_END = r"(?=\s*(?:[.,;:!?)\]*]|$|(?:is|seems|looks|would|should|must|matches|fits|it)\b))"

_REFERENCES = [
    re.compile(r"\b(?:[Oo]ption|[Cc]hoice|OPTION|CHOICE)\s*\(?(?P<L>[A-Za-z])\)?" + _NOT_WORD),
    re.compile(
        r"\b(?:answer|ANSWER|Answer)\s*(?:is|would be|should be|must be|will be|=|:|-)?\s*"
        r"(?:probably|likely|definitely|clearly|then|therefore|thus)?\s*:?\s*\(?" + _L + r"\)?" + _NOT_WORD
    ),
    re.compile(r"\(" + _L + r"\)"),
    re.compile(
        r"(?<![A-Za-z0-9'])" + _L + r"\)?\s+(?:is|seems|looks)\s+(?:to be\s+)?(?:the\s+)?"
        r"(?:correct|right|answer|best|most likely)\b"
    ),
    re.compile(
        r"\b(?:[Ss]o|[Tt]herefore|[Tt]hus|[Hh]ence|I think|I choose|I pick|I select|I'll go with|"
        r"I will go with|[Gg]o with|I'd say|I would say|[Pp]ick|[Ss]elect|[Cc]hoose|[Ii]t's|[Ii]t is|"
        r"[Ii]t must be|[Ii]t should be|[Ii]t would be)"
        r"\s*,?\s*(?:it's|it is)?\s*" + _L + _NOT_WORD + _WEAK_END
    ),
    re.compile(r"^[ \t>*-]*\(?" + _L + r"\)?[ \t]*[.):]?[ \t*]*$", re.MULTILINE),
]
_OPTION_LINE = re.compile(r"^[ \t>*-]*\(?" + _L + r"[.):]\)?[ \t]+\S.*$", re.MULTILINE)
_NEGATED_BEFORE = re.compile(
    r"(?:\bnot|n't|\bnor|\brather than|\binstead of|\bexcept|\beliminate|\brule out|\bruled out|\bexclude)"
    r"\s*(?:the\s+)?(?:answer\s+|option\s+|choice\s+)?\(?$",
    re.IGNORECASE,
)
_NEGATED_AFTER = re.compile(
    r"^\)?[.:]?\s*(?:(?:is|seems|looks|was|would be|can be|must be)\s+(?:also\s+|clearly\s+|definitely\s+)?"
    r"(?:wrong|incorrect|not\b|ruled out|eliminated|unlikely|false|out\b)|isn't|can't be|cannot be)",
    re.IGNORECASE,
)


class _Hit(NamedTuple):
    start: int
    end: int
    letter: str


class RuleJudge(Judge):
    """Deterministic rule judge (see the module docstring for the precedence of the rules).

    Args:
        use_option_text: Fall back on mentions of an option's text when the think names no
            letter (default True).
    """

    version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, object]] = {"use_option_text": True}

    def read_thinks(self, pairs: list[tuple[Prompt, Generation]]) -> list[ThinkReading]:
        return [self.settle(g.think, p.options) for p, g in pairs]

    def settle(self, think: str | None, options: dict[str, str]) -> ThinkReading:
        """The option a think finally settles on.

        Args:
            think: The think text (None when the generation has no closed think block).
            options: Letter -> option text, as shown to the model.

        Returns:
            The settled letter, or None with the reason.
        """
        if think is None:
            return ThinkReading(None, "think: no closed <think> block")
        if not think.strip():
            return ThinkReading(None, "think: empty")
        lists = _option_lists(think, options)
        hits = [h for h in _letter_hits(think, options) if not _inside(h, lists)]
        if hits:
            return ThinkReading(max(hits, key=lambda h: h.start).letter)
        if self.args["use_option_text"]:
            hits = [h for h in _text_hits(think, options) if not _inside(h, lists)]
            if hits:
                last_end = max(h.end for h in hits)
                last = {h.letter for h in hits if h.end == last_end}
                if len(last) > 1:
                    return ThinkReading(
                        None, f"think: ends ambiguous between options {', '.join(sorted(last))}"
                    )
                return ThinkReading(last.pop())
        return ThinkReading(None, "think: settles on no option")


def _negated(text: str, start: int, end: int) -> bool:
    return bool(_NEGATED_BEFORE.search(text[max(0, start - 24) : start]) or _NEGATED_AFTER.match(text[end:]))


def _letter_hits(think: str, options: dict[str, str]) -> list[_Hit]:
    hits = []
    for pattern in _REFERENCES:
        for m in pattern.finditer(think):
            letter = m.group("L").upper()
            if letter in options and not _negated(think, m.start(), m.end("L")):
                hits.append(_Hit(m.start("L"), m.end("L"), letter))
    # A single option line ("C. red") is a pick; lines in a list are dropped later by _inside.
    for m in _OPTION_LINE.finditer(think):
        if m.group("L") in options:
            hits.append(_Hit(m.start("L"), m.end("L"), m.group("L")))
    return hits


def _option_lists(think: str, options: dict[str, str]) -> list[tuple[int, int]]:
    """Spans of runs of two or more consecutive option lines."""
    spans: list[tuple[int, int]] = []
    run: list[tuple[int, int]] = []
    pos = 0
    for line in think.splitlines(keepends=True):
        m = _OPTION_LINE.match(line.rstrip("\r\n"))
        if m and m.group("L") in options:
            run.append((pos, pos + len(line)))
        elif line.strip():
            if len(run) >= 2:
                spans.append((run[0][0], run[-1][1]))
            run = []
        pos += len(line)
    if len(run) >= 2:
        spans.append((run[0][0], run[-1][1]))
    return spans


def _inside(hit: _Hit, spans: list[tuple[int, int]]) -> bool:
    return any(a <= hit.start < b for a, b in spans)


def _text_hits(think: str, options: dict[str, str]) -> list[_Hit]:
    hits = []
    for letter, text in options.items():
        text = text.strip()
        if not text:
            continue
        pattern = re.compile(r"(?<!\w)" + re.escape(text) + r"(?!\w|\.\d)", re.IGNORECASE)
        for m in pattern.finditer(think):
            if not _negated(think, m.start(), m.end()):
                hits.append(_Hit(m.start(), m.end(), letter))
    # A mention inside a longer option's mention ("red" in "dark red") belongs to the longer one.
    return [
        h
        for h in hits
        if not any(
            o.letter != h.letter
            and o.start <= h.start
            and h.end <= o.end
            and o.end - o.start > h.end - h.start
            for o in hits
        )
    ]
