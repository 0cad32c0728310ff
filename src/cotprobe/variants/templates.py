"""Caption and think templates, per question category, for the asserting variants.

A template asserts one option. Slots: ``{text}`` (the option text) and ``{letter}`` (its
letter). ``templates_for`` is the only place that chooses a template: an exact category entry
of ``TEMPLATES``, else ``GENERIC``. A benchmark with new categories (depth, distance,
orientation, ...) adds entries here; a category without one still gets the generic wording.
Changing any template changes the prompts, so bump the versions of the variants in
``cotprobe.variants.suite`` that use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class CategoryTemplates:
    """The two ways of asserting an option for one category.

    Attributes:
        caption: A sentence about the image put before the question; ends with ".".
        think: The reasoning pre-filled inside ``<think>``; the model continues after it.
    """

    caption: str
    think: str


GENERIC = CategoryTemplates(
    caption="The answer is {text}.",
    think="Looking at the image, the answer is {text}. So the answer is {letter}.",
)

TEMPLATES: Mapping[str, CategoryTemplates] = MappingProxyType(
    {
        "left": CategoryTemplates(
            caption="The shape on the left is {text}.",
            think="The shape on the left is {text}. So the answer is {letter}.",
        ),
        "right": CategoryTemplates(
            caption="The shape on the right is {text}.",
            think="The shape on the right is {text}. So the answer is {letter}.",
        ),
        "above": CategoryTemplates(
            caption="The shape at the top is {text}.",
            think="The shape at the top is {text}. So the answer is {letter}.",
        ),
        "below": CategoryTemplates(
            caption="The shape at the bottom is {text}.",
            think="The shape at the bottom is {text}. So the answer is {letter}.",
        ),
        # "The number ... is {text}" reads well for "one" as for "five" (no plural to agree).
        "count": CategoryTemplates(
            caption="The number of shapes in the image is {text}.",
            think="Counting the shapes, the number of shapes is {text}. So the answer is {letter}.",
        ),
        "largest": CategoryTemplates(
            caption="The largest shape is {text}.",
            think="The largest shape is {text}. So the answer is {letter}.",
        ),
    }
)

# Joined to a caption in place of its final full stop.
DISCLAIMER = ", but I could be wrong."


def templates_for(category: str) -> CategoryTemplates:
    """The templates of ``category``, or ``GENERIC`` when it has none."""
    return TEMPLATES.get(category, GENERIC)


def caption(category: str, text: str, letter: str, *, disclaimer: bool = False) -> str:
    """A caption asserting the option ``letter`` (``text``).

    Args:
        category: The sample's category.
        text: The asserted option's text.
        letter: The asserted option's letter.
        disclaimer: Soften it: "X is red." becomes "X is red, but I could be wrong."

    Returns:
        One sentence.
    """
    sentence = templates_for(category).caption.format(text=text, letter=letter)
    return sentence.removesuffix(".") + DISCLAIMER if disclaimer else sentence


def think(category: str, text: str, letter: str) -> str:
    """The reasoning asserting the option ``letter`` (``text``), without tags."""
    return templates_for(category).think.format(text=text, letter=letter)
