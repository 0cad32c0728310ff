import collections

import pytest

from cotprobe.records import Sample
from cotprobe.training.augment import AUGMENTATIONS, choose_variant, training_prompts
from cotprobe.variants import perturb

COLOURS = ["red", "green", "blue", "yellow"]


def samples(n):
    return [
        Sample(
            id=f"s{i:05d}", image=f"img/{i}.png", question="Which colour is the shape on the left?",
            options=dict(zip("ABCD", COLOURS[i % 4:] + COLOURS[: i % 4])), answer="ABCD"[i % 3],
            category="left",
        )
        for i in range(n)
    ]  # fmt: skip


def test_each_augmentation_has_its_share():
    n = 8000
    counts = collections.Counter(p.variant for p in training_prompts(samples(n), bench="shapes", seed=3))
    # Binomial sd for p=0.1, n=8000 is 0.0034; 0.015 is over 4 sd.
    for name in AUGMENTATIONS:
        assert counts[name] / n == pytest.approx(0.1, abs=0.015), counts
    assert counts["base"] / n == pytest.approx(0.6, abs=0.02), counts
    assert set(counts) == {"base", *AUGMENTATIONS}


def test_the_probability_is_configurable_and_off_means_clean():
    data = samples(2000)
    counts = collections.Counter(
        p.variant for p in training_prompts(data, bench="shapes", seed=0, probability=0.25)
    )
    assert counts["base"] == 0 and all(counts[a] > 400 for a in AUGMENTATIONS)
    assert {p.variant for p in training_prompts(data, bench="shapes", seed=0, augment=False)} == {"base"}
    assert {p.variant for p in training_prompts(data, bench="shapes", seed=0, probability=0.0)} == {"base"}
    with pytest.raises(ValueError, match="probability"):
        choose_variant("s", bench="shapes", seed=0, probability=0.3)


def test_deterministic_per_seed_and_independent_of_order():
    data = samples(400)
    a = training_prompts(data, bench="shapes", seed=7)
    assert a == training_prompts(data, bench="shapes", seed=7)
    by_id = {p.id: p for p in a}
    assert [by_id[p.id] for p in training_prompts(data[::-1], bench="shapes", seed=7)] == a[::-1]
    assert [by_id[p.id] for p in training_prompts(data[:50], bench="shapes", seed=7)] == a[:50]
    other = training_prompts(data, bench="shapes", seed=8)
    assert [p.variant for p in other] != [p.variant for p in a]


def test_augmented_prompts_are_the_evaluation_variants():
    data = samples(300)
    for p in training_prompts(data, bench="shapes", seed=1):
        sample = next(s for s in data if s.id == p.id)
        assert p == perturb([sample], p.variant, bench="shapes", seed=1)[0]
    prompts = training_prompts(data, bench="shapes", seed=1)
    for p in prompts:
        if p.variant.startswith("wrong"):
            assert p.target_letter != p.answer
        if p.variant.startswith("correct"):
            assert p.target_letter == p.answer
        if p.variant.endswith("think"):
            assert p.prefill.startswith("<think>") and p.caption is None
        if p.variant.endswith("caption"):
            assert p.prefill == "" and p.caption in p.user_text
