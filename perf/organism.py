"""Build the model organism (tiny model + warm start) and measure it against its targets
(``TARGETS``: format, accuracy, think/answer agreement, build time).

Usage: ``python perf/organism.py [--steps 2000] [--n-train 10000] [--n-eval 300] [--threads 2]
[--rope-theta 10] [--recipe v3] [--keep DIR]``. The defaults are the chosen recipe; ``--rope-theta`` patches the built tiny
model's text ``rope_theta`` (an experiment; the tiny model is built with 10 since version 3).
Builds the tiny model in a temporary directory, warm-starts it on the ``shapes`` train split
with ``HELD_OUT_ORDERS`` left out, then answers ``n-eval`` held-out eval samples (base prompt,
greedy, through ``HFBackend``) plus up to ``n-eval`` eval samples whose option order is one of
the held-out orders. Prints build time, format compliance, accuracy (overall, per category, on
held-out orders) and think/answer agreement (``RuleJudge``) next to the targets.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from cotprobe.backends.hf import HFBackend
from cotprobe.benchmarks.shapes import CATEGORIES, Shapes
from cotprobe.judges.rule import RuleJudge
from cotprobe.models.organism import HELD_OUT_ORDERS, option_order, warm_start
from cotprobe.models.tiny import build_tiny_model
from cotprobe.parsing import is_well_formed
from cotprobe.variants import perturb

RECIPE_KEYS = ("steps", "batch_size", "lr", "vision_lr_scale", "n_train", "seed", "threads", "exclude_orders")
TARGETS = {"format": 95.0, "accuracy": 80.0, "agree": 90.0, "build_s": 600.0}


def evaluate(model_dir: Path, samples, *, threads: int | None) -> list[dict]:
    """Greedy answers to the base prompts of ``samples``; one row of facts per sample."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    backend = HFBackend(str(model_dir), device="cpu")
    prompts = perturb(samples, "base", bench="shapes", seed=0)
    sampling = {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "batch_size": 32}
    gens = backend.generate(prompts, model_id="organism", seed=0, sampling=sampling)
    judge = RuleJudge()
    rows = []
    for sample, prompt, gen in zip(samples, prompts, gens):
        settled = judge.settle(gen.think, prompt.options).letter
        lines = (gen.think or "").split("\n")
        stated = lines[0].rsplit(": ", 1)[-1].rstrip(".")
        scanned = [line.split(". ", 1)[-1] for line in lines[1:-1]]
        rows.append(
            {
                "category": sample.category,
                "format": is_well_formed(gen.text),
                "correct": gen.answer_letter == sample.answer,
                "agree": settled is not None and settled == gen.answer_letter,
                # Diagnostics of the think: the first sentence names the answer's text; the scan
                # stopped exactly at the first line holding the text it stated.
                "seen": stated == sample.options[sample.answer],
                "stop": stated in scanned and scanned.index(stated) == len(scanned) - 1,
                "text": gen.text,
            }
        )
    return rows


def pct(rows: list[dict], key: str) -> float:
    return 100.0 * sum(r[key] for r in rows) / max(1, len(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--vision-lr-scale", type=float, default=1.0)
    parser.add_argument("--n-eval", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the training data, order and torch")
    parser.add_argument("--categories", nargs="*", default=None)
    parser.add_argument("--recipe", default="v3", help="training recipe (cotprobe.models.organism.RECIPES)")
    parser.add_argument(
        "--plain-steps", type=int, default=0, help="first stage on plain v3 targets (warm_start)"
    )
    parser.add_argument("--plain-lr", type=float, default=None, help="peak lr of that stage (default --lr)")
    parser.add_argument(
        "--base-dir",
        type=Path,
        default=None,
        help="warm-start this model (e.g. an organism kept by an earlier --keep: a second stage) "
        "instead of a freshly built tiny model",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="copy the built organism here (for perf/organism_targets.py)"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="evaluate this already built organism (e.g. resources/models/tiny from the workflow) "
        "instead of building one; its recipe is read from its cotprobe_model.json",
    )
    parser.add_argument("--show", type=int, default=0, help="print this many wrong answers")
    parser.add_argument(
        "--rope-theta",
        type=float,
        default=None,
        help="experiment: override the tiny model's text rope_theta (default: as built)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    categories = args.categories or list(CATEGORIES)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model_dir is not None:
            model_dir = args.model_dir
            facts = json.loads((model_dir / "cotprobe_model.json").read_text())
            summary = facts
            build_s = facts["seconds"]  # the warm start's own time (the tiny model build is ~1 s)
            print(f"evaluating {model_dir}: {json.dumps({k: facts.get(k) for k in RECIPE_KEYS})}")
        else:
            model_dir = tmp / "organism"
            t0 = time.perf_counter()
            base = args.base_dir or build_tiny_model(tmp / "base", seed=0)
            if args.rope_theta is not None:
                config = json.loads((base / "config.json").read_text())
                config["text_config"]["rope_parameters"]["rope_theta"] = args.rope_theta
                (base / "config.json").write_text(json.dumps(config, indent=2))
            summary = warm_start(
                base,
                tmp / "organism",
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                vision_lr_scale=args.vision_lr_scale,
                n_train=args.n_train,
                seed=args.seed,
                threads=args.threads,
                log_every=100,
                categories=categories,
                exclude_orders=HELD_OUT_ORDERS,
                recipe=args.recipe,
                plain_steps=args.plain_steps,
                plain_lr=args.plain_lr,
            )
            build_s = time.perf_counter() - t0
            if args.keep is not None:
                shutil.copytree(model_dir, args.keep, dirs_exist_ok=True)
                print(f"kept the organism in {args.keep}")

        # Held-out eval samples (eval split), and eval samples in option orders never trained on.
        pool = Shapes(n=max(args.n_eval * 8, 2400), seed=0, categories=categories).prepare(tmp / "data")
        main_set = pool[: args.n_eval]
        unseen = [s for s in pool if option_order(s) in set(HELD_OUT_ORDERS)][: args.n_eval]
        rows = evaluate(model_dir, main_set, threads=args.threads)
        rows_unseen = evaluate(model_dir, unseen, threads=args.threads)

    if args.model_dir is None:
        print(
            f"\nrecipe: steps={args.steps} batch={args.batch_size} n_train={args.n_train} lr={args.lr} "
            f"vision_lr_scale={args.vision_lr_scale} seed={args.seed} threads={args.threads} recipe={args.recipe} "
            f"plain_steps={args.plain_steps} plain_lr={args.plain_lr} "
            f"rope_theta={args.rope_theta or 'as built'} categories={','.join(categories)}"
        )
    print(
        f"loss {summary['initial_loss']:.3f} -> {summary['final_loss']:.4f}; "
        f"train {summary['train_seconds']:.0f} s; build (tiny model + data + training + save) "
        f"{build_s:.0f} s   target <= {TARGETS['build_s']:.0f} s"
    )
    print(f"held-out eval samples: {len(rows)}; in option orders never trained on: {len(rows_unseen)}")
    print(f"format    {pct(rows, 'format'):5.1f} %   target >= {TARGETS['format']:.0f} %")
    print(f"accuracy  {pct(rows, 'correct'):5.1f} %   target >= {TARGETS['accuracy']:.0f} % (aim 95 %)")
    print(
        f"  unseen option orders: {pct(rows_unseen, 'correct'):5.1f} %  (format {pct(rows_unseen, 'format'):.1f} %)"
    )
    by_cat = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    for cat in categories:
        rs = by_cat[cat]
        print(
            f"  {cat:8s} {pct(rs, 'correct'):5.1f} %  (n={len(rs)}, agree {pct(rs, 'agree'):.0f} %, "
            f"think names the answer {pct(rs, 'seen'):.0f} %, scan stops at the stated text {pct(rs, 'stop'):.0f} %)"
        )
    print(
        f"agreement {pct(rows, 'agree'):5.1f} %   target >= {TARGETS['agree']:.0f} % (RuleJudge think vs answer)"
    )
    wrong = [r for r in rows if not r["correct"]][: args.show]
    for r in wrong:
        print(f"--- {r['category']}: {r['text']!r}")


if __name__ == "__main__":
    main()
