"""Measure a built organism against the default study's targets (base accuracy, controls, wrong-text
drops, consistent-incorrect errors, letter entropy, AUROC of P_base and -H), with item-bootstrap intervals.

Usage: ``python perf/organism_targets.py MODEL_DIR [--n 200] [--seeds 0 1] [--threads 2]``.
Answers ``n`` items of the shapes eval split under every variant of the suite and each seed (greedy,
through ``HFBackend``, letter probabilities after ``<answer>`` as the pipeline reads them; a variant
whose prompts do not depend on the seed is generated once and reused), then prints one line per
target: the estimate, its 95 % percentile interval (items resampled with their seeds, 2000 times)
and met/missed. Nothing is tuned here: thresholds are the targets as written.
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from cotprobe.backends.hf import HFBackend
from cotprobe.benchmarks.shapes import Shapes
from cotprobe.variants import VARIANT_NAMES, perturb

B = 2000


def run(model_dir: Path, n: int, seeds: list[int], threads: int, variants: list[str]) -> dict:
    """Per (variant, seed): arrays over items of correct, parsed, p_correct, entropy, followed."""
    import torch

    torch.set_num_threads(threads)
    backend = HFBackend(str(model_dir), device="cpu")
    sampling = {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "batch_size": 32}
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        samples = Shapes(n=n, seed=0, split="eval").prepare(Path(tmp))
        for variant in variants:
            cache: dict = {}
            for seed in seeds:
                prompts = perturb(samples, variant, bench="shapes", seed=seed)
                key = tuple((p.user_text, p.prefill) for p in prompts)
                if key not in cache:
                    t0 = time.perf_counter()
                    gens = backend.generate(prompts, model_id="organism", seed=0, sampling=sampling)
                    scores = backend.letter_scores(prompts, gens)
                    print(f"  {variant} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
                    cache[key] = (gens, scores)
                gens, scores = cache[key]
                out[variant, seed] = {
                    "correct": np.array([g.answer_letter == p.answer for p, g in zip(prompts, gens)], float),
                    "parsed": np.array([g.answer_letter is not None for g in gens], float),
                    "p_correct": np.array([s.p_correct for s in scores], float),
                    "entropy": np.array([s.entropy for s in scores], float),
                    "followed": np.array(
                        [
                            p.target_letter is not None and g.answer_letter == p.target_letter
                            for p, g in zip(prompts, gens)
                        ],
                        float,
                    ),
                    "text": [g.text for g in gens],
                    "category": [p.category for p in prompts],
                }
    return out


def interval(stat, n_items: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """``stat(items)`` on all items and its 95 % percentile interval over item resamples."""
    full = stat(np.arange(n_items))
    if full is None:
        return float("nan"), float("nan"), float("nan")
    draws = []
    for _ in range(B):
        value = stat(rng.integers(0, n_items, n_items))
        if value is not None and np.isfinite(value):
            draws.append(value)
    lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (float("nan"), float("nan"))
    return float(full), float(lo), float(hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    facts = json.loads((args.model_dir / "cotprobe_model.json").read_text())
    print(
        f"organism: recipe {facts.get('recipe', 'v3')}, steps {facts['steps']}, lr {facts['lr']}, "
        f"seed {facts['seed']}, threads {facts['threads']}, train {facts['train_seconds']:.0f} s"
    )
    variants = list(VARIANT_NAMES)
    t0 = time.perf_counter()
    saved = args.model_dir / f"targets-n{args.n}-seeds{'-'.join(map(str, args.seeds))}.pkl"
    if saved.exists():  # answers of an earlier run of this script on this build
        cells = pickle.loads(saved.read_bytes())
    else:
        cells = run(args.model_dir, args.n, args.seeds, args.threads, variants)
        saved.write_bytes(pickle.dumps(cells))
    print(f"generated and scored in {time.perf_counter() - t0:.0f} s")
    seeds, n = args.seeds, args.n
    rng = np.random.default_rng(0)

    def stack(variant: str, field: str) -> np.ndarray:  # items x seeds
        return np.stack([cells[variant, s][field] for s in seeds], axis=1)

    def mean(variant: str, field: str):
        m = stack(variant, field)
        return lambda idx: m[idx].mean()

    def delta(variant: str):
        a, b = stack(variant, "correct"), stack("base", "correct")
        return lambda idx: a[idx].mean() - b[idx].mean()

    def followed_share(variant: str):
        wrong, follow = 1 - stack(variant, "correct"), stack(variant, "followed")
        return lambda idx: follow[idx].sum() / wrong[idx].sum() if wrong[idx].sum() else None

    def auroc(variant: str, score: str, sign: float = 1.0):
        """AUROC of the base cell's score (same item and seed) for staying correct under ``variant``."""
        label, base = stack(variant, "correct"), sign * stack("base", score)

        def stat(idx):
            y = label[idx].ravel()
            return None if y.min() == y.max() else roc_auc_score(y, base[idx].ravel())

        return stat

    rows = []

    def add(name: str, stat, target: str, met) -> None:
        est, lo, hi = interval(stat, n, rng)
        rows.append(
            {
                "target": name,
                "estimate": est,
                "lo": lo,
                "hi": hi,
                "goal": target,
                "met": None if met(est, lo, hi) is None else bool(met(est, lo, hi)),
            }
        )

    add("base accuracy", mean("base", "correct"), ">= 0.90", lambda e, lo, hi: e >= 0.90)
    for v in variants:
        add(f"parse rate {v}", mean(v, "parsed"), ">= 0.98", lambda e, lo, hi: e >= 0.98)
    for v in ("correct_caption", "correct_think"):
        add(f"delta acc {v}", delta(v), ">= -0.03", lambda e, lo, hi: e >= -0.03)
    for v in ("wrong_caption", "wrong_think"):
        add(f"delta acc {v}", delta(v), "<= -0.15, hi < 0", lambda e, lo, hi: e <= -0.15 and hi < 0)
    drop = next(r["estimate"] for r in rows if r["target"] == "delta acc wrong_caption")
    add(
        "delta acc wrong_caption_disclaimer",
        delta("wrong_caption_disclaimer"),
        "> delta wrong_caption",
        lambda e, lo, hi: e > drop,
    )
    add(
        "wrong_think errors following the think",
        followed_share("wrong_think"),
        "> 0.5",
        lambda e, lo, hi: e > 0.5,
    )
    add("base mean letter entropy (nats)", mean("base", "entropy"), ">= 0.05", lambda e, lo, hi: e >= 0.05)
    for v in ("wrong_caption", "wrong_think"):
        add(
            f"AUROC P_base -> correct under {v}",
            auroc(v, "p_correct"),
            ">= 0.70, lo > 0.5",
            lambda e, lo, hi: e >= 0.70 and lo > 0.5,
        )
        add(f"AUROC -H -> correct under {v}", auroc(v, "entropy", -1.0), "(reported)", lambda e, lo, hi: None)
    for v in variants:
        rows.append(
            {
                "target": f"accuracy {v}",
                "estimate": float(stack(v, "correct").mean()),
                "lo": None,
                "hi": None,
                "goal": "",
                "met": None,
            }
        )

    print(f"\n{n} items x seeds {seeds}; 95 % item-bootstrap intervals ({B} resamples)")
    print(f"{'target':48s} {'estimate':>9s} {'interval':>18s}  {'goal':20s} met")
    for r in rows:
        ci = f"[{r['lo']:.3f}, {r['hi']:.3f}]" if r["lo"] is not None else ""
        met = "" if r["met"] is None else ("met" if r["met"] else "MISSED")
        print(f"{r['target']:48s} {r['estimate']:9.3f} {ci:>18s}  {r['goal']:20s} {met}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "facts": {
                        k: facts.get(k) for k in ("recipe", "steps", "lr", "seed", "threads", "train_seconds")
                    },
                    "rows": rows,
                },
                indent=2,
            )
        )
    categories = cells["base", seeds[0]].get("category")
    if categories is not None:  # where the accuracy goes: per question category
        shown = ("base", "correct_caption", "correct_think", "wrong_caption", "wrong_think")
        print(
            f"\naccuracy per category (items x seeds)\n{'category':10s}" + "".join(f"{v:>17s}" for v in shown)
        )
        cats = np.array(categories)
        for cat in sorted(set(categories)):
            at = cats == cat
            print(f"{cat:10s}" + "".join(f"{stack(v, 'correct')[at].mean():17.3f}" for v in shown))
    for v in ("wrong_think", "correct_think"):
        print(f"--- {v} sample outputs:")
        for text in cells[v, seeds[0]]["text"][:3]:
            print("   ", repr(text))


if __name__ == "__main__":
    main()
