"""The prompt-variant interface and the rendering of the user turn.

A variant turns a Sample into a Prompt: a textual variant may add a caption, change the options or
set an assistant pre-fill, and never touches the image; an image variant
(``cotprobe.variants.image``) writes a transformed copy of the image and may relabel the question
and answer to match it. Variants are pure functions of (sample, bench, seed), so the same inputs
give byte-identical prompt (and image) files.
"""

from __future__ import annotations

import abc
import random
from typing import ClassVar

from cotprobe.records import CIRCULAR_SEP, Prompt, Sample, original_item

INSTRUCTION = (
    "Think step by step inside <think> </think> tags, "
    "then give only the option letter inside <answer> </answer> tags."
)


def render_user_text(question: str, options: dict[str, str], caption: str | None = None) -> str:
    """The text of the user turn (the image goes before it).

    One option per line as ``A. red``, so the letter is the same token in the prompt and in
    the answer.

    Args:
        question: The question, without options.
        options: Letter -> text, in display order.
        caption: A sentence put before the question, or None.

    Returns:
        Caption (if any), question, option lines and ``INSTRUCTION``, joined by newlines.
    """
    lines = [caption] if caption else []
    lines.append(question)
    lines.extend(f"{letter}. {text}" for letter, text in options.items())
    lines.append(INSTRUCTION)
    return "\n".join(lines)


def wrong_letter(sample: Sample, *, bench: str, seed: int) -> str:
    """The wrong option that the wrong_* variants push for this sample and seed.

    Drawn from ``random.Random(f"{seed}:{bench}:{sample.id}")``: string seeds hash with SHA-512,
    so the draw is stable across processes, and it ignores the variant, so every wrong_* variant
    pushes the same letter. The rotations of one item (ids ``<item>~<rotation>``) draw once per
    item, among the wrong options' texts, so every rotation pushes the same wrong text.

    Raises:
        ValueError: When the sample has no option other than its answer.
    """
    wrong = sorted(letter for letter in sample.options if letter != sample.answer)
    if not wrong:
        raise ValueError(f"sample {sample.id!r}: no wrong option to push")
    if CIRCULAR_SEP in sample.id:
        texts = sorted(sample.options[letter] for letter in wrong)
        text = random.Random(f"{seed}:{bench}:{original_item(sample.id)}").choice(texts)
        return next(letter for letter in wrong if sample.options[letter] == text)
    return random.Random(f"{seed}:{bench}:{sample.id}").choice(wrong)


class PromptVariant(abc.ABC):
    """A named perturbation of the prompt.

    Attributes:
        name: The registry name, stored in each Prompt.
        version: Bumped whenever the produced prompts change (templates included).
    """

    name: ClassVar[str]
    version: ClassVar[int]

    @abc.abstractmethod
    def apply(self, sample: Sample, *, bench: str, seed: int) -> Prompt:
        """Make the prompt of one sample.

        Args:
            sample: The clean sample.
            bench: The benchmark name (part of the cell, and of the wrong-option draw).
            seed: The cell's seed.

        Returns:
            The prompt, with the sample's image path unchanged.
        """

    def prompt(
        self,
        sample: Sample,
        *,
        bench: str,
        seed: int,
        options: dict[str, str] | None = None,
        caption: str | None = None,
        prefill: str = "",
        target_letter: str | None = None,
        abstain_letter: str | None = None,
        image: str | None = None,
        question: str | None = None,
        answer: str | None = None,
        category: str | None = None,
    ) -> Prompt:
        """Build this variant's Prompt from the sample and the parts the variant changes.

        ``image``, ``question``, ``answer`` and ``category`` replace the sample's (the image variants:
        a transformed image whose left and right are swapped, say); None keeps the sample's.

        Raises:
            ValueError: When the sample's answer (or the replacing one) is not one of its options.
        """
        if sample.answer not in sample.options:
            raise ValueError(f"sample {sample.id!r}: answer {sample.answer!r} is not an option")
        options = dict(sample.options if options is None else options)
        question = sample.question if question is None else question
        answer = sample.answer if answer is None else answer
        if answer not in options:
            raise ValueError(f"sample {sample.id!r}: answer {answer!r} is not an option")
        return Prompt(
            id=sample.id,
            bench=bench,
            variant=self.name,
            seed=seed,
            image=sample.image if image is None else image,
            question=question,
            options=options,
            answer=answer,
            category=sample.category if category is None else category,
            user_text=render_user_text(question, options, caption),
            prefill=prefill,
            target_letter=target_letter,
            caption=caption,
            variant_version=self.version,
            abstain_letter=abstain_letter,
        )
