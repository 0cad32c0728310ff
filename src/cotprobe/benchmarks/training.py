"""Adapters of the paper's training sets, normalised to the same Sample shape as the benchmarks.

The reward of the training issue needs the question, the options and the correct letter (all in
the Sample) and, for free-text rewards, the answer text: ``meta.answer_text`` always holds it.

Kinds and what each drops:
- ``sat`` (``array/SAT``): nothing. ``correct_answer`` is option text; the options are shown in a
  seeded shuffle (the card warns they are not randomised) and the letter follows. The known data
  bug "in the first frame" in answers is stripped (``meta.stripped_first_frame``). Rows with two
  images (two frames) keep the first as ``image`` and list all in ``meta.images`` (the verl
  backend sends them all) under ``multi_image: keep`` (default), or are dropped and counted
  (``multi_image``) under ``multi_image: drop``. The ``nv-njb/SAT`` repack
  (``correct_answer_idx``) is read too.
- ``pixmo-count`` (``allenai/pixmo-count``): nothing but unfetchable images under
  ``on_missing_image: skip``. There is no question: "How many {label} are in the image?"; the
  options are the count and three distinct non-negative neighbours within 3, seeded per row,
  in ascending order. Images are URLs checked against ``image_sha256``.
- ``geometry3k`` (``hiyouga/geometry3k``): rows without ``choices`` (the card's older revision)
  are dropped (``no_choices``). ``meta.problem`` keeps the ``<image>`` placeholder EasyR1 needs.
"""

from __future__ import annotations

import random
from typing import Any

from cotprobe.benchmarks.adapter import Drop, Item, SourceBenchmark, need
from cotprobe.benchmarks.categories import SAT as SAT_TYPES
from cotprobe.benchmarks.categories import SAT_KEYWORDS, by_keywords, refine
from cotprobe.benchmarks.choices import (
    SOURCE_LETTERS,
    Choices,
    Contradiction,
    by_letter,
    by_text,
    norm_text,
    parse_letter,
)
from cotprobe.benchmarks.evaluation import checked, column_keys, defaults, number_options
from cotprobe.benchmarks.sources import Table
from cotprobe.io import InputError

FIRST_FRAME_BUG = " in the first frame"


def image_list(row: dict[str, Any], field: str, where: str) -> list[Any]:
    value = need(row, field, where)
    images = list(value) if isinstance(value, list | tuple) else [value]
    if not images:
        raise InputError(f"{where}: field {field!r}: no image")
    return images


class SAT(SourceBenchmark):
    """SAT, Spatial Aptitude Training (``array/SAT``); see the module docstring."""

    name = "sat"
    version = 2
    hub_ids = ("array/SAT",)
    defaults = defaults(split="train", multi_image="keep")

    def check_args(self, args) -> None:
        super().check_args(args)
        if args["multi_image"] not in ("keep", "drop"):
            raise self.arg_error("multi_image", "must be 'keep' or 'drop'")

    def keys(self, table: Table) -> list[Any]:
        questions = table.get_column("question")
        answers = table.get_column("answers")
        return [f"{q}|{'|'.join(map(str, a or []))}" for q, a in zip(questions, answers, strict=True)]

    def normalise(self, row, where, key, rng_key) -> Item:
        question = str(need(row, "question", where)).strip()
        answers = need(row, "answers", where)
        if not isinstance(answers, list | tuple) or len(answers) < 2:
            raise InputError(f"{where}: field 'answers': expected a list of at least 2 options")
        texts = [str(a).replace(FIRST_FRAME_BUG, "").strip() for a in answers]
        stripped = texts != [str(a).strip() for a in answers]
        options = [(None, t) for t in texts]
        if "correct_answer" in row:
            correct = str(row["correct_answer"]).replace(FIRST_FRAME_BUG, "").strip()
            choices = by_text(options, correct, where=where, field="correct_answer")
        else:
            idx = need(row, "correct_answer_idx", where)
            if not isinstance(idx, int) or not 0 <= idx < len(texts):
                raise Contradiction(f"{where}: field 'correct_answer_idx': {idx!r} names no option")
            choices = Choices(texts, idx, [None] * len(texts))
        checked(choices, where, "answers")
        images = image_list(row, "image_bytes", where)
        if len(images) > 1 and self.args["multi_image"] == "drop":
            raise Drop("multi_image")
        order = list(range(len(texts)))
        random.Random(rng_key).shuffle(order)
        qtype = str(row.get("question_type") or "")
        category = SAT_TYPES.get(qtype) or by_keywords(f"{qtype} {question}", SAT_KEYWORDS)
        return Item(
            question=question,
            choices=choices,
            category=refine(category, texts),
            image=images[0],
            image_field="image_bytes",
            extra_images=images[1:],
            order=order,
            meta={
                "question_type": qtype or None,
                "answer_text": choices.texts[choices.answer],
                "stripped_first_frame": stripped,
                "construction": "seeded_option_shuffle",
            },
        )


class PixMoCount(SourceBenchmark):
    """PixMo-Count (``allenai/pixmo-count``); see the module docstring."""

    name = "pixmo-count"
    version = 1
    hub_ids = ("allenai/pixmo-count",)
    defaults = defaults(split="train")

    def keys(self, table: Table) -> list[Any]:
        urls, labels = table.get_column("image_url"), table.get_column("label")
        return [f"{u}|{lab}" for u, lab in zip(urls, labels, strict=True)]

    def normalise(self, row, where, key, rng_key) -> Item:
        count = need(row, "count", where)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InputError(f"{where}: field 'count': expected a non-negative integer, got {count!r}")
        label = str(need(row, "label", where)).strip()
        if not label:
            raise InputError(f"{where}: field 'label': empty")
        values = number_options(count, random.Random(rng_key))
        texts = [str(v) for v in values]
        points = row.get("points") or {}
        n_points = len(points.get("x") or []) if isinstance(points, dict) else len(points)
        sha = row.get("image_sha256")
        return Item(
            question=f"How many {label} are in the image?",
            choices=Choices(texts, values.index(count), [None] * len(texts)),
            category="number",
            image=need(row, "image_url", where),
            image_field="image_url",
            checksum=("sha256", sha) if sha else None,
            meta={
                "count": count,
                "label": label,
                "n_points": n_points,
                "answer_text": str(count),
                "construction": "count_and_three_neighbours",
            },
        )


class Geometry3K(SourceBenchmark):
    """Geometry3K as EasyR1 uses it (``hiyouga/geometry3k``); see the module docstring."""

    name = "geometry3k"
    version = 1
    hub_ids = ("hiyouga/geometry3k",)
    defaults = defaults(split="train")

    def keys(self, table: Table) -> list[Any]:
        return column_keys(table, "id", "problem")

    def normalise(self, row, where, key, rng_key) -> Item:
        problem = str(need(row, "problem", where))
        answer = str(need(row, "answer", where)).strip()
        images = image_list(row, "images", where)
        texts = row.get("choices")
        if not texts:
            raise Drop("no_choices")
        options = list(zip(SOURCE_LETTERS, (str(t).strip() for t in texts), strict=False))
        if row.get("ground_truth"):
            choices = by_letter(options, parse_letter(row["ground_truth"]), where=where, field="ground_truth")
            if norm_text(choices.texts[choices.answer]) != norm_text(answer):
                raise Contradiction(
                    f"{where}: field 'answer': {answer!r} contradicts ground_truth {row['ground_truth']!r} "
                    f"(option text {choices.texts[choices.answer]!r})"
                )
        else:
            choices = by_text(options, answer, where=where, field="answer")
        checked(choices, where, "choices")
        return Item(
            question=problem.replace("<image>", "").strip(),
            choices=choices,
            category="geometry",
            image=images[0],
            image_field="images",
            extra_images=images[1:],
            meta={"problem": problem, "answer_text": answer, "id": row.get("id")},
        )
