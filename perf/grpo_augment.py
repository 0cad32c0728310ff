"""GRPO from the v5 organism with the paper's augmentation on and off: does RL with it make the model
robust to wrong text, lower its letter entropy and keep its base accuracy?

Usage: ``python perf/grpo_augment.py [--out DIR] [--model-dir ORGANISM] [--v5-steps 1000]
[--profile-only] [--steps 100] [--save-every 25] [--generations 8] [--prompts-per-step 8] [--lr 1e-4]
[--beta 0.01] [--seeds 0 1] [--n-eval 200] [--eval-seeds 0 1] [--threads 1]``. The defaults are the
run measured in the README (its 16-completion profile rows: ``--prompts-per-step 2 --profile-only``).

1. The organism: recipe v5 built in two stages (``staged_organism``: the plain stage, then a v5
   stage of ``--v5-steps``), cached under ``--organisms`` (shared with ``dose_response.py``), or
   ``--model-dir``.
2. The time of a GRPO step on this CPU at 1 and 2 threads, split into generation
   (``model.generate``), reward, the rest of the rollout (TRL's old/reference log-probabilities,
   advantages), the loss's forward, the backward, the optimiser step and what is left (TRL and
   Trainer bookkeeping, data loading, logging): ``--profile-steps`` steps from the organism, the
   first left out. ``--profile-only`` stops after it.
3. GRPO through the trl backend (``cotprobe.training.trl_backend.train``, CPU): the paper's
   augmentation on (10 % each correct/wrong caption/think, ``cotprobe.training.augment``, the
   evaluation's own wordings) and off (every prompt ``base``), each training seed; the same
   training samples for both arms; reward 0.1 format + 1.0 correct; a model saved every
   ``--save-every`` steps.
4. The organism (step 0) and every saved step answer ``--n-eval`` shapes eval items under ``base``,
   ``wrong_caption`` and ``wrong_think``, each eval seed (greedy; letter probabilities after
   ``<answer>``), as ``perf/organism_targets.py`` does.
5. Estimates with 95 % item-bootstrap intervals (items resampled with all their columns: eval
   seeds, training seeds and the other models' answers on the same item, so differences are paired):
   accuracy per (arm, step, variant); the change of accuracy from step 0 to the last step per arm, and
   aug minus no-aug of that change (step 0 is the same model, so it is the paired difference of the
   last steps); base letter entropy at step 0 and the last step; base accuracy's change. Expected
   (stated before the run, from the paper): with augmentation wrong_caption/wrong_think accuracy rises
   more than without (interval of the difference above 0); entropy falls (interval below 0); base
   accuracy does not fall (estimate >= -0.03, the study's tolerance for controls). A table, one
   figure (``OUT/grpo_augment.png``) and ``OUT/grpo_augment.json``.

6. The learning signal (``--signal-items``): the organism and the last step of each arm (first training
   seed) sample G answers at temperature 1 per eval item under each variant; the share correct and
   the share of groups whose rewards differ (only those have a non-zero advantage in GRPO), with
   item-bootstrap intervals.

Every stage is cached under ``--out`` (organisms, runs, answers), so a rerun only redoes the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import staged_organism as so

ARMS = {"aug": True, "noaug": False}
VARIANTS = ["base", "wrong_caption", "wrong_think"]
B = 2000


def grpo_spec(args, *, augment: bool, steps: int, save_every: int) -> dict:
    return {"total_steps": steps, "save_every": save_every, "generations": args.generations,
            "prompts_per_step": args.prompts_per_step, "lr": args.lr, "beta": args.beta, "temperature": 1.0,
            "max_completion_length": 64, "augment": augment, "augment_probability": 0.1, "reward": {},
            "settings": {"device": "cpu"}}  # fmt: skip


def grpo(organism: Path, out: Path, run_dir: Path, *, augment: bool, seed: int, steps: int, save_every: int,
         args) -> dict:  # fmt: skip
    """Train one (arm, seed) unless done with these settings; its summary with wall and CPU seconds."""
    from cotprobe.benchmarks.shapes import Shapes
    from cotprobe.training.augment import training_prompts
    from cotprobe.training.trl_backend import train

    spec = grpo_spec(args, augment=augment, steps=steps, save_every=save_every)
    stamp = run_dir / "perf_spec.json"
    if stamp.exists():
        saved = json.loads(stamp.read_text())
        if saved["spec"] == spec and saved["base"] == str(organism):
            return saved["summary"]
    samples = Shapes(n=steps * args.prompts_per_step, seed=1, split="train").prepare(out / "train-data")
    prompts = training_prompts(samples, bench="shapes-train", seed=seed, augment=augment, probability=0.1)
    t0, c0 = time.perf_counter(), so.cpu_seconds()
    summary = train(spec, base=organism, prompts=prompts, seed=seed, out=run_dir, threads=args.threads)
    summary.update(wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(so.cpu_seconds() - c0, 1))
    stamp.write_text(json.dumps({"spec": spec, "base": str(organism), "summary": summary}, indent=2) + "\n")
    return summary


def profile(organism: Path, out: Path, args, threads: int) -> dict:
    """Seconds per GRPO step and its parts (mean over steps 2..N; augmentation on, training seed 0)."""
    import torch
    import trl
    from transformers.generation.utils import GenerationMixin

    from cotprobe.training import trl_backend

    timers: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    patched = [(trl.GRPOTrainer, "training_step", "train_step"),
               (trl.GRPOTrainer, "_generate_and_score_completions", "rollout"),
               (GenerationMixin, "generate", "generate"), (trl_backend.RewardFunction, "__call__", "reward"),
               (trl.GRPOTrainer, "compute_loss", "loss_forward"), (torch.optim.AdamW, "step", "optimizer")]  # fmt: skip
    originals = []
    for cls, name, key in patched:
        orig = getattr(cls, name)
        originals.append((cls, name, cls.__dict__.get(name)))  # None: inherited, to be deleted again

        def timed(*a, _orig=orig, _key=key, **k):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return _orig(*a, **k)
            finally:
                timers[_key].append((time.perf_counter() - t0, time.process_time() - c0, t0))

        setattr(cls, name, timed)
    run_dir = out / "profile" / f"threads{threads}"
    shutil.rmtree(run_dir, ignore_errors=True)
    n = args.profile_steps
    sub = argparse.Namespace(**{**vars(args), "threads": threads})
    try:
        t0, c0 = time.perf_counter(), so.cpu_seconds()
        grpo(organism, out, run_dir, augment=True, seed=0, steps=n, save_every=n, args=sub)
        wall, cpu = time.perf_counter() - t0, so.cpu_seconds() - c0
    finally:
        for cls, name, orig in originals:
            if orig is None:
                delattr(cls, name)
            else:
                setattr(cls, name, orig)
    starts = [t for _, _, t in timers["train_step"]]
    step_wall = np.diff(starts)  # start to start: one optimiser step with everything around it
    keep = slice(1, None)  # the first step warms caches and allocators

    def mean(key: str, which: int = 0) -> float:
        vals = [v[which] for v in timers[key]][keep]
        return float(np.mean(vals)) if vals else 0.0

    parts = {k: mean(k) for k in ("train_step", "rollout", "generate", "reward", "loss_forward", "optimizer")}
    step = float(np.mean(step_wall[1:])) if len(step_wall) > 1 else parts["train_step"]
    result = {
        "threads": threads, "steps": n, "completions_per_step": args.generations * args.prompts_per_step,
        "step_s": step,
        "generate_s": parts["generate"],
        "reward_s": parts["reward"],
        "rollout_rest_s": parts["rollout"] - parts["generate"] - parts["reward"],
        "loss_forward_s": parts["loss_forward"],
        "backward_s": parts["train_step"] - parts["rollout"] - parts["loss_forward"],
        "optimizer_s": parts["optimizer"],
        "other_s": step - parts["train_step"] - parts["optimizer"],
        "step_cpu_s": mean("train_step", 1) + mean("optimizer", 1),
        "run_wall_s": round(wall, 1), "run_cpu_s": round(cpu, 1),
    }  # fmt: skip
    rewards = [json.loads(x) for x in (run_dir / "work" / "rewards.jsonl").read_text().splitlines()]
    result["mean_reward"] = float(np.mean([r["reward"] for r in rewards]))
    return result


def print_profile(rows: list[dict]) -> None:
    keys = ("step_s", "generate_s", "reward_s", "rollout_rest_s", "loss_forward_s", "backward_s", "optimizer_s",
            "other_s", "step_cpu_s")  # fmt: skip
    print("\nGRPO step on this CPU (s; mean of steps 2..N; shared machine):")
    print(f"{'threads':>8s}" + "".join(f"{k[:-2]:>15s}" for k in keys))
    for r in rows:
        print(f"{r['threads']:8d}" + "".join(f"{r[k]:15.3f}" for k in keys))


def collect(organism: Path, out: Path, args) -> tuple[dict, dict]:
    """Answers per (arm, seed, step) (step 0: the organism, shared) and the time of each stage."""
    steps = list(range(args.save_every, args.steps + 1, args.save_every))
    times: dict = {"grpo": {}, "eval": {}}
    tag = f"n{args.n_eval}-e{'-'.join(map(str, args.eval_seeds))}"
    cells = {}
    kw = {"n": args.n_eval, "seeds": args.eval_seeds, "variants": VARIANTS, "threads": args.threads}
    cells[0] = so.answers(organism, cache=out / f"answers-organism-{tag}.pkl", **kw)
    times["eval"]["organism"] = cells[0]["_time", None]
    for arm, augment in ARMS.items():
        for seed in args.seeds:
            run_dir = out / "runs" / f"{arm}-s{seed}"
            summary = grpo(organism, out, run_dir, augment=augment, seed=seed, steps=args.steps,
                           save_every=args.save_every, args=args)  # fmt: skip
            times["grpo"][f"{arm}-s{seed}"] = summary
            print(f"{arm} seed {seed}: GRPO {summary['wall_s']:.0f} s wall, {summary['cpu_s']:.0f} s CPU "
                  f"({summary['seconds_per_step']} s/step)", flush=True)  # fmt: skip
            for step in steps:
                c = so.answers(run_dir / f"step{step}", cache=run_dir / f"answers-step{step}-{tag}.pkl", **kw)
                cells[arm, seed, step] = c
                times["eval"][f"{arm}-s{seed}-step{step}"] = c["_time", None]
                print(f"  step {step}: eval {c['_time', None]['wall_s']:.0f} s wall", flush=True)
    return cells, times


def signal(model: Path, *, n: int, generations: int, threads: int, cache: Path) -> dict:
    """What GRPO can learn from, per variant: ``generations`` samples at temperature 1 for each of ``n``
    shapes eval items (eval seed 0), the share correct and the share of groups whose rewards differ
    (a group where all samples agree has zero advantage, so no gradient), with item-bootstrap
    intervals. Cached."""
    import torch

    from cotprobe.backends.hf import HFBackend
    from cotprobe.benchmarks.shapes import Shapes
    from cotprobe.stats import Bootstrap, item_weights
    from cotprobe.variants import perturb

    if cache.exists():
        return json.loads(cache.read_text())
    torch.set_num_threads(threads)
    backend = HFBackend(str(model), device="cpu")
    samples = Shapes(n=n, seed=0, split="eval").prepare(cache.parent / "signal-data")
    sampling = {"max_new_tokens": 64, "temperature": 1.0, "top_p": 1.0, "batch_size": 64}
    out = {}
    for variant in VARIANTS:
        prompts = [p for p in perturb(samples, variant, bench="shapes", seed=0) for _ in range(generations)]
        gens = backend.generate(prompts, model_id=model.name, seed=0, sampling=sampling)
        ok = np.array([g.answer_letter == p.answer for p, g in zip(prompts, gens)], float).reshape(n, -1)
        w = item_weights(n, "shapes", Bootstrap(n=B, seed=0))
        out[variant] = {"correct": so.mean_ci(w, ok), "mixed_groups": so.mean_ci(w, (ok.std(1) > 0)[:, None])}
    cache.write_text(json.dumps(out, indent=2) + "\n")
    return out


def analyse(cells: dict, args) -> dict:
    """Every estimate of the report (see the module docstring)."""
    from cotprobe.stats import Bootstrap, item_weights

    w = item_weights(args.n_eval, "shapes", Bootstrap(n=B, seed=0))
    steps = [0, *range(args.save_every, args.steps + 1, args.save_every)]
    last = steps[-1]
    e = args.eval_seeds

    def values(arm: str, step: int, variant: str, field: str = "correct") -> np.ndarray:
        """(items, training seeds x eval seeds); step 0 repeats the organism for each training seed."""
        cols = [
            so.stack(cells[0] if step == 0 else cells[arm, s, step], variant, field, e) for s in args.seeds
        ]
        return np.concatenate(cols, axis=1)

    def per_seed(arm: str, step: int, variant: str, field: str = "correct", minus_step: int | None = None):
        out = []
        for s in args.seeds:
            v = so.stack(cells[0] if step == 0 else cells[arm, s, step], variant, field, e).mean()
            if minus_step is not None:
                v -= so.stack(
                    cells[0] if minus_step == 0 else cells[arm, s, minus_step], variant, field, e
                ).mean()
            out.append(float(v))
        return out

    res: dict = {"curves": {}, "change": {}, "aug_minus_noaug": {}, "entropy": {}}
    for arm in ARMS:
        for v in VARIANTS:
            res["curves"][f"{arm}/{v}"] = [
                {"step": st, **so.mean_ci(w, values(arm, st, v)), "seeds": per_seed(arm, st, v)}
                for st in steps
            ]
            res["curves"][f"{arm}/delta_{v}"] = [
                {"step": st, **so.mean_ci(w, values(arm, st, v) - values(arm, 0, v)),
                 "seeds": per_seed(arm, st, v, minus_step=0)} for st in steps
            ]  # fmt: skip
            res["change"][f"{arm}/{v}"] = res["curves"][f"{arm}/delta_{v}"][-1]
        res["curves"][f"{arm}/entropy_base"] = [
            {"step": st, **so.mean_ci(w, values(arm, st, "base", "entropy")),
             "seeds": per_seed(arm, st, "base", "entropy")} for st in steps
        ]  # fmt: skip
        res["entropy"][arm] = {
            "step0": res["curves"][f"{arm}/entropy_base"][0],
            "last": res["curves"][f"{arm}/entropy_base"][-1],
            "change": {**so.mean_ci(w, values(arm, last, "base", "entropy") - values(arm, 0, "base", "entropy")),
                       "seeds": per_seed(arm, last, "base", "entropy", minus_step=0)},
        }  # fmt: skip
        res["curves"][f"{arm}/p_correct_base"] = [
            {"step": st, **so.mean_ci(w, values(arm, st, "base", "p_correct"))} for st in steps
        ]
        for v in ("wrong_caption", "wrong_think"):
            res["curves"][f"{arm}/followed_{v}"] = [
                {"step": st, **so.mean_ci(w, values(arm, st, v, "followed"))} for st in steps
            ]
    for v in VARIANTS:
        diff = values("aug", last, v) - values("noaug", last, v)
        seeds = [a - b for a, b in zip(per_seed("aug", last, v), per_seed("noaug", last, v))]
        res["aug_minus_noaug"][v] = {**so.mean_ci(w, diff), "seeds": seeds}
    ent = values("aug", last, "base", "entropy") - values("noaug", last, "base", "entropy")
    res["aug_minus_noaug"]["entropy_base"] = so.mean_ci(w, ent)
    checks = []
    for v in ("wrong_caption", "wrong_think"):
        m = res["aug_minus_noaug"][v]
        checks.append((f"aug - noaug: change of {v} accuracy (step 0 -> {last})", m, "> 0, lo > 0",
                       m["est"] > 0 and m["lo"] > 0))  # fmt: skip
    for arm in ARMS:
        m = res["entropy"][arm]["change"]
        checks.append(
            (f"{arm}: base letter entropy change (nats)", m, "< 0, hi < 0", m["est"] < 0 and m["hi"] < 0)
        )
        m = res["change"][f"{arm}/base"]
        checks.append((f"{arm}: base accuracy change", m, ">= -0.03", m["est"] >= -0.03))
    res["checks"] = [{"check": c, **m, "goal": g, "met": bool(ok)} for c, m, g, ok in checks]
    return res


def print_report(res: dict, args) -> None:
    steps = [0, *range(args.save_every, args.steps + 1, args.save_every)]
    cols = len(args.seeds) * len(args.eval_seeds)
    print(f"\n{args.n_eval} eval items x eval seeds {args.eval_seeds} x training seeds {args.seeds} pooled "
          f"({cols} answers per item); [95 % item-bootstrap interval]; per training seed in ()")  # fmt: skip
    print(f"{'arm':6s} {'step':>4s}" + "".join(f"{v:>40s}" for v in VARIANTS) + f"{'base entropy':>40s}")
    for arm in ARMS:
        for i, st in enumerate(steps):
            row = f"{arm:6s} {st:4d}"
            for key in [*VARIANTS, "entropy_base"]:
                m = res["curves"][f"{arm}/{key}"][i]
                seeds = "/".join(f"{s:.2f}" for s in m["seeds"])
                row += f"{m['est']:.3f} [{m['lo']:.3f},{m['hi']:.3f}] ({seeds})".rjust(40)
            print(row)
    print(f"\nchange step 0 -> {steps[-1]} (paired on items)")
    for arm in ARMS:
        print(f"  {arm:6s}" + "".join(f"{v}: {so.fmt(res['change'][f'{arm}/{v}'])}   " for v in VARIANTS))
    if "signal" in res:
        print(f"\nlearning signal: {args.generations} samples at temperature 1 per item ({args.signal_items} items): "
              "share correct / share of groups with differing rewards")  # fmt: skip
        for name, sig in res["signal"].items():
            print(f"  {name:18s}" + "".join(f"{v}: {so.fmt(m['correct'], 2)} / {so.fmt(m['mixed_groups'], 2)}   "
                                            for v, m in sig.items()))  # fmt: skip
    print("checks (stated before the run):")
    for c in res["checks"]:
        print(f"  {c['check']:60s} {so.fmt(c)}  {c['goal']:12s} {'met' if c['met'] else 'MISSED'}")


def plot(res: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        ("accuracy", [("base", "base"), ("wrong_caption", "wrong_caption"), ("wrong_think", "wrong_think")]),
        ("accuracy - step 0 (paired)",
         [("delta_base", "base"), ("delta_wrong_caption", "wrong_caption"), ("delta_wrong_think", "wrong_think")]),
        ("base letter entropy (nats) / follow rate",
         [("entropy_base", "base: letter entropy"), ("followed_wrong_caption", "wrong_caption: follows the text"),
          ("followed_wrong_think", "wrong_think: follows the think")]),
    ]  # fmt: skip
    colours = {"aug": "tab:blue", "noaug": "tab:orange"}
    fig, axes = plt.subplots(len(rows), 3, figsize=(13, 10), sharex=True)
    for r, (ylabel, panels) in enumerate(rows):
        for c, (key, name) in enumerate(panels):
            ax = axes[r, c]
            for arm, augment in ARMS.items():
                pts = res["curves"][f"{arm}/{key}"]
                x = [p["step"] for p in pts]
                ax.plot(x, [p["est"] for p in pts], "-o", ms=3, color=colours[arm],
                        label=f"{arm} (aug {'on' if augment else 'off'})")  # fmt: skip
                ax.fill_between(
                    x, [p["lo"] for p in pts], [p["hi"] for p in pts], color=colours[arm], alpha=0.2
                )
                if "seeds" in pts[0]:
                    for k in range(len(pts[0]["seeds"])):
                        ax.plot(x, [p["seeds"][k] for p in pts], ":", lw=0.8, color=colours[arm])
            ax.set_title(name, fontsize=9)
            if r == 1:
                ax.axhline(0, color="black", lw=0.5)
            if r == len(rows) - 1:
                ax.set_xlabel("GRPO step")
        axes[r, 0].set_ylabel(ylabel, fontsize=9)
        if r < 2:  # one quantity per row: a shared scale
            lo = min(ax.get_ylim()[0] for ax in axes[r])
            hi = max(ax.get_ylim()[1] for ax in axes[r])
            for ax in axes[r]:
                ax.set_ylim(lo, hi)
    axes[2, 1].sharey(axes[2, 2])
    axes[2, 1].set_ylim(0, 1)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/cotprobe-grpo-augment"))
    parser.add_argument("--organisms", type=Path, default=Path("/tmp/cotprobe-organisms"),
                        help="organism cache, shared with dose_response.py")  # fmt: skip
    parser.add_argument("--model-dir", type=Path, default=None, help="a built organism (skips the build)")
    parser.add_argument(
        "--v5-steps", type=int, default=1000, help="steps of the v5 stage after the plain one"
    )
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--profile-threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--profile-only", action="store_true")
    parser.add_argument("--steps", type=int, default=100, help="GRPO steps per run")
    parser.add_argument("--save-every", type=int, default=25)
    parser.add_argument("--generations", type=int, default=8, help="G (the paper's 8)")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.01, help="KL coefficient (the paper's 0.01)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    parser.add_argument("--n-eval", type=int, default=200)
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--signal-items", type=int, default=64, help="items of the learning-signal check (0: skip)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    for name in ("httpx", "datasets", "transformers", "accelerate"):
        logging.getLogger(name).setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    t_all, c_all = time.perf_counter(), so.cpu_seconds()
    times: dict = {}
    if args.model_dir is not None:
        organism = args.model_dir
    else:
        root = args.organisms
        plain, times["plain_stage"] = so.build_plain(root, threads=args.threads)
        organism, times["v5_stage"] = so.build_v5(root, plain, f"v5-default-{args.v5_steps}", steps=args.v5_steps,
                                                  threads=args.threads)  # fmt: skip
        print(f"organism {organism}: plain {times['plain_stage']['wall_s']} s, v5 {times['v5_stage']['wall_s']} s "
              f"wall; validation {times['v5_stage']['validation']}", flush=True)  # fmt: skip
    prof_path = args.out / f"profile-G{args.generations}-P{args.prompts_per_step}-beta{args.beta}.json"
    profiles = json.loads(prof_path.read_text()) if prof_path.exists() else []
    for threads in args.profile_threads:
        if not any(p["threads"] == threads and p["steps"] == args.profile_steps for p in profiles):
            profiles.append(profile(organism, args.out, args, threads))
            prof_path.write_text(json.dumps(profiles, indent=2) + "\n")
    print_profile(profiles)
    if args.profile_only:
        return
    cells, times["stages"] = collect(organism, args.out, args)
    res = analyse(cells, args)
    if args.signal_items:
        res["signal"] = {}
        last = args.steps - args.steps % args.save_every
        models = {"organism": organism, **{f"{arm}-s{args.seeds[0]}-step{last}":
                  args.out / "runs" / f"{arm}-s{args.seeds[0]}" / f"step{last}" for arm in ARMS}}  # fmt: skip
        for name, model in models.items():
            res["signal"][name] = signal(model, n=args.signal_items, generations=args.generations,
                                         threads=args.threads,
                                         cache=args.out / f"signal-{name}-n{args.signal_items}.json")  # fmt: skip
    times["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    times["total_cpu_s"] = round(so.cpu_seconds() - c_all, 1)
    print_report(res, args)
    title = (f"GRPO from the v5 organism: {args.steps} steps x {args.prompts_per_step} prompts x G={args.generations}, "
             f"lr {args.lr}, beta {args.beta}, training seeds {args.seeds} (dotted: per seed)\n{args.n_eval} eval "
             f"items x eval seeds {args.eval_seeds}, seeds pooled, 95 % item-bootstrap bands")  # fmt: skip
    plot(res, args.out / "grpo_augment.png", title)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "grpo_augment.json").write_text(
        json.dumps({"settings": settings, "profile": profiles, "times": times, "results": res}, indent=2)
        + "\n"
    )
    print(f"\nfigure: {args.out / 'grpo_augment.png'}; total {times['total_wall_s']} s wall, "
          f"{times['total_cpu_s']} s CPU")  # fmt: skip


if __name__ == "__main__":
    main()
