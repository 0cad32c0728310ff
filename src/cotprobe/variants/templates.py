"""Caption and think templates, per question category, for the asserting variants.

A template asserts one option. Slots: ``{text}`` (the option text) and ``{letter}`` (its
letter). ``templates_for`` is the only place that chooses a template: an exact category entry
of ``TEMPLATES``, else ``GENERIC``. A benchmark with new categories (depth, distance,
orientation, ...) adds entries here; a category without one still gets the generic wording.
Changing any template changes the prompts, so bump the versions of the variants in
``cotprobe.variants.suite`` that use it.
"""

from __future__ import annotations

import re
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
        # Categories of the real benchmarks (cotprobe.benchmarks.categories maps each source's
        # question types onto these). Each reads naturally with its option texts: object names
        # ("the {text}"), direction words, yes/no, numbers, attributes or whole captions.
        "higher": CategoryTemplates(
            caption="Of the objects asked about, the {text} is the one higher up in the scene.",
            think="Comparing their heights in 3D, the {text} is higher up. So the answer is {letter}.",
        ),
        "closer_camera": CategoryTemplates(
            caption="Of the objects asked about, the {text} is the one closer to the camera.",
            think="Judging by depth, the {text} is closer to the camera. So the answer is {letter}.",
        ),
        "closer_to": CategoryTemplates(
            caption="Of the candidates, the {text} is the one closer to the reference object.",
            think="Estimating the real-world distances, the {text} is closer to the reference object. "
            "So the answer is {letter}.",
        ),
        "facing": CategoryTemplates(
            caption="The object it is facing towards is the {text}.",
            think="Following the direction it faces, it is facing towards the {text}. So the answer is {letter}.",
        ),
        "position": CategoryTemplates(
            caption="In the image, the relative position is {text}.",
            think="Comparing where the objects are in the image, the relative position is {text}. "
            "So the answer is {letter}.",
        ),
        "direction": CategoryTemplates(
            caption="From the camera's perspective, the direction is {text}.",
            think="Looking at its orientation from the camera's perspective, the direction is {text}. "
            "So the answer is {letter}.",
        ),
        "viewpoint": CategoryTemplates(
            caption="Seen from that viewpoint, the answer is {text}.",
            think="Imagining the scene from that viewpoint, the answer is {text}. So the answer is {letter}.",
        ),
        "yes_no": CategoryTemplates(
            caption="Checking the relation in the image, the answer to this question is {text}.",
            think="Checking the relation the question asks about in the image, the answer is {text}. "
            "So the answer is {letter}.",
        ),
        "number": CategoryTemplates(
            caption="Counting them in the image, the number is {text}.",
            think="Counting them one by one, I get {text}. So the answer is {letter}.",
        ),
        "attribute": CategoryTemplates(
            caption="The object in question is {text}.",
            think="Looking closely at the object, it is {text}. So the answer is {letter}.",
        ),
        "caption_match": CategoryTemplates(
            caption='The caption that fits this image is "{text}".',
            think='Comparing each caption with the image, the one that fits is "{text}". So the answer is {letter}.',
        ),
        "emotion": CategoryTemplates(
            caption="The mood this image conveys is {text}.",
            think="Reading the expressions and the scene, the mood is {text}. So the answer is {letter}.",
        ),
        "scene": CategoryTemplates(
            caption="The scene shown here is {text}.",
            think="Looking at the setting, the scene is {text}. So the answer is {letter}.",
        ),
        "ocr": CategoryTemplates(
            caption="The text in the image reads {text}.",
            think="Reading the text in the image, it says {text}. So the answer is {letter}.",
        ),
        "motion": CategoryTemplates(
            caption="Comparing the frames, the movement is: {text}.",
            think="Comparing the frames, the movement is: {text}. So the answer is {letter}.",
        ),
        "geometry": CategoryTemplates(
            caption="Solving the problem from the diagram gives {text}.",
            think="Working through the diagram step by step, the value comes out to {text}. "
            "So the answer is {letter}.",
        ),
    }
)

_DOUBLE_ARTICLE = re.compile(r"\b([Tt]he) (?:the|a|an)\b")

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
    sentence = _tidy(templates_for(category).caption.format(text=text, letter=letter))
    return sentence.removesuffix(".") + DISCLAIMER if disclaimer else sentence


def think(category: str, text: str, letter: str) -> str:
    """The reasoning asserting the option ``letter`` (``text``), without tags."""
    return _tidy(templates_for(category).think.format(text=text, letter=letter))


def _tidy(sentence: str) -> str:
    """Drop a doubled article where an option text starts with one ("the the chair")."""
    return _DOUBLE_ARTICLE.sub(r"\1", sentence)
