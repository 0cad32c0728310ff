"""Prompt variants: the controlled textual perturbations applied to every sample.

Plugins are registered as lazy ``module:attr`` strings, so resolving one (and reading its
version) at DAG-build time stays cheap.
"""

from __future__ import annotations

from cotprobe.records import Prompt, Sample
from cotprobe.registry import Registry
from cotprobe.variants.base import PromptVariant, render_user_text, wrong_letter

__all__ = ["VARIANTS", "VARIANT_NAMES", "PromptVariant", "perturb", "render_user_text", "wrong_letter"]

_SUITE = "cotprobe.variants.suite"
_TABLE = {
    "base": f"{_SUITE}:Base",
    "stop_think": f"{_SUITE}:StopThink",
    "wrong_think": f"{_SUITE}:WrongThink",
    "wrong_think_but": f"{_SUITE}:WrongThinkBut",
    "wrong_caption": f"{_SUITE}:WrongCaption",
    "wrong_caption_disclaimer": f"{_SUITE}:WrongCaptionDisclaimer",
    "correct_caption": f"{_SUITE}:CorrectCaption",
    "correct_think": f"{_SUITE}:CorrectThink",
    "abstain": f"{_SUITE}:Abstain",
    "wrong_caption_abstain": f"{_SUITE}:WrongCaptionAbstain",
    "wrong_think_abstain": f"{_SUITE}:WrongThinkAbstain",
}
# The suite in its canonical (paper) order, for configs and figure axes.
VARIANT_NAMES = tuple(_TABLE)

VARIANTS: Registry[type[PromptVariant]] = Registry("variant")
for _name, _target in _TABLE.items():
    VARIANTS.register(_name, _target)


def perturb(samples: list[Sample], variant: str, bench: str, seed: int) -> list[Prompt]:
    """Apply the variant ``variant`` to every sample, keeping their order.

    Args:
        samples: The clean samples of one benchmark.
        variant: A registered variant name.
        bench: The benchmark name.
        seed: The cell's seed.

    Returns:
        One Prompt per sample.

    Raises:
        cotprobe.registry.UnknownPluginError: For an unregistered variant name.
    """
    plugin = VARIANTS.get(variant)()
    return [plugin.apply(sample, bench=bench, seed=seed) for sample in samples]
