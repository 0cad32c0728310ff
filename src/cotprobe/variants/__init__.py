"""Prompt variants: the controlled textual perturbations applied to every sample, and the
image-side ones (``cotprobe.variants.image``), which write a transformed copy of each image.

Plugins are registered as lazy ``module:attr`` strings, so resolving one (and reading its
version) at DAG-build time stays cheap.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cotprobe.records import Prompt, Sample
from cotprobe.registry import Registry
from cotprobe.variants.base import PromptVariant, render_user_text, wrong_letter

__all__ = [
    "ALL_VARIANT_NAMES",
    "IMAGE_VARIANT_NAMES",
    "VARIANTS",
    "VARIANT_NAMES",
    "CellPrompts",
    "PromptVariant",
    "is_image_variant",
    "perturb",
    "perturb_cell",
    "render_user_text",
    "wrong_letter",
]

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
# The textual suite in its canonical (paper) order, for configs and figure axes.
VARIANT_NAMES = tuple(_TABLE)

_IMAGE = "cotprobe.variants.image"
_IMAGE_TABLE = {
    "mirror": f"{_IMAGE}:Mirror",
    "distractor": f"{_IMAGE}:Distractor",
    "crop_zoom": f"{_IMAGE}:CropZoom",
}
# Beyond the paper (textual only): image-side perturbations, which write images and may skip samples.
IMAGE_VARIANT_NAMES = tuple(_IMAGE_TABLE)
ALL_VARIANT_NAMES = VARIANT_NAMES + IMAGE_VARIANT_NAMES

VARIANTS: Registry[type[PromptVariant]] = Registry("variant")
for _name, _target in {**_TABLE, **_IMAGE_TABLE}.items():
    VARIANTS.register(_name, _target)


def is_image_variant(variant: str) -> bool:
    """Whether ``variant`` transforms the image (its perturb job also writes images and a report)."""
    return variant in _IMAGE_TABLE


@dataclass
class CellPrompts:
    """One (bench, variant, seed) cell's prompts, and the samples the variant skipped.

    Attributes:
        prompts: One Prompt per kept sample, in the samples' order.
        skipped: Category -> reason -> number of samples skipped (empty for textual variants).
        n_samples: Category -> number of samples in.
        edits: Sample id -> what the image variant did (source, image, parameters).
    """

    prompts: list[Prompt]
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    n_samples: dict[str, int] = field(default_factory=dict)
    edits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def report(self, *, bench: str, variant: str, seed: int) -> dict[str, Any]:
        """The cell's report, written beside its prompts: counts per category, then every edit."""
        categories = {
            c: {
                "n_samples": n,
                "n_kept": n - sum(self.skipped.get(c, {}).values()),
                "skipped": dict(sorted(self.skipped.get(c, {}).items())),
            }
            for c, n in sorted(self.n_samples.items())
        }
        return {
            "bench": bench,
            "variant": variant,
            "version": VARIANTS.version(variant),
            "seed": seed,
            "n_samples": sum(self.n_samples.values()),
            "n_kept": len(self.prompts),
            "n_skipped": sum(sum(r.values()) for r in self.skipped.values()),
            "categories": categories,
            "edits": self.edits,
        }


def perturb_cell(
    samples: list[Sample], variant: str, bench: str, seed: int, image_dir: str | Path | None = None
) -> CellPrompts:
    """Apply ``variant`` to every sample; an image variant writes its images under ``image_dir``.

    A sample the image variant cannot perturb with a known answer is left out of the prompts and
    counted per category and reason. Textual variants keep every sample.

    Raises:
        cotprobe.registry.UnknownPluginError: For an unregistered variant name.
        ValueError: An image variant without ``image_dir``.
    """
    from cotprobe.variants.image import ImageVariant, SkipSample

    cls = VARIANTS.get(variant)
    n_samples = dict(Counter(s.category for s in samples))
    if not issubclass(cls, ImageVariant):
        plugin = cls()
        return CellPrompts([plugin.apply(s, bench=bench, seed=seed) for s in samples], n_samples=n_samples)
    plugin = cls(image_dir=image_dir)
    out = CellPrompts([], n_samples=n_samples)
    for sample in samples:
        try:
            prompt, edit = plugin.apply_image(sample, bench=bench, seed=seed)
        except SkipSample as skip:
            reasons = out.skipped.setdefault(sample.category, {})
            reasons[skip.reason] = reasons.get(skip.reason, 0) + 1
            continue
        out.prompts.append(prompt)
        out.edits[sample.id] = edit
    return out


def perturb(
    samples: list[Sample], variant: str, bench: str, seed: int, image_dir: str | Path | None = None
) -> list[Prompt]:
    """Apply the variant ``variant`` to every sample, keeping their order.

    Args:
        samples: The clean samples of one benchmark.
        variant: A registered variant name.
        bench: The benchmark name.
        seed: The cell's seed.
        image_dir: Where an image variant writes its images (required for one; unused otherwise).

    Returns:
        One Prompt per sample (an image variant: per sample it did not skip; ``perturb_cell``
        also says which it skipped and why).

    Raises:
        cotprobe.registry.UnknownPluginError: For an unregistered variant name.
    """
    return perturb_cell(samples, variant, bench, seed, image_dir).prompts
