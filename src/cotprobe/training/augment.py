"""The paper's training-data augmentation, made by the evaluation's own perturbation code.

Each training prompt independently gets, with probability ``p`` each (0.1 in the paper: 40% in
all), a correct caption, a wrong caption, a correct think or a wrong think; otherwise it stays
the clean ``base`` prompt. Augmented prompts are exactly what the evaluation variants of the
same names produce (``cotprobe.variants``), so a wrong caption seen in training is worded like
the one tested. A think augmentation is an assistant pre-fill the model continues; the reward
scores pre-fill + completion.

The draw for a sample depends only on (run seed, bench, sample id), hashed through
``random.Random`` with a string seed (SHA-512, stable across processes), so it is reproducible
and independent of the order or subset of the samples.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from cotprobe.records import Prompt, Sample
from cotprobe.variants import VARIANTS

AUGMENT_VERSION = 2
AUGMENTATIONS = ("correct_caption", "wrong_caption", "correct_think", "wrong_think")
PAPER_PROBABILITY = 0.1


def choose_variant(sample_id: str, *, bench: str, seed: int, probability: float = PAPER_PROBABILITY) -> str:
    """The variant a training sample gets: one of ``AUGMENTATIONS`` or ``base``.

    Raises:
        ValueError: When ``probability`` is outside [0, 1/len(AUGMENTATIONS)].
    """
    if not 0 <= probability <= 1 / len(AUGMENTATIONS):
        raise ValueError(f"augment probability must be in [0, {1 / len(AUGMENTATIONS)}], got {probability}")
    u = random.Random(f"augment:{seed}:{bench}:{sample_id}").random()
    index = int(u // probability) if probability > 0 else len(AUGMENTATIONS)
    return AUGMENTATIONS[index] if index < len(AUGMENTATIONS) else "base"


def training_prompts(
    samples: Sequence[Sample],
    *,
    bench: str,
    seed: int,
    augment: bool = True,
    probability: float = PAPER_PROBABILITY,
) -> list[Prompt]:
    """One prompt per training sample, in order: ``base``, or an augmentation when ``augment``.

    Args:
        samples: The training samples.
        bench: Their benchmark id (part of the draw, as in the evaluation).
        seed: The training run's seed: drives which samples are augmented and which wrong option
            a wrong caption/think pushes.
        augment: False gives every sample the clean prompt.
        probability: Chance of each augmentation.
    """
    plugins = {name: VARIANTS.get(name)() for name in ("base", *AUGMENTATIONS)}
    out = []
    for sample in samples:
        name = (
            choose_variant(sample.id, bench=bench, seed=seed, probability=probability) if augment else "base"
        )
        out.append(plugins[name].apply(sample, bench=bench, seed=seed))
    return out
