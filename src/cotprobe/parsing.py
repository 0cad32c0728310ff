"""Parsing of ``<think>…</think><answer>…</answer>`` responses, shared by every stage.

The same functions serve generation records, the rule judge and (later) the GRPO reward, so a
"well-formed answer" means one thing everywhere.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from cotprobe.records import PARSE_BAD_ANSWER, PARSE_NO_ANSWER, PARSE_NO_THINK, PARSE_OK

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# A letter inside the answer block: "C", "(C)", "C.", "C) red", "Option C", "option (C)".
_ANSWER_LETTER = re.compile(r"^\s*(?:(?i:option)\s*)?\(?([A-Z])\)?(?:[.):\s]|$)")
# A lone lower-case letter ("c", "(c)") is read too, but not "a red circle".
_LONE_LOWER = re.compile(r"^\(?([a-z])\)?\.?$")
_FORMAT = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)


class Parsed(NamedTuple):
    think: str | None
    answer_text: str | None
    answer_letter: str | None
    status: str


def answer_letter(answer_text: str, letters: str | list[str]) -> str | None:
    """Read an option letter from an answer block, or None if it names no listed letter."""
    m = _ANSWER_LETTER.match(answer_text.strip()) or _LONE_LOWER.match(answer_text.strip())
    if m is None:
        return None
    letter = m.group(1).upper()
    return letter if letter in letters else None


def parse_response(text: str, letters: str | list[str]) -> Parsed:
    """Split an assistant turn into think and answer and read the answer letter.

    Args:
        text: The whole assistant turn (pre-fill included).
        letters: The option letters of the sample.

    Returns:
        The last closed think block, the last answer block, its letter and a parse status.
    """
    thinks = _THINK.findall(text)
    answers = _ANSWER.findall(text)
    think = thinks[-1].strip() if thinks else None
    if not answers:
        return Parsed(think, None, None, PARSE_NO_ANSWER)
    answer_text = answers[-1].strip()
    letter = answer_letter(answer_text, letters)
    if letter is None:
        return Parsed(think, answer_text, None, PARSE_BAD_ANSWER)
    return Parsed(think, answer_text, letter, PARSE_OK if think is not None else PARSE_NO_THINK)


def is_well_formed(text: str) -> bool:
    """True for exactly one ``<think>…</think>`` followed by one ``<answer>…</answer>``."""
    return bool(_FORMAT.match(text)) and text.count("<think>") == 1 and text.count("<answer>") == 1
