"""The model organism: a supervised warm start of the tiny Qwen2.5-VL on the ``shapes`` train split.

The target of every training sample is ``<think>{think}</think><answer>{letter}</answer>`` plus the
end of turn, after exactly the prompt the evaluation renders (the ``base`` variant through the
chat template, image first). The think names what is seen, then re-copies the option lines up to
the one that holds it and names that option::

    The left is red, the right is green; left: red.
    A. yellow
    B. green
    C. red
    so option C.

Why this shape (README, *Organism recipe v5* and the seed study): reading the colour is easy for the
tiny model; finding the letter that holds it is not. Re-copying ``A. yellow`` lines token for
token turns the lookup into copies from a constant distance back, provided the first sentence
has the same number of tokens in every category (14 with the tiny tokenizer), and the stop is the
check "is the text just copied the one stated". Reading a position is easier when the think
first names both extreme shapes along the asked axis (a one-sentence think read 40-64 % of the
spatial questions right); the stated text then follows a marker (``left:``) that appears once
in the think, so the stop check cannot match an extreme that was named but not asked.

Light at import: torch and transformers are imported inside ``warm_start``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from cotprobe.benchmarks.shapes import NUMBER_WORDS, PALETTE, Shapes
from cotprobe.io import current_umask
from cotprobe.parsing import is_well_formed
from cotprobe.records import Sample
from cotprobe.variants import perturb

ORGANISM_VERSION = 5
# The training recipes: ``v3`` the plain base layout with hard targets, ``v4`` varied layouts, text
# evidence and soft answer letters (``cotprobe.models.organism_v4``), ``v5`` v4 with the option lines at a
# fixed distance from the think (``cotprobe.models.organism_v5``). A build's cache key carries its
# recipe's version, so a change to one recipe reruns only the builds that use it.
RECIPE_VERSIONS = {"v3": 3, "v4": 4, "v5": 5}
RECIPES = tuple(RECIPE_VERSIONS)

log = logging.getLogger(__name__)

# The first sentence of the think, per category; every one is 14 tokens with the tiny tokenizer.
# The spatial ones name the colours of the two extreme shapes along the asked axis (first the
# left/top one, then the right/bottom one), then state the asked one after a marker word and a
# colon; count and largest have the same layout and length.
_SEEN = {
    "left": "The left is {first}, the right is {last}; left: {text}.",
    "right": "The left is {first}, the right is {last}; right: {text}.",
    "above": "The top is {first}, the bottom is {last}; top: {text}.",
    "below": "The top is {first}, the bottom is {last}; bottom: {text}.",
    "largest": "In the image, the largest is {text}; largest: {text}.",
    "count": "The number of shapes in the image is {text}; number: {text}.",
}
# Recipes v4 and v5: the count sentence of v3 is the evaluation's count caption, never trained on.
_SEEN_V4 = {**_SEEN, "count": "In the image, the number is {text}; number: {text}."}
_AXIS = {"left": 0, "right": 0, "above": 1, "below": 1}
_LR_FLOOR = 0.02  # cosine decay ends at this fraction of the peak learning rate
_WARMUP = 0.05  # fraction of the steps spent warming up linearly
ENCODE_CHUNK = 256  # samples per processor call: batching amortises its per-call overhead


def think_target(sample: Sample, chosen: str | None = None, *, recipe: str = "v3") -> str:
    """The templated reasoning for one sample (without tags).

    Names what is seen (for the spatial categories the colours of the two extreme shapes along
    the axis, then the one at the asked position; the colour of the largest shape; or the number
    of shapes), re-copies the option lines ``A. text`` in order up to the matching option, then
    ``so option X.``.

    ``chosen`` (default the answer) is the option the think settles on; when it is not the answer
    (text misled the model), the think states its text where the image's would be.

    Raises:
        ValueError: For a category without a template.
    """
    seen = _SEEN if recipe == "v3" else _SEEN_V4
    if sample.category not in seen:
        raise ValueError(f"sample {sample.id!r}: no think template for category {sample.category!r}")
    chosen = chosen or sample.answer
    text = sample.options[chosen]
    extremes = _extremes(sample)
    if extremes and chosen != sample.answer:
        extremes["first" if sample.category in ("left", "above") else "last"] = text
    lines = [seen[sample.category].format(text=text, **extremes)]
    for letter, option in sample.options.items():
        lines.append(f"{letter}. {option}")
        if letter == chosen:
            break
    lines.append(f"so option {chosen}.")
    return "\n".join(lines)


def _extremes(sample: Sample) -> dict[str, str]:
    """The colours of the first and last shape along a spatial category's axis (by centre).

    Empty for the other categories. With 3 shapes the middle one is not named.
    """
    axis = _AXIS.get(sample.category)
    if axis is None:
        return {}
    shapes = sorted(sample.meta["shapes"], key=lambda s: s["centre"][axis])
    return {"first": shapes[0]["colour"], "last": shapes[-1]["colour"]}


def assistant_target(sample: Sample) -> str:
    """The whole assistant turn trained on, without the end-of-turn token."""
    return f"<think>{think_target(sample)}</think><answer>{sample.answer}</answer>"


def option_order(sample: Sample) -> tuple[int, ...]:
    """The order of the option texts as a permutation of their canonical ranks.

    Canonical order is the palette order for colours and numeric order for number words; e.g.
    options ``green, red, blue, yellow`` give ``(1, 0, 2, 3)``. With 4 options there are 24
    orders, which lets training leave some out and evaluation test on exactly those.
    """
    canon = {name: i for i, name in enumerate((*PALETTE, *NUMBER_WORDS))}
    keys = [canon.get(text, len(canon)) for text in sample.options.values()]
    ranked = sorted(range(len(keys)), key=lambda i: keys[i])
    ranks = [0] * len(keys)
    for rank, i in enumerate(ranked):
        ranks[i] = rank
    return tuple(ranks)


# Six of the 24 orders of 4 options, to leave out of training (``exclude_orders``) so that an
# evaluation can measure option orders never seen in training (perf/organism.py does).
HELD_OUT_ORDERS: tuple[tuple[int, ...], ...] = (
    (3, 2, 1, 0),
    (1, 3, 0, 2),
    (2, 0, 3, 1),
    (0, 3, 2, 1),
    (3, 0, 1, 2),
    (1, 2, 3, 0),
)


def train_samples(
    n: int,
    *,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    exclude_orders: Collection[tuple[int, ...]] = (),
    image_size: int = 112,
):
    """``n`` drawn training samples (``shapes`` train split), skipping the excluded option orders.

    Returns:
        A list of ``cotprobe.benchmarks.shapes.Drawn`` (sample + in-memory image).
    """
    bench = Shapes(
        n=1,
        seed=seed,
        image_size=image_size,
        categories=list(categories) if categories else None,
        split="train",
    )
    exclude = {tuple(o) for o in exclude_orders}
    out, index = [], 0
    while len(out) < n:
        drawn = bench.draw(index, Path("memory"))
        index += 1
        if option_order(drawn.sample) not in exclude:
            out.append(drawn)
    return out


def training_views(
    drawn: list, *, recipe: str = "v3", seed: int = 0, layouts: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """What each training sample is shown and taught, as text (no tokens, no images).

    ``layouts`` (recipes v4 and v5) replaces the recipe's layout shares (kinds left out get none;
    the rest is the plain prompt; ``organism_v4.check_layouts``).

    Returns:
        Per sample: ``prompt`` (the Prompt rendered, its ``prefill`` included), ``target`` (the
        assistant text after the pre-fill, without the end of turn), ``soft`` (letter ->
        probability of the answer letter's soft target; None for a hard target), ``layout``
        (``plain`` for ``v3``).
    """
    if recipe not in RECIPE_VERSIONS:
        raise ValueError(f"unknown organism recipe {recipe!r} (known: {', '.join(RECIPES)})")
    if layouts is not None and recipe == "v3":
        raise ValueError("recipe v3 has one layout (plain): layouts apply to v4 and v5")
    samples = [d.sample for d in drawn]
    prompts = perturb(samples, "base", bench="shapes", seed=0)
    if recipe == "v3":
        return [
            {"prompt": p, "target": assistant_target(s), "soft": None, "layout": "plain"}
            for s, p in zip(samples, prompts)
        ]
    from dataclasses import replace

    from cotprobe.models import organism_v4, organism_v5
    from cotprobe.models.organism_v4 import answer_target, extra_letter, second_look
    from cotprobe.variants import render_user_text
    from cotprobe.variants.base import INSTRUCTION

    design = organism_v5 if recipe == "v5" else organism_v4
    shares = None if layouts is None else organism_v4.check_layouts(layouts)
    views = []
    for sample, prompt in zip(samples, prompts):
        lay = design.layout_for(sample, seed, shares)
        options = dict(sample.options)
        if lay.kind == "extra":
            options[extra_letter(sample)] = lay.wording
        caption = lay.wording if lay.kind in ("caption", "hedged") else None
        if recipe == "v5":  # the paraphrase goes first; the evaluation's instruction stays
            user_text = organism_v5.user_text(sample.question, options, caption, lay.instruction)
        else:  # v4: the paraphrase replaces the instruction after the options
            user_text = render_user_text(sample.question, options, caption)
            if lay.instruction:
                user_text = user_text.replace(INSTRUCTION, lay.instruction)
        prefill = lay.wording if lay.kind in ("think", "closed") else ""
        post = design.posterior(sample, lay)
        chosen = max(post, key=lambda x: (post[x], x == sample.answer))
        answer = f"<answer>{chosen}</answer>"
        if lay.kind == "think":
            again = second_look(sample, chosen) if chosen != lay.asserted else ""
            target = f"{again}\nso option {chosen}.</think>{answer}"
        elif lay.kind == "closed":
            target = answer
        else:
            target = f"<think>{think_target(sample, chosen, recipe=recipe)}</think>{answer}"
        views.append(
            {
                "prompt": replace(
                    prompt, options=options, user_text=user_text, prefill=prefill, caption=caption
                ),
                "target": target,
                "soft": answer_target(post, chosen),
                "layout": lay.kind,
            }
        )
    return views


def _encode_examples(
    processor,
    drawn: list,
    *,
    recipe: str = "v3",
    seed: int = 0,
    chunk: int = ENCODE_CHUNK,
    layouts: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Render each sample as the evaluation does and tokenise prompt + target once.

    Labels are -100 on the prompt (and its pre-fill), so the loss covers the assistant tokens the
    model writes (think, answer and the end of turn). With a soft answer target, ``soft`` holds the
    answer letter's position and ``(token id, probability)`` pairs. ``scan_from`` is the position
    of the first token after the first line break of the target (the think's scan of the option
    lines; None without a line break).

    The processor runs on ``chunk`` samples at a time (one call per chunk, not two per sample); the
    prompt's length comes from the tokenizer alone, on the prompt text with its image placeholder
    expanded to the image's token count as the processor expands it. The result does not depend on
    ``chunk``.
    """
    import torch

    from cotprobe.backends.base import build_messages

    tok = processor.tokenizer
    end = tok.eos_token
    answer_tag = tok.convert_tokens_to_ids("<answer>")
    (newline,) = tok("\n", add_special_tokens=False)["input_ids"]
    pad = processor.image_token
    merge = processor.image_processor.merge_size**2
    heads, images = [], []
    views = training_views(drawn, recipe=recipe, seed=seed, layouts=layouts)
    for d, view in zip(drawn, views):
        prompt = view["prompt"]
        image = d.image.convert("RGB")
        if prompt.prefill:
            head = processor.apply_chat_template(
                build_messages(prompt, image), tokenize=False, continue_final_message=True
            )
        else:
            head = processor.apply_chat_template(
                build_messages(prompt, image), tokenize=False, add_generation_prompt=True
            )
        heads.append(head)
        images.append(image)
    examples = []
    for start in range(0, len(drawn), chunk):
        part = range(start, min(start + chunk, len(drawn)))
        enc = processor(
            text=[heads[i] + views[i]["target"] + end for i in part], images=images[start : part.stop]
        )
        sizes = enc["image_grid_thw"].prod(-1).tolist()
        pixels = enc["pixel_values"].to(torch.float16).split(sizes)  # half precision halves the cache
        for j, i in enumerate(part):
            sample_id = drawn[i].sample.id
            ids = torch.tensor(enc["input_ids"][j], dtype=torch.long)
            expanded = heads[i].replace(pad, pad * (sizes[j] // merge))
            head_ids = tok(expanded, add_special_tokens=False)["input_ids"]
            n_head = len(head_ids)
            if ids[:n_head].tolist() != head_ids:
                raise ValueError(
                    f"sample {sample_id!r}: the prompt does not tokenise as a prefix of prompt+target"
                )
            labels = ids.clone()
            labels[:n_head] = -100
            soft = None
            if views[i]["soft"] is not None:
                at = (ids == answer_tag).nonzero().flatten()
                pos = int(at[-1]) + 1
                pairs = [(tok.convert_tokens_to_ids(x), p) for x, p in views[i]["soft"].items()]
                if int(ids[pos]) not in {t for t, _ in pairs}:
                    raise ValueError(
                        f"sample {sample_id!r}: the answer letter is not one token after <answer>"
                    )
                soft = (pos, pairs)
            mm = enc.get("mm_token_type_ids")
            # The scan: the target's tokens after the first line break the model writes (the think's
            # first sentence, or a pre-filled think's continuation, ends there).
            breaks = (ids[n_head:] == newline).nonzero().flatten()
            examples.append(
                {
                    "input_ids": ids,
                    "labels": labels,
                    "scan_from": n_head + int(breaks[0]) + 1 if len(breaks) else None,
                    "soft": soft,
                    "mm_token_type_ids": torch.tensor(mm[j], dtype=torch.long) if mm is not None else None,
                    "pixel_values": pixels[j].clone(),
                    "image_grid_thw": enc["image_grid_thw"][j : j + 1].clone(),
                }
            )
    return examples


def _collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch of cached examples and concatenate their images."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    n = len(examples)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), -100, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    has_mm = examples[0]["mm_token_type_ids"] is not None
    mm = torch.zeros((n, width), dtype=torch.long) if has_mm else None
    for i, e in enumerate(examples):
        k = len(e["input_ids"])
        ids[i, :k] = e["input_ids"]
        labels[i, :k] = e["labels"]
        mask[i, :k] = 1
        if has_mm:
            mm[i, :k] = e["mm_token_type_ids"]
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "pixel_values": torch.cat([e["pixel_values"] for e in examples]).float(),
        "image_grid_thw": torch.cat([e["image_grid_thw"] for e in examples]),
    }
    if has_mm:
        batch["mm_token_type_ids"] = mm
    return batch


def _param_groups(model, lr: float, vision_lr_scale: float) -> list[dict[str, Any]]:
    """Vision blocks at ``lr * vision_lr_scale``; the merger and the language model at ``lr``."""
    visual = model.model.visual
    vision = [p for name, p in visual.named_parameters() if not name.startswith("merger")]
    seen = {id(p) for p in vision}
    rest = [p for p in model.parameters() if id(p) not in seen]
    return [{"params": rest, "lr": lr}, {"params": vision, "lr": lr * vision_lr_scale}]


def _schedule(steps: int):
    """Linear warm-up over ``_WARMUP`` of the steps, then cosine decay to ``_LR_FLOOR``."""
    warm = max(1, round(_WARMUP * steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, steps - warm)
        return _LR_FLOOR + (1 - _LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def warm_start(
    base_dir: Path,
    out_dir: Path,
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    vision_lr_scale: float = 0.1,
    n_train: int,
    seed: int = 0,
    threads: int | None = None,
    log_every: int = 50,
    categories: Sequence[str] | None = None,
    exclude_orders: Collection[tuple[int, ...]] = (),
    n_val: int = 48,
    recipe: str = "v3",
    min_accuracy: float = 0.0,
    plain_steps: int = 0,
    plain_lr: float | None = None,
    layouts: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Supervised warm start of a saved model on ``n_train`` shapes train samples.

    Plain PyTorch: AdamW (betas 0.9/0.98, no weight decay), linear warm-up then cosine decay,
    gradient clipping at 1.0, loss on the assistant tokens only. Each example is processed once
    and cached; a step draws ``batch_size`` of them at random. Deterministic given ``seed`` (as
    far as CPU torch is).

    Args:
        base_dir: The model to start from (model + processor, e.g. ``build_tiny_model``'s output).
        out_dir: Where to save the trained model and processor; replaced whole, written to a
            temporary sibling first and renamed into place.
        steps: Optimiser steps.
        batch_size: Examples per step.
        lr: Peak learning rate of the language model and the vision merger.
        vision_lr_scale: Multiplier of ``lr`` for the vision blocks.
        n_train: Distinct training samples drawn (train split, seed ``seed``).
        seed: Seed of the training samples, the batch order and torch.
        threads: ``torch.set_num_threads`` during training (restored afterwards); None: torch's
            current count. Recorded in ``cotprobe_model.json`` either way.
        log_every: Record (and log) the mean loss every this many steps.
        categories: Question categories to train on (default: all of the benchmark's).
        exclude_orders: Option orders (see ``option_order``) left out of training.
        n_val: Samples of the ``val`` split the saved model answers (``validate``); the numbers
            are logged and stored as ``validation`` in ``cotprobe_model.json``. 0: skip.
        recipe: ``v3`` (plain layout, hard targets), ``v4`` (``cotprobe.models.organism_v4``) or ``v5``
            (``cotprobe.models.organism_v5``).
        min_accuracy: A build whose validation accuracy is below this did not learn: it is
            retrained once from the start with 1.5 times the steps, and if that is still below,
            the build fails (nothing is saved). 0: no check.
        plain_steps: A first stage of this many steps on the same samples with recipe ``v3``'s
            plain prompts and targets (its own schedule, peak ``plain_lr``), before the
            ``steps`` of ``recipe``. With the mixed recipes the think's option lookup (the stop
            of the scan) forms on the plain data and is kept in the second stage; trained on the
            mixture from the start it may not form (recipe v5 at 2,400 steps: accuracy 0.21,
            the think reading the image right every time). 0: one stage.
        plain_lr: Peak learning rate of the first stage (None: ``lr``).
        layouts: Recipes v4 and v5: the layout shares instead of the recipe's (``training_views``),
            e.g. more or less text evidence. Recorded in ``cotprobe_model.json`` (None: the recipe's).
            A second stage on its own is a call whose ``base_dir`` is an earlier build.

    Raises:
        RuntimeError: When the retried build is still below ``min_accuracy``.

    Returns:
        ``initial_loss``, ``final_loss`` (means over the first and last ``log_every`` steps),
        ``seconds`` (whole call), ``train_seconds`` (optimiser steps only), ``n_train``, ``steps``,
        ``validation`` (see ``validate``).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    t_start = time.perf_counter()
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    if recipe not in RECIPE_VERSIONS:
        raise ValueError(f"unknown organism recipe {recipe!r} (known: {', '.join(RECIPES)})")
    if min_accuracy and not n_val:
        raise ValueError("min_accuracy needs a validation split (n_val > 0)")
    if layouts is not None:
        if recipe == "v3":
            raise ValueError("recipe v3 has one layout (plain): layouts apply to v4 and v5")
        from cotprobe.models.organism_v4 import check_layouts

        layouts = check_layouts(layouts)
    old_threads = torch.get_num_threads()
    # Explicit, and recorded: the thread count changes the order of reductions, so the trajectory.
    threads = threads or old_threads
    attempts: list[dict[str, Any]] = []
    schedule = [steps, round(steps * 1.5)] if min_accuracy else [steps]
    for attempt, n_steps in enumerate(schedule):
        torch.set_num_threads(threads)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                processor = AutoProcessor.from_pretrained(base_dir)
                model = AutoModelForImageTextToText.from_pretrained(base_dir, dtype=torch.float32)
                drawn = train_samples(
                    n_train, seed=seed, categories=categories, exclude_orders=exclude_orders
                )
                examples = _encode_examples(processor, drawn, recipe=recipe, seed=seed, layouts=layouts)
                log.info("encoded %d examples in %.1f s", len(examples), time.perf_counter() - t_start)
                plain_losses, plain_seconds = [], 0.0
                if plain_steps:
                    plain_losses, plain_seconds = _train(
                        model,
                        _encode_examples(processor, drawn, recipe="v3", seed=seed),
                        pad_id=processor.tokenizer.pad_token_id,
                        steps=plain_steps,
                        batch_size=batch_size,
                        lr=plain_lr or lr,
                        vision_lr_scale=vision_lr_scale,
                        seed=seed,
                        log_every=log_every,
                    )
                losses, train_seconds = _train(
                    model,
                    examples,
                    pad_id=processor.tokenizer.pad_token_id,
                    steps=n_steps,
                    batch_size=batch_size,
                    lr=lr,
                    vision_lr_scale=vision_lr_scale,
                    seed=seed,
                    log_every=log_every,
                )
        finally:
            torch.set_num_threads(old_threads)
        facts = {
            "builder": "cotprobe.models.organism.warm_start",
            "organism_version": RECIPE_VERSIONS[recipe],
            "recipe": recipe,
            "base": json.loads((base_dir / "cotprobe_model.json").read_text())
            if (base_dir / "cotprobe_model.json").exists()
            else None,
            "steps": n_steps,
            "batch_size": batch_size,
            "lr": lr,
            "vision_lr_scale": vision_lr_scale,
            "n_train": n_train,
            "seed": seed,
            "threads": threads,
            "categories": list(categories) if categories else None,
            "exclude_orders": sorted(list(o) for o in exclude_orders),
            "min_accuracy": min_accuracy,
            "plain_steps": plain_steps,
            "plain_lr": (plain_lr or lr) if plain_steps else None,
            "layouts": layouts,
            "plain_losses": [{"step": step, "loss": loss} for step, loss in plain_losses],
            "losses": [{"step": step, "loss": loss} for step, loss in losses],
            "initial_loss": (plain_losses or losses)[0][1],
            "final_loss": losses[-1][1],
            "train_seconds": round(train_seconds + plain_seconds, 2),
            "torch": torch.__version__,
            "validation": {},
            "attempts": attempts,
        }

        def check(saved: Path, facts=facts) -> None:
            if n_val:
                facts["validation"] = validate(
                    saved, n=n_val, seed=seed, threads=threads, recipe=recipe, layouts=layouts
                )
                log.info("validation (%d val-split samples, greedy): %s", n_val, facts["validation"])
            if min_accuracy and facts["validation"]["accuracy"] < min_accuracy:
                raise _NotLearned(facts["validation"]["accuracy"])

        try:
            facts["seconds"] = round(time.perf_counter() - t_start, 2)
            _save(model, processor, facts, out_dir, check=check)
            break
        except _NotLearned as e:
            attempts.append({"steps": n_steps, "validation": facts["validation"]})
            log.warning(
                "attempt %d (%d steps): validation accuracy %.3f < min_accuracy %.3f",
                attempt + 1, n_steps, e.accuracy, min_accuracy,
            )  # fmt: skip
    else:
        raise RuntimeError(
            f"the organism did not learn: validation accuracy {[a['validation']['accuracy'] for a in attempts]} "
            f"after {[a['steps'] for a in attempts]} steps, below min_accuracy {min_accuracy} "
            f"(scan stop checks right, teacher-forced: {[a['validation'].get('lookup') for a in attempts]}) "
            f"(recipe {recipe}, seed {seed}); nothing was saved"
        )
    return {
        "initial_loss": facts["initial_loss"],
        "final_loss": facts["final_loss"],
        "seconds": round(time.perf_counter() - t_start, 2),
        "train_seconds": facts["train_seconds"],
        "n_train": n_train,
        "steps": n_steps,
        "validation": facts["validation"],
        "attempts": len(attempts) + 1,
    }


class _NotLearned(Exception):
    """A build's validation accuracy fell below ``min_accuracy``."""

    def __init__(self, accuracy: float) -> None:
        super().__init__(accuracy)
        self.accuracy = accuracy


def validate(
    model_dir: Path,
    *,
    n: int,
    seed: int = 0,
    threads: int | None = None,
    recipe: str = "v3",
    layouts: dict[str, float] | None = None,
) -> dict[str, Any]:
    """How well a built organism does on ``n`` samples of the ``val`` split (base prompt, greedy).

    The split never overlaps training or evaluation, so these are the build's own numbers: a user
    compares them with the expected ones (README) to see that their build learned, whatever the
    CPU's kernels did to the exact weights.

    Returns:
        ``n``, ``target_loss`` (mean per-token loss of the training target, teacher-forced: smooth,
        so it shows learning even where greedy text is still off), ``format`` (share
        well-formed), ``accuracy``, ``agree`` (the rule judge's reading of
        the think names the answer), ``lookup`` (``lookup_share``: the option lookup formed),
        ``per_category`` accuracy.
    """
    import torch

    from cotprobe.backends.hf import HFBackend
    from cotprobe.judges.rule import RuleJudge

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="organism-val-") as tmp:
        samples = Shapes(n=n, seed=seed, split="val").prepare(Path(tmp))
        prompts = perturb(samples, "base", bench="shapes", seed=0)
        backend = HFBackend(str(model_dir), device="cpu")
        sampling = {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "batch_size": 16}
        gens = backend.generate(prompts, model_id="organism", seed=0, sampling=sampling)
    bench = Shapes(n=n, seed=seed, split="val")
    drawn = [bench.draw(i, Path("memory")) for i in range(n)]
    loss = target_loss(backend.model, backend.processor, drawn, recipe=recipe, layouts=layouts)
    lookup = lookup_share(backend.model, backend.processor, drawn)
    judge = RuleJudge()
    correct = [g.answer_letter == s.answer for s, g in zip(samples, gens)]
    settled = [judge.settle(g.think, p.options).letter for p, g in zip(prompts, gens)]
    agree = [x is not None and x == g.answer_letter for x, g in zip(settled, gens)]
    per_category: dict[str, list[bool]] = {}
    for s, ok in zip(samples, correct):
        per_category.setdefault(s.category, []).append(ok)
    return {
        "n": n,
        "target_loss": round(loss, 5),
        "format": round(sum(is_well_formed(g.text) for g in gens) / n, 4),
        "accuracy": round(sum(correct) / n, 4),
        "agree": round(sum(agree) / n, 4),
        "lookup": round(lookup, 4),
        "per_category": {c: round(sum(v) / len(v), 4) for c, v in sorted(per_category.items())},
    }


def lookup_share(model, processor, drawn: list) -> float:
    """Share of ``drawn`` whose every stop check of the scan is right, teacher-forced (v3 target).

    The stop checks are the tokens after the line break that ends each re-copied option line: the
    next line's letter (go on) or ``so`` (the line just copied holds the stated text). With the
    rest of the think given, this isolates the option lookup from reading the image: a build whose
    lookup did not form stops at a position learned from the answers' distribution and scores
    near the share of items whose answer sits there (about 0.25; recipe v3's plain stage, seed 1:
    the scan stopped after the third line in 145 of 150 items), one whose lookup formed about 1,
    whatever its reading errors.
    """
    import torch

    examples = _encode_examples(processor, drawn, recipe="v3")
    (newline,) = processor.tokenizer("\n", add_special_tokens=False)["input_ids"]
    right = 0
    with torch.no_grad():
        for e in examples:
            batch = _collate([e], processor.tokenizer.pad_token_id)
            batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
            ids = e["input_ids"]
            checks = [i for i in (ids == newline).nonzero().flatten().tolist() if i >= e["scan_from"]]
            right += all(int(logits[i].argmax()) == int(ids[i + 1]) for i in checks)
    return right / max(len(examples), 1)


def target_loss(
    model, processor, drawn: list, *, recipe: str = "v3", layouts: dict[str, float] | None = None
) -> float:
    """Mean per-token cross-entropy of the training target (think, answer, end of turn) on ``drawn``.

    With soft answer targets (v4, v5) the answer letter counts as its most likely letter.
    """
    import torch

    examples = _encode_examples(processor, drawn, recipe=recipe, layouts=layouts)
    total, tokens = 0.0, 0
    with torch.no_grad():
        for e in examples:
            batch = _collate([e], processor.tokenizer.pad_token_id)
            batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
            k = int((batch["labels"][:, 1:] != -100).sum())  # the loss shifts labels by one
            total += float(model(**batch).loss) * k
            tokens += k
    return total / max(tokens, 1)


def _train(
    model,
    examples: list[dict[str, Any]],
    *,
    pad_id: int,
    steps: int,
    batch_size: int,
    lr: float,
    vision_lr_scale: float,
    seed: int,
    log_every: int,
    on_log: Callable[[int], None] | None = None,
) -> tuple[list[tuple[int, float]], float]:
    """The optimisation loop; returns ``(step, mean loss)`` every ``log_every`` steps and seconds.

    ``on_log(step)`` runs at each of those points (after the step; the model in eval mode, back in
    train mode afterwards; its time is not counted), e.g. to probe the model: it must not draw random
    numbers.
    """
    import torch

    model.train()
    opt = torch.optim.AdamW(_param_groups(model, lr, vision_lr_scale), betas=(0.9, 0.98), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(steps))
    rng = random.Random(f"organism:{seed}")
    order: list[int] = []
    losses: list[tuple[int, float]] = []
    window: list[float] = []
    t0 = time.perf_counter()
    for step in range(steps):
        batch_ids = []
        while len(batch_ids) < batch_size:
            if not order:
                order = list(range(len(examples)))
                rng.shuffle(order)
            batch_ids.append(order.pop())
        chosen = [examples[i] for i in batch_ids]
        batch = _collate(chosen, pad_id)
        loss = _loss(model, batch, chosen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        window.append(float(loss.detach()))
        if len(window) == log_every or step == steps - 1:
            mean = sum(window) / len(window)
            losses.append((step + 1, round(mean, 5)))
            log.info("step %d/%d loss %.4f (%.1f s)", step + 1, steps, mean, time.perf_counter() - t0)
            window = []
            if on_log is not None:
                t_probe = time.perf_counter()
                model.eval()
                on_log(step + 1)
                model.train()
                t0 += time.perf_counter() - t_probe  # the probe's time is not training time
    model.eval()
    return losses, time.perf_counter() - t0


def _loss(model, batch: dict[str, Any], examples: list[dict[str, Any]]):
    """Mean per-token cross-entropy of the labelled tokens; a soft answer letter against its target.

    The output head runs only on the positions that predict a labelled token (the assistant's,
    about a fifth of the sequence), not on the prompt's: the loss is the one the full logits give
    (a test checks), for less work. Does not modify ``batch``.
    """
    import torch
    import torch.nn.functional as F

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = model.model(**inputs).last_hidden_state[:, :-1]
    labels = batch["labels"][:, 1:]
    rows, cols = (labels != -100).nonzero(as_tuple=True)
    logits = model.lm_head(hidden[rows, cols]).float()
    targets = labels[rows, cols]
    soft = [(i, e["soft"]) for i, e in enumerate(examples) if e["soft"] is not None]
    if not soft:
        return F.cross_entropy(logits, targets)
    # Where each example's soft letter sits among the kept positions (row-major, as nonzero orders
    # them), and its target distribution.
    kept = (labels != -100).flatten().cumsum(0) - 1
    at = kept[torch.tensor([i * labels.shape[1] + pos - 1 for i, (pos, _) in soft])]
    dist = torch.zeros(len(soft), logits.shape[-1])
    for j, (_, (_, pairs)) in enumerate(soft):
        for token, p in pairs:
            dist[j, token] = p
    hard = torch.ones(len(targets), dtype=torch.bool)
    hard[at] = False
    total = F.cross_entropy(logits[hard], targets[hard], reduction="sum")
    total = total - (dist * F.log_softmax(logits[at], dim=-1)).sum()
    return total / len(targets)


def _save(model, processor, facts: dict[str, Any], out_dir: Path, check=None) -> None:
    """Write model, processor and facts to a temporary sibling, then rename it to ``out_dir``.

    ``check(tmp)`` runs on the saved model before the facts are written (it may add to them).
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide the model from collaborators
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if check is not None:
            check(tmp)
        (tmp / "cotprobe_model.json").write_text(json.dumps(facts, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
