"""Why the organism's option lookup forms on some build seeds and not on others: a build with probes.

Usage: ``python perf/organism_seeds.py --seed 1 [--plain-steps 1400 --plain-lr 0.002] [--steps 0
--recipe v5 --lr 0.001] [--n-train 10000] [--threads 1] [--probe-every 50] [--n-eval 150] --out DIR``.

Builds the tiny model (seed 0, as every organism build does), then trains it as ``warm_start`` does
(a plain v3 stage of ``--plain-steps``, then ``--steps`` of ``--recipe``; ``HELD_OUT_ORDERS`` left out),
and every ``--probe-every`` steps measures, teacher-forced on ``--n-probe`` val-split items (the same
items for every seed), the loss and the argmax accuracy of the target's tokens by role:

- ``read``: the colours (or number) the first sentence names first (for the spatial categories the
  two extremes); ``stated``: the text after its marker (``left: red``), the one the scan looks for;
  ``seen``: the rest of that sentence (template words);
- ``copy``: the re-copied option lines (a copy from a constant distance back), the first letter included;
- ``decide``: the first token of every later line, the scan's stop check: the next letter (go on,
  ``decide_go``) or ``so`` (stop, ``decide_stop``);
- ``letter``: the ``X`` of ``so option X.``; ``answer``: the letter in ``<answer>``.

``stop_item`` is the share of items whose every decision token is right. Then answers ``--n-eval``
eval-split items greedily (``perf/organism.py``'s ``evaluate``) and prints accuracy with a 95 %
item-bootstrap interval, per category with the think/scan diagnostics, and where the greedy scan
stopped relative to the answer's line. Writes ``DIR/probe.json`` (curves, evaluation) and keeps the
model in ``DIR/model`` (and its weights every ``--save-every`` steps in ``DIR/ckpt``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from cotprobe import stats
from cotprobe.benchmarks.shapes import Shapes
from cotprobe.models.organism import HELD_OUT_ORDERS, _collate, _encode_examples, _train, train_samples
from cotprobe.models.tiny import build_tiny_model

sys.path.insert(0, str(Path(__file__).parent))
from organism import evaluate  # perf/organism.py

log = logging.getLogger("organism_seeds")
ROLES = ("seen", "read", "stated", "copy", "decide_go", "decide_stop", "letter", "answer", "other")


def char_roles(target: str) -> list[str]:
    """The role of every character of a v3 target ``<think>...</think><answer>X</answer>`` + end."""
    roles = ["other"] * len(target)
    start = target.index("<think>") + len("<think>")
    stop = target.index("</think>")
    lines = target[start:stop].split("\n")
    at = start
    for k, line in enumerate(lines):
        if k == 0:
            role = "seen"
            for m in re.finditer(r"(?<= is )\w+|(?<=: )\w+", line):
                for i in range(m.start(), m.end()):
                    roles[at + i] = "stated" if line[m.start() - 2] == ":" else "read"
        elif k == len(lines) - 1:  # "so option X."
            role = "letter"
        else:
            role = "copy"
        for i in range(len(line)):
            if roles[at + i] == "other":
                roles[at + i] = role
        if k == len(lines) - 1:
            roles[at] = "decide_stop"
            roles[at + len(line) - 2] = "letter"
            for i in (*range(1, len(line) - 2), len(line) - 1):
                roles[at + i] = "other"
        elif k >= 2:
            roles[at] = "decide_go"
        if at + len(line) < stop:
            roles[at + len(line)] = "copy" if k >= 1 else "seen"  # the newline
        at += len(line) + 1
    answer = target.index("<answer>") + len("<answer>")
    roles[answer] = "answer"
    return roles


def probe_set(processor, n: int) -> list[dict]:
    """``n`` val-split items encoded as v3 training examples, with the role of every labelled token."""
    drawn = Shapes(n=n, seed=0, split="val")
    drawn = [drawn.draw(i, Path("memory")) for i in range(n)]
    examples = _encode_examples(processor, drawn, recipe="v3")
    tok = processor.tokenizer
    from cotprobe.models.organism import training_views

    views = training_views(drawn, recipe="v3")
    for e, view in zip(examples, views):
        text = view["target"] + tok.eos_token
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        n_tail = len(enc["input_ids"])
        if e["input_ids"][-n_tail:].tolist() != enc["input_ids"]:
            raise ValueError("the target does not tokenise alone as it does after the prompt")
        roles = char_roles(text)
        # A token's role is its first visible character's (`` C`` in ``so option C.`` is the letter).
        firsts = [
            next((i for i in range(a, b) if not text[i].isspace()), a) for a, b in enc["offset_mapping"]
        ]
        e["roles"] = [roles[i] for i in firsts]
    return examples


def probe(model, processor, examples: list[dict], batch: int = 32) -> dict:
    """Teacher-forced loss and argmax accuracy of the labelled tokens, by role; ``stop_item``."""
    import torch
    import torch.nn.functional as F

    loss, hit = defaultdict(list), defaultdict(list)
    stop_item = []
    with torch.no_grad():
        for start in range(0, len(examples), batch):
            part = examples[start : start + batch]
            b = _collate(part, processor.tokenizer.pad_token_id)
            logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits[:, :-1].float()
            labels = b["labels"][:, 1:]
            for i, e in enumerate(part):
                cols = (labels[i] != -100).nonzero().flatten()
                lg, tg = logits[i, cols], labels[i, cols]
                nll = F.cross_entropy(lg, tg, reduction="none")
                ok = lg.argmax(-1) == tg
                decisions = []
                for role, x, y in zip(e["roles"], nll.tolist(), ok.tolist()):
                    loss[role].append(x)
                    hit[role].append(y)
                    if role.startswith("decide"):
                        decisions.append(y)
                stop_item.append(all(decisions))
    out = {f"loss_{r}": round(float(np.mean(loss[r])), 5) for r in ROLES if loss[r]}
    out.update({f"acc_{r}": round(float(np.mean(hit[r])), 4) for r in ROLES if hit[r]})
    out["stop_item"] = round(float(np.mean(stop_item)), 4)
    return out


def attention_roles(model_dir: Path, n: int = 48) -> dict[str, list[list[float]]]:
    """Where each head looks from the think's positions (mean attention mass, ``[layer][head]``).

    ``decide->stated``, ``decide->prev``, ``decide->src``, ``decide->image``: from the positions that
    predict a decision token, to the stated text, the previous token (the option text just copied),
    the prompt's token at the copy distance (the one a constant-offset copy would read) and the
    image; ``copy->src``: from the positions that predict a copied token, to that source;
    ``read->image``: from the positions that predict a colour/number of the first sentence.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation="eager")
    model.eval()
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    sums: dict[str, torch.Tensor] = defaultdict(lambda: 0)
    counts: Counter = Counter()
    examples = probe_set(processor, n)
    with torch.no_grad():
        for e in examples:
            b = _collate([e], processor.tokenizer.pad_token_id)
            att = model(**{k: v for k, v in b.items() if k != "labels"}, output_attentions=True).attentions
            att = torch.stack([a[0] for a in att])  # layer, head, query, key
            ids = e["input_ids"].tolist()
            roles = e["roles"]
            s = len(ids) - len(roles)
            stated = s + roles.index("stated")
            think_a = s + roles.index("copy")
            line = ids[think_a : think_a + 4]
            prompt_a = next(i for i in range(s) if ids[i : i + 4] == line)
            dist = think_a - prompt_a
            image = torch.tensor([i for i, x in enumerate(ids) if x == image_id])
            for t, role in enumerate(roles):
                p = s + t - 1
                if role.startswith("decide"):
                    pairs = {"stated": [stated], "prev": [p - 1], "src": [p - dist + 1], "image": image}
                    for key, cols in pairs.items():
                        sums[f"decide->{key}"] = sums[f"decide->{key}"] + att[:, :, p, cols].sum(-1)
                        counts[f"decide->{key}"] += 1
                elif role == "copy":
                    sums["copy->src"] = sums["copy->src"] + att[:, :, p, p - dist + 1]
                    counts["copy->src"] += 1
                elif role in ("read", "stated"):
                    sums[f"{role}->image"] = sums[f"{role}->image"] + att[:, :, p, image].sum(-1)
                    counts[f"{role}->image"] += 1
    return {k: (sums[k] / counts[k]).round(decimals=3).tolist() for k in sums}


def bootstrap_mean(values: list[bool], key: str) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=np.float64)
    w = stats.item_weights(len(x), key, stats.Bootstrap())
    lo, hi = stats.percentile((w.T @ x) / len(x), 0.95)
    return float(x.mean()), float(lo[0]), float(hi[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain-steps", type=int, default=1400)
    parser.add_argument("--plain-lr", type=float, default=2e-3)
    parser.add_argument("--steps", type=int, default=0, help="second stage on --recipe (0: none)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--recipe", default="v5")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vision-lr-scale", type=float, default=1.0)  # the default study's
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probe-every", type=int, default=50)
    parser.add_argument("--n-probe", type=int, default=96)
    parser.add_argument("--save-every", type=int, default=200, help="keep the weights every this many steps")
    parser.add_argument("--n-eval", type=int, default=150)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--base-dir", type=Path, default=None, help="start from this model (e.g. DIR/model of a plain stage)"
    )
    parser.add_argument(
        "--attention", type=Path, nargs="*", default=None, help="only print attention_roles of these models"
    )
    args = parser.parse_args()
    if args.attention is not None:
        for model_dir in args.attention:
            print(model_dir)
            for key, value in attention_roles(model_dir).items():
                print(
                    f"  {key:16s} "
                    + "  ".join(f"L{i}: " + " ".join(f"{x:.2f}" for x in row) for i, row in enumerate(value))
                )
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    curves: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = args.base_dir or build_tiny_model(Path(tmp) / "base", seed=0)
        torch.manual_seed(args.seed)
        processor = AutoProcessor.from_pretrained(base)
        model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    drawn = train_samples(args.n_train, seed=args.seed, exclude_orders=HELD_OUT_ORDERS)
    probes = probe_set(processor, args.n_probe)
    common = {
        "pad_id": processor.tokenizer.pad_token_id,
        "batch_size": args.batch_size,
        "vision_lr_scale": args.vision_lr_scale,
        "seed": args.seed,
        "log_every": args.probe_every,
    }
    stage_seconds = {}
    for stage, recipe, n_steps, lr in (
        ("plain", "v3", args.plain_steps, args.plain_lr),
        (args.recipe, args.recipe, args.steps, args.lr),
    ):
        if not n_steps:
            continue
        examples = _encode_examples(processor, drawn, recipe=recipe, seed=args.seed)

        def on_log(step: int, stage=stage) -> None:
            row = {"stage": stage, "step": step, **probe(model, processor, probes)}
            curves.append(row)
            log.info("probe %s", json.dumps(row))
            if args.save_every and step % args.save_every == 0:
                model.save_pretrained(args.out / "ckpt" / f"{stage}-{step}")

        losses, seconds = _train(model, examples, steps=n_steps, lr=lr, on_log=on_log, **common)
        stage_seconds[stage] = round(seconds, 1)
        curves.append({"stage": stage, "losses": losses})
    model.save_pretrained(args.out / "model")
    processor.save_pretrained(args.out / "model")
    build = {"wall_s": round(time.perf_counter() - t_wall, 1), "cpu_s": round(time.process_time() - t_cpu, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        samples = Shapes(n=args.n_eval, seed=0, split="eval").prepare(Path(tmp))
        rows = evaluate(args.out / "model", samples, threads=args.threads)
    for row, sample in zip(rows, samples):
        lines = row["text"].split("</think>")[0].split("\n")[1:-1]
        row["scan_len"] = len(lines)
        row["answer_line"] = list(sample.options).index(sample.answer) + 1
        del row["text"]

    acc = bootstrap_mean([r["correct"] for r in rows], "organism_seeds")
    print(f"\nseed {args.seed}: {vars(args)}")
    print(f"build {build['wall_s']:.0f} s wall, {build['cpu_s']:.0f} s CPU; training {stage_seconds}")
    print(f"accuracy {acc[0]:.3f} [{acc[1]:.3f}, {acc[2]:.3f}] on {len(rows)} eval items")
    by_cat = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    per_category = {}
    for cat, rs in sorted(by_cat.items()):
        per_category[cat] = {
            k: round(float(np.mean([r[k] for r in rs])), 3) for k in ("correct", "seen", "stop")
        }
        print(f"  {cat:8s} n={len(rs):3d} {per_category[cat]}")
    scan = Counter((r["answer_line"], r["scan_len"]) for r in rows)
    print("greedy scan length by the answer's line (answer line, lines scanned): count")
    print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(scan.items())))
    for row in curves:
        if "losses" not in row:
            keys = (
                "loss_read",
                "loss_stated",
                "loss_copy",
                "loss_decide_go",
                "loss_decide_stop",
                "loss_letter",
                "stop_item",
            )
            cells = " ".join(f"{k.removeprefix('loss_')}={row.get(k, float('nan')):.4f}" for k in keys)
            print(f"  {row['stage']:5s} {row['step']:5d} {cells}")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "build": build,
        "stage_seconds": stage_seconds,
        "accuracy": acc,
        "per_category": per_category,
        "scan": {f"{a}:{b}": n for (a, b), n in sorted(scan.items())},
        "curves": curves,
        "rows": rows,
        "maxrss_kb": maxrss,
    }
    (args.out / "probe.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
