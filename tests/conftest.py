"""Shared fixtures: the tiny real Qwen2.5-VL (built once per session) and prompt factories."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotprobe.records import Prompt

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "black")
INSTRUCTION = (
    "Think step by step inside <think> </think> tags, then give only the option letter inside "
    "<answer> </answer> tags."
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model (seed 0) saved once per session; treat it as read-only."""
    from cotprobe.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


@pytest.fixture(scope="session")
def make_prompt(tmp_path_factory):
    """Factory for Prompt records whose image (a coloured square) exists on disk.

    ``make_prompt(i, prefill="", n_options=4, long=False)`` gives sample ``s{i}``; ``long`` makes
    the user text longer so that a batch needs padding. Its answer is letter ``i % n_options`` (the
    option naming the square's colour) and its target the letter after it.
    """
    from PIL import Image

    image_dir = tmp_path_factory.mktemp("images")

    def make(i: int, *, prefill: str = "", n_options: int = 4, long: bool = False) -> Prompt:
        colour = COLOURS[i % len(COLOURS)]
        path = image_dir / f"s{i}.png"
        if not path.exists():
            image = Image.new("RGB", (112, 112), "white")
            image.paste(Image.new("RGB", (40, 40), colour), (10 + 8 * (i % 5), 36))
            image.save(path)
        # The correct option sits at letter i % n_options (not always A) and the pushed target
        # at the next one (not always B), so an index read at a fixed position is caught.
        letters = "ABCDEFGHIJ"[:n_options]
        answer, target = letters[i % n_options], letters[(i + 1) % n_options]
        colours = [COLOURS[(i + k) % len(COLOURS)] for k in range(n_options)]  # the right one first
        options = {letter: colours[(k - i) % n_options] for k, letter in enumerate(letters)}
        question = "Which colour is the shape on the left?"
        lines = "\n".join(f"{k}. {v}" for k, v in options.items())
        user_text = f"{question}\n{lines}\n{INSTRUCTION}"
        if long:
            user_text = "How many shapes are in the image? " * 3 + user_text
        return Prompt(
            id=f"s{i}",
            bench="shapes",
            variant="test",
            seed=0,
            image=str(path),
            question=question,
            options=options,
            answer=answer,
            category="left",
            user_text=user_text,
            prefill=prefill,
            target_letter=target,
        )

    return make
