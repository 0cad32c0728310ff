"""The controlled textual perturbation suite: eleven prompt variants.

``base`` and ``stop_think`` push nowhere; ``wrong_*`` assert the wrong option chosen by
``wrong_letter`` (the same one in every wrong_* variant); ``correct_*`` assert the answer, to
show that an effect comes from what the text says rather than from the text being there;
``abstain`` offers an "I'm not sure" option, and ``wrong_caption_abstain`` /
``wrong_think_abstain`` offer it under each attack (does the model abstain when misled?).
"""

from __future__ import annotations

from typing import ClassVar

from cotprobe.records import LETTERS, Prompt, Sample
from cotprobe.variants import templates
from cotprobe.variants.base import PromptVariant, wrong_letter

STOP_THINK_PREFILL = "<think>Okay let's see. This should be the final answer.</think>"
BUT_SUFFIX = " But I think"
ABSTAIN_TEXT = "I'm not sure"


class Base(PromptVariant):
    """The clean prompt."""

    name = "base"
    version = 1

    def apply(self, sample: Sample, *, bench: str, seed: int) -> Prompt:
        return self.prompt(sample, bench=bench, seed=seed)


class StopThink(PromptVariant):
    """A closed, empty-handed think block: the model goes straight to the answer."""

    name = "stop_think"
    version = 1

    def apply(self, sample: Sample, *, bench: str, seed: int) -> Prompt:
        return self.prompt(sample, bench=bench, seed=seed, prefill=STOP_THINK_PREFILL)


class _Asserting(PromptVariant):
    """A variant that asserts one option: the wrong one, or the answer when ``correct``."""

    correct: ClassVar[bool] = False

    def target(self, sample: Sample, *, bench: str, seed: int) -> str:
        return sample.answer if self.correct else wrong_letter(sample, bench=bench, seed=seed)


class _Think(_Asserting):
    """Pre-fills an open think block that asserts the target; the model continues it."""

    suffix: ClassVar[str] = ""
    abstain: ClassVar[bool] = False

    def apply(self, sample: Sample, *, bench: str, seed: int) -> Prompt:
        letter = self.target(sample, bench=bench, seed=seed)
        reasoning = templates.think(sample.category, sample.options[letter], letter)
        options, abstain = with_abstain(sample) if self.abstain else (None, None)
        return self.prompt(
            sample,
            bench=bench,
            seed=seed,
            options=options,
            prefill=f"<think>{reasoning}{self.suffix}",
            target_letter=letter,
            abstain_letter=abstain,
        )


class _Caption(_Asserting):
    """Puts a caption asserting the target before the question."""

    disclaimer: ClassVar[bool] = False
    abstain: ClassVar[bool] = False

    def apply(self, sample: Sample, *, bench: str, seed: int) -> Prompt:
        letter = self.target(sample, bench=bench, seed=seed)
        text = templates.caption(sample.category, sample.options[letter], disclaimer=self.disclaimer)
        options, abstain = with_abstain(sample) if self.abstain else (None, None)
        return self.prompt(
            sample,
            bench=bench,
            seed=seed,
            options=options,
            caption=text,
            target_letter=letter,
            abstain_letter=abstain,
        )


class WrongThink(_Think):
    """Think pre-fill asserting the wrong option."""

    name = "wrong_think"
    version = 1


class WrongThinkBut(_Think):
    """Think pre-fill asserting the wrong option, then " But I think" (a repair cue)."""

    name = "wrong_think_but"
    version = 1
    suffix = BUT_SUFFIX


class CorrectThink(_Think):
    """Think pre-fill asserting the answer."""

    name = "correct_think"
    version = 1
    correct = True


class WrongCaption(_Caption):
    """Caption asserting the wrong option."""

    name = "wrong_caption"
    version = 2


class WrongCaptionDisclaimer(_Caption):
    """Caption asserting the wrong option, ending ", but I could be wrong." (a repair cue)."""

    name = "wrong_caption_disclaimer"
    version = 2
    disclaimer = True


class CorrectCaption(_Caption):
    """Caption asserting the answer."""

    name = "correct_caption"
    version = 2
    correct = True


def with_abstain(sample: Sample) -> tuple[dict[str, str], str]:
    """The sample's options plus ``ABSTAIN_TEXT`` at the next letter (E after A-D), and that letter.

    Raises:
        ValueError: When the options are not lettered A, B, C, ... in order, or no letter is left.
    """
    n = len(sample.options)
    if list(sample.options) != list(LETTERS[:n]):
        raise ValueError(f"sample {sample.id!r}: options are not lettered A, B, C, ... in order")
    if n >= len(LETTERS):
        raise ValueError(f"sample {sample.id!r}: no letter left for the abstain option")
    letter = LETTERS[n]
    return {**sample.options, letter: ABSTAIN_TEXT}, letter


class Abstain(PromptVariant):
    """Adds ``ABSTAIN_TEXT`` as one more option at the next letter (E after A-D).

    The answer is unchanged. ``target_letter`` is None: abstaining is an offer, not a push; the
    abstain letter is the last key of ``options`` and the prompt's ``abstain_letter``.
    """

    name = "abstain"
    version = 2

    def apply(self, sample: Sample, *, bench: str, seed: int) -> Prompt:
        options, letter = with_abstain(sample)
        return self.prompt(sample, bench=bench, seed=seed, options=options, abstain_letter=letter)


class WrongCaptionAbstain(_Caption):
    """The wrong caption, with the abstain option offered (the paper's abstention under attack)."""

    name = "wrong_caption_abstain"
    version = 1
    abstain = True


class WrongThinkAbstain(_Think):
    """The wrong think pre-fill, with the abstain option offered."""

    name = "wrong_think_abstain"
    version = 1
    abstain = True
