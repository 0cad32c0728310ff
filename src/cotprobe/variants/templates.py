"""Caption and think templates, per question category, for the asserting variants.

A template asserts one option. Captions are scene-level descriptions with one slot, ``{text}``
(the option text): they imply the option, never name its letter or "the answer". Thinks end with
the model's own conclusion and also take ``{letter}``. ``templates_for`` is the only place that chooses a template: an exact category entry
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
        caption: A scene-level description put before the question that implies the option;
            slot ``{text}`` only (never the letter, never "the answer"); ends with ".".
        think: The reasoning pre-filled inside ``<think>``; the model continues after it.
    """

    caption: str
    think: str


# No category template: the caption describes the scene with the option's own text
# (``describe``); the think still concludes with the letter.
GENERIC = CategoryTemplates(
    caption="The image shows {text}.",
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
            caption="The largest shape in the image is {text}.",
            think="The largest shape is {text}. So the answer is {letter}.",
        ),
        # Categories of the real benchmarks (cotprobe.benchmarks.categories maps each source's
        # question types onto these). Each reads naturally with its option texts: object names
        # ("the {text}"), direction words, numbers, attributes or whole captions. ``yes_no``
        # captions are ``YES_NO_CAPTIONS`` (the option text alone cannot be described).
        "higher": CategoryTemplates(
            caption="In this scene, the {text} sits higher up than the other objects in question.",
            think="Comparing their heights in 3D, the {text} is higher up. So the answer is {letter}.",
        ),
        "closer_camera": CategoryTemplates(
            caption="In this photo, the {text} is nearer to the camera than the other objects in question.",
            think="Judging by depth, the {text} is closer to the camera. So the answer is {letter}.",
        ),
        "closer_to": CategoryTemplates(
            caption="In this scene, the {text} stands nearest to the reference object.",
            think="Estimating the real-world distances, the {text} is closer to the reference object. "
            "So the answer is {letter}.",
        ),
        "facing": CategoryTemplates(
            caption="In this scene, the object in question faces towards the {text}.",
            think="Following the direction it faces, it is facing towards the {text}. So the answer is {letter}.",
        ),
        "position": CategoryTemplates(
            caption="In the image, the objects in question are placed {text}.",
            think="Comparing where the objects are in the image, the relative position is {text}. "
            "So the answer is {letter}.",
        ),
        "direction": CategoryTemplates(
            caption="Seen from the camera, the object in question points {text}.",
            think="Looking at its orientation from the camera's perspective, the direction is {text}. "
            "So the answer is {letter}.",
        ),
        "viewpoint": CategoryTemplates(
            caption="Seen from that viewpoint, the scene places it {text}.",
            think="Imagining the scene from that viewpoint, the answer is {text}. So the answer is {letter}.",
        ),
        "yes_no": CategoryTemplates(
            caption="{text}",
            think="Checking the relation the question asks about in the image, the answer is {text}. "
            "So the answer is {letter}.",
        ),
        "number": CategoryTemplates(
            caption="There are {text} of them visible in the image.",
            think="Counting them one by one, I get {text}. So the answer is {letter}.",
        ),
        "attribute": CategoryTemplates(
            caption="In the image, the object in question is {text}.",
            think="Looking closely at the object, it is {text}. So the answer is {letter}.",
        ),
        "caption_match": CategoryTemplates(
            caption="{text}.",
            think='Comparing each caption with the image, the one that fits is "{text}". So the answer is {letter}.',
        ),
        "emotion": CategoryTemplates(
            caption="The scene in this image conveys {text}.",
            think="Reading the expressions and the scene, the mood is {text}. So the answer is {letter}.",
        ),
        "scene": CategoryTemplates(
            caption="This photo was taken at {text}.",
            think="Looking at the setting, the scene is {text}. So the answer is {letter}.",
        ),
        "ocr": CategoryTemplates(
            caption="The text visible in the image reads {text}.",
            think="Reading the text in the image, it says {text}. So the answer is {letter}.",
        ),
        "motion": CategoryTemplates(
            caption="Between the frames, the camera and the objects move like this: {text}.",
            think="Comparing the frames, the movement is: {text}. So the answer is {letter}.",
        ),
        "geometry": CategoryTemplates(
            caption="The measurements marked in the diagram work out to {text}.",
            think="Working through the diagram step by step, the value comes out to {text}. "
            "So the answer is {letter}.",
        ),
    }
)

# Yes/no options describe no scene of their own: the caption states whether the relation the
# question asks about holds.
YES_NO_CAPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "yes": "The photo clearly shows the relation described in the question.",
        "no": "The photo clearly shows that the relation described in the question does not hold.",
    }
)

_DOUBLE_ARTICLE = re.compile(r"\b([Tt]he) (?:the|a|an)\b")

# Joined to a caption in place of its final full stop.
DISCLAIMER = ", but I could be wrong."


def templates_for(category: str) -> CategoryTemplates:
    """The templates of ``category``, or ``GENERIC`` when it has none."""
    return TEMPLATES.get(category, GENERIC)


def caption(category: str, text: str, *, disclaimer: bool = False) -> str:
    """A scene description implying the option whose text is ``text``.

    Never names a letter or "the answer": the caption describes the image as if the option were
    true. A category without a template describes the scene with the option's own text.

    Args:
        category: The sample's category.
        text: The implied option's text.
        disclaimer: Soften it: "X is red." becomes "X is red, but I could be wrong."

    Returns:
        One sentence.
    """
    words = text.strip().rstrip(".")
    if category == "yes_no" and words.lower() in YES_NO_CAPTIONS:
        sentence = YES_NO_CAPTIONS[words.lower()]
    else:
        template = templates_for(category).caption
        if category == "yes_no":  # refine() sends only yes/no options here; anything else is generic
            template = GENERIC.caption
        sentence = _tidy(template.format(text=words))
    sentence = sentence[0].upper() + sentence[1:]
    return sentence.removesuffix(".") + DISCLAIMER if disclaimer else sentence


def think(category: str, text: str, letter: str) -> str:
    """The reasoning asserting the option ``letter`` (``text``), without tags."""
    return _tidy(templates_for(category).think.format(text=text, letter=letter))


def _tidy(sentence: str) -> str:
    """Drop a doubled article where an option text starts with one ("the the chair")."""
    return _DOUBLE_ARTICLE.sub(r"\1", sentence)
