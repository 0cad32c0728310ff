"""Parsing of ``<think>…</think><answer>…</answer>`` responses, shared by every stage.

The same functions serve the parse stage (``cotprobe parse``), the judges, the GRPO reward and the
letter-scoring backends, so a "well-formed answer" means one thing everywhere.

Reading the option letter of an answer block is layered; the first rule that reads one of the
sample's option letters wins and is recorded (``ANSWER_RULES``, in order):

1. ``letter``: the block is only a capital letter: ``B``, ``B.``, ``(B)``, ``[B]``.
2. ``boxed``: ``\\boxed{B}``, ``\\boxed{\\text{B}}``, ``\\boxed{(B)}``.
3. ``latex_text``: ``\\text{B}``, ``\\textbf{B}``, ``\\mathrm{B}``.
4. ``latex``: ``$B$``, ``$(B)$``, ``\\(B\\)``.
5. ``bold``: ``**B**``, ``__B__``, ``**B. red**``, ``*B*``.
6. ``phrase``: ``The answer is B.``, ``the correct option is (B) because ...``, ``I choose B.``
7. ``label``: ``Answer: B``, ``Final answer - (B)``.
8. ``option``: ``Option B``, ``choice (b)``.
9. ``paren``: a bracketed letter anywhere: ``(B) red``, ``It is (B)``.
10. ``leading``: the block starts with the letter and its text: ``B. red``, ``B) red``, ``B: red``,
    ``B - red``, or ``B red`` when ``red`` is option B's text.
11. ``lower``: lower case: ``b``, ``(b)``, ``b.``, ``b) red``, ``b. red``.
12. ``option_text``: no letter, but the block names exactly one option's text (normalised: case,
    punctuation, markdown and whitespace ignored): equal to it, else containing it as whole words
    (a text inside a longer named option's text, ``red`` in ``dark red``, belongs to the longer one).

A capital letter right after a phrase or label must end there (punctuation, line end, or a
connective such as ``because``), so ``The answer is A red cube`` is not read as option A.

An ambiguous block is never read as its first letter: two different option letters joined by
``or``/``and``/``,``/``/`` (``A or B``, ``either A or B``, ``A and B``), two different letters by the
rule that fires, or several option texts, give ``bad_answer`` with answer rule ``ambiguous``.
Other failures are recorded too (``PARSE_FAILURES``): ``no_answer`` (no block), ``empty``,
``not_an_option`` (a letter outside the sample's options, e.g. ``E`` of A-D) and ``unread``.

``PARSER_VERSION`` identifies this behaviour: the workflow passes it to the rules that parse
(``parse_answers``, ``judge_completions``), so bumping it re-parses, re-judges and recomputes the
metrics, never regenerates. Bump it whenever any parse may change.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from cotprobe.records import (
    PARSE_BAD_ANSWER,
    PARSE_NO_ANSWER,
    PARSE_NO_THINK,
    PARSE_OK,
    Generation,
    ParsedAnswer,
)

PARSER_VERSION = 2

ANSWER_RULES = (
    "letter", "boxed", "latex_text", "latex", "bold", "phrase", "label", "option", "paren", "leading",
    "lower", "option_text",
)  # fmt: skip
# Values of answer_rule when no letter was read.
RULE_NO_ANSWER, RULE_EMPTY, RULE_AMBIGUOUS, RULE_NOT_OPTION, RULE_UNREAD = (
    "no_answer", "empty", "ambiguous", "not_an_option", "unread",
)  # fmt: skip
PARSE_FAILURES = (RULE_NO_ANSWER, RULE_EMPTY, RULE_AMBIGUOUS, RULE_NOT_OPTION, RULE_UNREAD)
# The answer_rule of a letter read by the optional LLM extractor (cotprobe.extractor), never by these rules.
RULE_LLM = "llm"

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)

_U = r"(?P<L>[A-Z])"
_NOT_WORD = r"(?![\w'])"
# After a phrase or label, a letter ends at punctuation, the line end or a connective.
_END = (
    r"(?=\s*(?:[.,;:!?)\]*}$`]|$)|\s+(?:because|since|as|which|with|for|given|due|that|in|on)\b"
    r"|\s*[-\u2013\u2014(])"
)
_CUE_ADVERB = r"(?:(?:probably|likely|definitely|clearly|then|therefore|thus|simply)\s+)?"
_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("letter", re.compile(r"^[(\[]?" + _U + r"[)\]]?[.:]?$")),
    ("boxed", re.compile(
        r"\\boxed\s*\{\s*(?:\\(?:text|textbf|mathrm|mathbf)\s*\{\s*)?\(?" + _U + r"\)?[.:]?\s*\}?\s*\}")),
    ("latex_text", re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf)\s*\{\s*\(?" + _U + r"\)?[.:]?\s*\}")),
    ("latex", re.compile(r"\$\s*\(?" + _U + r"\)?\s*\$|\\\(\s*" + _U.replace("L", "L2") + r"\s*\\\)")),
    ("bold", re.compile(
        r"(?P<m>\*\*|__|\*)\s*\(?" + _U + r"\)?(?:[.:)]\s*[^*_\n]*?)?\s*(?P=m)(?![*_])")),
    ("phrase", re.compile(
        r"\b(?:answer|option|choice|it|one)(?:'s|\s*(?:is|would be|should be|must be|will be|=))\s*:?\s*"
        + _CUE_ADVERB + r"(?:option\s+|choice\s+)?\(?" + _U + r"\)?" + _END
        + r"|\b(?:I(?:'d|'ll|\s+would|\s+will)?\s+(?:choose|pick|select|go\s+with)|so|therefore|thus|hence)"
        r"\s*[:,]?\s*(?:option\s+)?\(?" + _U.replace("L", "L2") + r"\)?" + _END
        + r"|^\(?" + _U.replace("L", "L3") + r"\)?\s+is\s+(?:the\s+)?(?:correct|right|answer|best)\b",
        re.IGNORECASE)),
    ("label", re.compile(
        r"(?:^|\n)[\s*_#>]*(?:(?:my|the)\s+)?(?:final\s+|correct\s+)?(?:answer|choice|option)[*_]*\s*[:\-\u2013=]"
        r"[*_]*\s*\(?"
        + _U + r"\)?" + _END, re.IGNORECASE)),
    ("option", re.compile(r"\b(?:option|choice)\s*[(\[]?(?P<L>[A-Za-z])[)\]]?" + _NOT_WORD, re.IGNORECASE)),
    ("paren", re.compile(r"\(" + _U + r"\)")),
    ("leading", re.compile(r"^[(\[]?" + _U + r"(?:[.):\]]\)?\s+|\s*[-\u2013\u2014]\s+)\S")),
    ("lower", re.compile(r"^[(\[]?(?P<L>[a-z])[)\]]?[.:]?$|^[(\[]?(?P<L2>[a-z])[.):\]]\)?\s+\S")),
]  # fmt: skip
# The phrase and label rules ignore case for their words but must not for the letter (``is a red
# cube``): IGNORECASE also lowers [A-Z], so their letters are checked to be capitals below.
_CAPITAL_ONLY = frozenset({"phrase", "label"})
_LEADING_WORDS = re.compile(r"^" + _U + r"\s+(?P<rest>\S.*)$", re.DOTALL)
# Two different letters offered together: "A or B", "either (A) or (B)", "A and B", "A, B", "A/B".
_PAIR = re.compile(
    r"(?<![\w'])[(\[]?(?P<a>[A-Z])[)\]]?\s*(?:,\s*(?:or\s+|and\s+)?|\s+or\s+|\s+and\s+|\s+and/or\s+|\s*/\s*|\s*&\s*)"
    r"[(\[]?(?P<b>[A-Z])[)\]]?(?![\w'])"
)
# "A and C are wrong": a pair that is ruled out, not offered.
_PAIR_NEGATED = re.compile(
    r"^\s*(?:are|is|were)\s+(?:both\s+)?(?:wrong|incorrect|not\b|false|ruled out)", re.IGNORECASE
)
# "blue, not red": a text mention right after these words is ruled out (normalised text).
_TEXT_NEGATED = re.compile(r" (?:not|never|nor|than|instead of|isn t|except) $")
_MARKUP = re.compile(r"\\(?:boxed|text|textbf|textit|mathrm|mathbf)\s*\{|[*_`$\\{}]")


class Parsed(NamedTuple):
    """One assistant turn, parsed.

    Attributes:
        think: The last closed think block, or None.
        answer_text: The last answer block (stripped), or None.
        answer_letter: The option letter read from it, or None.
        status: ``ok``, ``no_think``, ``no_answer`` or ``bad_answer`` (``cotprobe.records``).
        rule: The rule that read the letter (``ANSWER_RULES``), else why none was read
            (``PARSE_FAILURES``).
        reason: A sentence saying why no letter was read ("" when one was).
    """

    think: str | None
    answer_text: str | None
    answer_letter: str | None
    status: str
    rule: str
    reason: str = ""


class Reading(NamedTuple):
    """The letter an answer block names, the rule that read it, or why none was read."""

    letter: str | None
    rule: str
    reason: str = ""


def _options(options: Mapping[str, str] | Sequence[str]) -> dict[str, str | None]:
    """Letter -> option text (None when only the letters are known)."""
    if isinstance(options, Mapping):
        return dict(options)
    return dict.fromkeys(options)


def normalise(text: str) -> str:
    """Text as compared by the option-text rule: markup and punctuation gone, lower case, single spaces.

    Punctuation between digits stays (``3.5``, ``1,000``).
    """
    text = unicodedata.normalize("NFKC", _MARKUP.sub(" ", text)).lower()
    text = re.sub(r"(?<!\d)[^\w\s]|[^\w\s](?!\d)", " ", text)
    return " ".join(text.split())


def _ambiguous_pair(block: str, letters: dict[str, str | None]) -> tuple[str, str] | None:
    for m in _PAIR.finditer(block):
        a, b = m.group("a"), m.group("b")
        if a != b and a in letters and b in letters and not _PAIR_NEGATED.match(block[m.end() :]):
            return a, b
    return None


def _rule_letters(rule: str, pattern: re.Pattern[str], block: str) -> list[str]:
    found = []
    for m in pattern.finditer(block):
        letter = next((v for k, v in m.groupdict().items() if k.startswith("L") and v), None)
        if letter is None or (rule in _CAPITAL_ONLY and not letter.isupper()):
            continue
        found.append(letter)
    return found


def _text_reading(block: str, options: dict[str, str | None]) -> Reading | None:
    """The option whose text the block names, if exactly one (see the module docstring)."""
    texts = {k: normalise(v) for k, v in options.items() if v is not None and normalise(v)}
    if not texts:
        return None
    said = normalise(block)
    equal = [k for k, t in texts.items() if t == said]
    if len(equal) == 1:
        return Reading(equal[0], "option_text")
    padded = f" {said} "
    spans = []
    for k, t in texts.items():
        for m in re.finditer(r"(?= " + re.escape(t) + " )", padded):
            if not _TEXT_NEGATED.search(padded[: m.start() + 1]):
                spans.append((m.start(), m.start() + len(t) + 2, k))
    named = {
        k
        for a, b, k in spans
        if not any(k2 != k and a2 <= a and b <= b2 and b2 - a2 > b - a for a2, b2, k2 in spans)
    }
    if len(named) == 1:
        return Reading(named.pop(), "option_text")
    if len(named) > 1:
        return Reading(None, RULE_AMBIGUOUS, f"names the texts of options {', '.join(sorted(named))}")
    return None


def read_answer(block: str, options: Mapping[str, str] | Sequence[str]) -> Reading:
    """Read the option letter an answer block names (rules in the module docstring).

    Args:
        block: The content of the answer block.
        options: The sample's options, letter -> text; a bare sequence of letters turns the
            option-text rule off.

    Returns:
        The letter and the rule that read it, or None with the failure rule and a reason.
    """
    opts = _options(options)
    block = block.strip()
    if not block:
        return Reading(None, RULE_EMPTY, "the answer block is empty")
    pair = _ambiguous_pair(block, opts)
    if pair:
        return Reading(None, RULE_AMBIGUOUS, f"offers two options ({pair[0]} and {pair[1]})")
    outside: list[str] = []
    for rule, pattern in _RULES:
        found = _rule_letters(rule, pattern, block)
        ours = sorted({f.upper() for f in found} & set(opts))
        if len(ours) > 1:
            return Reading(None, RULE_AMBIGUOUS, f"names options {', '.join(ours)} ({rule})")
        if ours:
            return Reading(ours[0], rule)
        outside.extend(found)
    # "B red": a capital and a word are only a letter when the word is that option's text.
    m = _LEADING_WORDS.match(block)
    if (
        m
        and opts.get(m.group("L")) is not None
        and normalise(m.group("rest")) == normalise(opts[m.group("L")])
    ):
        return Reading(m.group("L"), "leading")
    text = _text_reading(block, opts)
    if text is not None:
        return text
    if outside:
        return Reading(None, RULE_NOT_OPTION, f"names {outside[0]}, not one of the options {', '.join(opts)}")
    return Reading(None, RULE_UNREAD, "names no option letter or option text")


def answer_letter(answer_text: str, options: Mapping[str, str] | Sequence[str]) -> str | None:
    """The option letter an answer block names, or None (see ``read_answer``)."""
    return read_answer(answer_text, options).letter


def parse_response(text: str, options: Mapping[str, str] | Sequence[str]) -> Parsed:
    """Split an assistant turn into think and answer and read the answer letter.

    Args:
        text: The whole assistant turn (pre-fill included).
        options: The sample's options, letter -> text (needed by the option-text rule); a
            sequence of letters reads letters only.

    Returns:
        The last closed think block, the last answer block, its letter, a parse status, the rule
        that read the letter (or why none was read) and a reason.
    """
    thinks = _THINK.findall(text)
    answers = _ANSWER.findall(text)
    think = thinks[-1].strip() if thinks else None
    if not answers:
        return Parsed(think, None, None, PARSE_NO_ANSWER, RULE_NO_ANSWER, "no <answer> block")
    answer_text = answers[-1].strip()
    reading = read_answer(answer_text, options)
    if reading.letter is None:
        return Parsed(think, answer_text, None, PARSE_BAD_ANSWER, reading.rule, reading.reason)
    status = PARSE_OK if think is not None else PARSE_NO_THINK
    return Parsed(think, answer_text, reading.letter, status, reading.rule)


def parse_record(sample_id: str, text: str, options: Mapping[str, str] | Sequence[str]) -> ParsedAnswer:
    """One row of the parse stage's file: ``text`` parsed, with this parser's version."""
    p = parse_response(text, options)
    return ParsedAnswer(
        sample_id, p.think, p.answer_text, p.answer_letter, p.status, p.rule, p.reason, PARSER_VERSION
    )


def reparse(generation: Generation, options: Mapping[str, str]) -> Generation:
    """The generation with its parse fields redone from ``text`` by this parser.

    A generation file keeps the parse made when it was written; every stage that reads one
    re-parses, so a parser change never needs the (expensive) generations again.
    """
    p = parse_response(generation.text, options)
    return dataclasses.replace(
        generation, think=p.think, answer_text=p.answer_text, answer_letter=p.answer_letter,
        parse_status=p.status, answer_rule=p.rule, parse_reason=p.reason,
    )  # fmt: skip


def is_well_formed(text: str) -> bool:
    """True for exactly one ``<think>…</think>`` followed by one ``<answer>…</answer>``."""
    return bool(_FORMAT.match(text)) and text.count("<think>") == 1 and text.count("<answer>") == 1
