"""Time the organism build's two hot parts before and after their speed-up, side by side in one run.

Usage: ``python perf/organism_speed.py [--n 512] [--steps 8] [--batch-size 32] [--threads 1] [--recipe v4]``.

- **Encoding** (ms per training example): before, the processor ran twice per sample (prompt +
  target, then the prompt alone for its length); after (``cotprobe.models.organism._encode_examples``),
  once per chunk of ``ENCODE_CHUNK`` samples, the prompt's length from the tokenizer alone. The
  script checks that both give the same tensors.
- **A training step** (s per step, forward + backward + AdamW): before, the output head ran on every
  position (``model(**batch)``, the soft letter's loss from the full logits); after
  (``cotprobe.models.organism._loss``), only on the positions that predict a labelled token. The script
  prints both losses on the same batch (equal up to float rounding).

Both sides run in this process on the same examples, interleaved step by step, so a busy machine
slows both alike. Nothing is asserted: the tests check equality, this script reports time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cotprobe.models.organism import (
    _collate,
    _encode_examples,
    _loss,
    _param_groups,
    train_samples,
    training_views,
)
from cotprobe.models.tiny import build_tiny_model


def encode_before(processor, drawn: list, *, recipe: str, seed: int = 0) -> list[dict]:
    """The encoding as it was: two processor calls per sample."""
    import torch

    from cotprobe.backends.base import build_messages

    end = processor.tokenizer.eos_token
    answer_tag = processor.tokenizer.convert_tokens_to_ids("<answer>")
    examples = []
    for d, view in zip(drawn, training_views(drawn, recipe=recipe, seed=seed)):
        prompt = view["prompt"]
        image = d.image.convert("RGB")
        kwargs = {"continue_final_message": True} if prompt.prefill else {"add_generation_prompt": True}
        head = processor.apply_chat_template(build_messages(prompt, image), tokenize=False, **kwargs)
        enc = processor(text=[head + view["target"] + end], images=[image], return_tensors="pt")
        head_ids = processor(text=[head], images=[image], return_tensors="pt")["input_ids"][0]
        ids = enc["input_ids"][0]
        labels = ids.clone()
        labels[: len(head_ids)] = -100
        soft = None
        if view["soft"] is not None:
            pos = int((ids == answer_tag).nonzero().flatten()[-1]) + 1
            soft = (pos, [(processor.tokenizer.convert_tokens_to_ids(x), p) for x, p in view["soft"].items()])
        examples.append(
            {
                "input_ids": ids,
                "labels": labels,
                "soft": soft,
                "mm_token_type_ids": enc["mm_token_type_ids"][0] if "mm_token_type_ids" in enc else None,
                "pixel_values": enc["pixel_values"].to(torch.float16),
                "image_grid_thw": enc["image_grid_thw"],
            }
        )
    return examples


def loss_before(model, batch: dict, examples: list[dict]):
    """The loss as it was: the output head on every position."""
    import torch
    import torch.nn.functional as F

    if examples[0]["soft"] is None:
        return model(**batch).loss
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits[:, :-1].float()
    labels = batch["labels"][:, 1:].clone()
    rows, cols, targets = [], [], torch.zeros(len(examples), logits.shape[-1])
    for i, e in enumerate(examples):
        pos, pairs = e["soft"]
        labels[i, pos - 1] = -100
        rows.append(i)
        cols.append(pos - 1)
        for token, p in pairs:
            targets[i, token] = p
    hard = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")
    soft = -(targets * F.log_softmax(logits[rows, cols], dim=-1)).sum()
    return (hard + soft) / (int((labels != -100).sum()) + len(rows))


def same(a: list[dict], b: list[dict]) -> bool:
    """The two encodings hold the same tensors."""
    keys = ("input_ids", "labels", "pixel_values", "image_grid_thw")
    return len(a) == len(b) and all(
        x["soft"] == y["soft"] and all(x[k].equal(y[k]) for k in keys) for x, y in zip(a, b)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="training examples encoded")
    parser.add_argument("--steps", type=int, default=8, help="timed steps of each side")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--recipe", default="v4")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        base = build_tiny_model(Path(tmp) / "base", seed=0)
        processor = AutoProcessor.from_pretrained(base)
        model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    drawn = train_samples(args.n, seed=0)

    t0 = time.perf_counter()
    before = encode_before(processor, drawn, recipe=args.recipe)
    t_before = time.perf_counter() - t0
    t0 = time.perf_counter()
    after = _encode_examples(processor, drawn, recipe=args.recipe)
    t_after = time.perf_counter() - t0
    print(f"recipe {args.recipe}, {args.n} examples, torch threads {args.threads}")
    print(f"{'':28s} {'before':>10s} {'after':>10s} {'ratio':>7s}")
    print(
        f"{'encode (ms / example)':28s} {1000 * t_before / args.n:10.2f} {1000 * t_after / args.n:10.2f} "
        f"{t_before / t_after:6.2f}x   same tensors: {same(before, after)}"
    )

    model.train()
    opt = torch.optim.AdamW(_param_groups(model, 1e-4, 1.0), betas=(0.9, 0.98), weight_decay=0.0)
    times: dict[str, list[float]] = {"before": [], "after": []}
    first = None
    for step in range(args.steps + 1):  # step 0 warms up and is not timed
        chosen = after[(step * args.batch_size) % len(after) :][: args.batch_size]
        batch = _collate(chosen, processor.tokenizer.pad_token_id)
        for side, fn in (("before", loss_before), ("after", _loss)):
            t0 = time.perf_counter()
            loss = fn(model, batch, chosen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if step:
                times[side].append(time.perf_counter() - t0)
            else:
                first = first or {}
                first[side] = float(loss.detach())
        # No optimiser step: both sides see the same weights, so their losses stay comparable.
    med = {side: statistics.median(v) for side, v in times.items()}
    print(
        f"{'step fwd+bwd (s, median)':28s} {med['before']:10.3f} {med['after']:10.3f} "
        f"{med['before'] / med['after']:6.2f}x   batch {args.batch_size}, {args.steps} steps each"
    )
    print(f"loss on the first batch: before {first['before']:.6f}, after {first['after']:.6f}")
    t0 = time.perf_counter()
    opt.step()
    print(f"AdamW update (same on both sides): {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
