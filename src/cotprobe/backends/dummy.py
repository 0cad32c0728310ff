"""A deterministic fake backend for fast plumbing tests (no model, no torch).

Real behaviour is tested with the tiny real model through ``HFBackend``; this one only makes
records of the right shape quickly. Every value is a function of (seed, sample id), so results
do not depend on batch size or order.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from cotprobe.backends.base import (
    Backend,
    check_pairs,
    check_sampling,
    letter_distribution,
    make_generation,
    scoring_point,
)
from cotprobe.records import Generation, LetterScores, Prompt


def _rng(*parts: object) -> random.Random:
    """A Random seeded from the parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class DummyBackend(Backend):
    """Answers with a seeded letter and scores letters from a seeded distribution.

    Args:
        path: Ignored (kept for the common constructor).
        well_formed: Probability that a response is ``<think>…</think><answer>X</answer>``;
            otherwise it stops inside the think (no answer, ``finish_reason="length"``).
        sharpness: Scale of the random letter logits (0 gives uniform letter scores).
    """

    version = 1
    env = "eval"

    def __init__(self, path: str = "", *, well_formed: float = 1.0, sharpness: float = 2.0):
        super().__init__(path, well_formed=well_formed, sharpness=sharpness)
        if not 0.0 <= float(well_formed) <= 1.0:
            raise ValueError(f"well_formed must be in [0, 1], got {well_formed!r}")
        self.well_formed = float(well_formed)
        self.sharpness = float(sharpness)

    def generate(
        self, prompts: list[Prompt], *, model_id: str, seed: int, sampling: dict[str, Any]
    ) -> list[Generation]:
        """Fake answers; see ``Backend.generate``. ``sampling`` is validated, then ignored."""
        check_sampling(sampling)
        return [self._generate_one(p, model_id, seed) for p in prompts]

    def _generate_one(self, prompt: Prompt, model_id: str, seed: int) -> Generation:
        rng = _rng("generate", seed, prompt.id)
        letters = list(prompt.options)
        letter = rng.choice(letters)
        opened = "<think>" in prompt.prefill
        think = f"{'' if opened else '<think>'}Okay let's see. The answer is {letter}."
        if rng.random() < self.well_formed:
            completion, finish = f"{think}</think><answer>{letter}</answer>", "stop"
        else:
            completion, finish = f"{think} But I think", "length"
        return make_generation(
            prompt,
            model_id=model_id,
            completion=completion,
            prompt_tokens=len(prompt.user_text.split()) + len(prompt.prefill.split()),  # words, not tokens
            completion_tokens=len(completion.split()),
            seconds=0.0,
            finish_reason=finish,
        )

    def letter_scores(self, prompts: list[Prompt], generations: list[Generation]) -> list[LetterScores]:
        """Seeded letter distributions; see ``Backend.letter_scores``."""
        check_pairs(prompts, generations)
        out = []
        for prompt, generation in zip(prompts, generations):
            point = scoring_point(prompt, generation)
            rng = _rng("scores", generation.seed, prompt.id, point.assistant_text)
            letters = list(prompt.options)
            logits = [self.sharpness * rng.gauss(0.0, 1.0) for _ in letters]
            fields = letter_distribution(letters, logits, prompt.answer, prompt.target_letter)
            out.append(LetterScores(id=prompt.id, answer_position=point.answer_position, **fields))
        return out
