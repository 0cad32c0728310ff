"""Dose-response of the organism's susceptibility: the more text evidence in its training, the larger
its accuracy drop under ``wrong_caption``?

Usage: ``python perf/dose_response.py [--organisms DIR] [--steps 1000] [--doses low default high]
[--n 200] [--seeds 0 1] [--threads 1] [--out DIR]``.

Design, stated before measuring. Recipe v5 (``cotprobe.models.organism_v5``) trains 44 % of its samples with
text evidence: captions (12 %), hedged captions (8 %), open think pre-fills (20 %) and closed ones
(4 %), half of the asserting ones asserting a wrong option; a caption multiplies the asserted option's
odds by 12, so the target follows a wrong caption wherever the image's support is below ~0.8. The
doses scale these four shares by ``DOSES`` (low 0.25: 11 % text evidence; high 1.75: 77 %; the extra
option line stays at 3 %, the rest is plain), with the designed odds unchanged. Each dose is a v5
second stage of ``--steps`` from one shared plain stage (``staged_organism``; ``default`` is the
GRPO start of ``grpo_augment.py``, cached in the same place). Prediction: the organism that saw more
captions (text it learned to weigh) follows a wrong caption more: the high dose's wrong_caption drop
is larger (more negative) than the low dose's, the difference's interval below 0; ``default`` in
between. ``correct_caption`` is the control: a drop there too would mean the caption disrupts reading
(unfamiliar text), not that it persuades.

Measured per organism on ``--n`` shapes eval items x ``--seeds`` (greedy, ``organism_targets.run``):
accuracy under each variant; the drop (variant minus base, paired on items and seeds); the share of
answers that follow the wrong caption. Intervals: 95 % item bootstrap (``cotprobe.stats``, 2000
resamples, items with their seeds). The difference of two doses' drops, two ways: (a) joint, the
organisms' answers on the same item resampled together (the items are shared; the builds are
independent, and one build per dose says nothing about build-to-build spread); (b) unpaired, each
dose's drop from its own independent resample, which ignores that the items are the same (wider).
Writes ``OUT/dose_response.json`` and ``OUT/dose_response.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import staged_organism as so

DOSES = {"low": 0.25, "default": 1.0, "high": 1.75}
TEXT_KINDS = ("caption", "hedged", "think", "closed")
B = 2000


def layouts(factor: float) -> dict[str, float] | None:
    """v5's layout shares with the text-evidence ones scaled by ``factor`` (None at 1: v5's own)."""
    from cotprobe.models.organism_v5 import LAYOUTS

    if factor == 1.0:
        return None
    return {k: round(v * factor, 4) if k in TEXT_KINDS else v for k, v in LAYOUTS.items()}


def text_share(factor: float) -> float:
    from cotprobe.models.organism_v5 import LAYOUTS

    return sum(LAYOUTS[k] for k in TEXT_KINDS) * factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organisms", type=Path, default=Path("/tmp/cotprobe-organisms"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/cotprobe-dose-response"))
    parser.add_argument("--steps", type=int, default=1000, help="steps of each v5 stage")
    parser.add_argument("--doses", nargs="+", default=list(DOSES), choices=list(DOSES))
    parser.add_argument("--variants", nargs="+", default=["base", "wrong_caption", "correct_caption"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from cotprobe.stats import Bootstrap, item_weights, percentile, ratio

    args.out.mkdir(parents=True, exist_ok=True)
    t_all, c_all = time.perf_counter(), so.cpu_seconds()
    plain, plain_facts = so.build_plain(args.organisms, threads=args.threads)
    times: dict = {"plain_stage": plain_facts, "v5_stage": {}, "eval": {}}
    models = {}
    for dose in args.doses:
        name = f"v5-{dose}-{args.steps}" if dose != "default" else f"v5-default-{args.steps}"
        models[dose], times["v5_stage"][dose] = so.build_v5(
            args.organisms, plain, name, steps=args.steps, threads=args.threads, layouts=layouts(DOSES[dose])
        )
        print(f"{dose}: {models[dose]} built in {times['v5_stage'][dose]['wall_s']} s wall; "
              f"validation {times['v5_stage'][dose]['validation']}", flush=True)  # fmt: skip
    if args.build_only:
        return
    tag = f"n{args.n}-e{'-'.join(map(str, args.seeds))}-{'-'.join(args.variants)}"
    cells = {}
    for dose, model in models.items():
        cells[dose] = so.answers(model, n=args.n, seeds=args.seeds, variants=args.variants, threads=args.threads,
                                 cache=args.out / f"answers-{model.name}-{tag}.pkl")  # fmt: skip
        times["eval"][dose] = cells[dose]["_time", None]
        print(f"{dose}: answered in {times['eval'][dose]['wall_s']} s wall", flush=True)

    w = item_weights(args.n, "shapes", Bootstrap(n=B, seed=0))
    w2 = item_weights(args.n, "shapes-independent", Bootstrap(n=B, seed=1))

    def acc(dose: str, variant: str, field: str = "correct") -> np.ndarray:
        return so.stack(cells[dose], variant, field, args.seeds)

    res: dict = {"doses": {}, "differences": {}}
    for dose in models:
        r = {"factor": DOSES[dose], "text_share": text_share(DOSES[dose]), "layouts": layouts(DOSES[dose])}
        for v in args.variants:
            r[f"acc_{v}"] = so.mean_ci(w, acc(dose, v))
            if v != "base":
                r[f"drop_{v}"] = so.mean_ci(w, acc(dose, v) - acc(dose, "base"))
        if "wrong_caption" in args.variants:
            r["followed_wrong_caption"] = so.mean_ci(w, acc(dose, "wrong_caption", "followed"))
        res["doses"][dose] = r
    order = [d for d in DOSES if d in models]
    for i, lo_dose in enumerate(order):
        for hi_dose in order[i + 1 :]:
            measures = [(f"drop_{x}", x, "correct") for x in args.variants if x != "base"]
            if "wrong_caption" in args.variants:
                measures.append(("followed_wrong_caption", "wrong_caption", "followed"))
            for key, v, field in measures:
                d_hi, d_lo = acc(hi_dose, v, field), acc(lo_dose, v, field)
                if field == "correct":
                    d_hi, d_lo = d_hi - acc(hi_dose, "base"), d_lo - acc(lo_dose, "base")
                joint = so.mean_ci(w, d_hi - d_lo)
                counts = np.full((args.n, 1), d_hi.shape[1], float)
                r_hi = ratio(w, d_hi.sum(1, keepdims=True), counts)
                r_lo = ratio(w2, d_lo.sum(1, keepdims=True), counts)
                lo, hi = percentile(r_hi - r_lo, 0.95)
                unpaired = {"est": joint["est"], "lo": float(lo[0]), "hi": float(hi[0])}
                res["differences"][f"{hi_dose}-{lo_dose}/{key}"] = {"joint": joint, "unpaired": unpaired}
    if {"low", "high"} <= set(models) and "wrong_caption" in args.variants:
        d = res["differences"]["high-low/drop_wrong_caption"]["joint"]
        res["prediction"] = {"statement": "drop_wrong_caption(high) - drop_wrong_caption(low) < 0, interval below 0",
                             "met": d["est"] < 0 and d["hi"] < 0}  # fmt: skip
    times["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    times["total_cpu_s"] = round(so.cpu_seconds() - c_all, 1)

    print(f"\n{args.n} eval items x seeds {args.seeds}; [95 % item-bootstrap interval]")
    keys = [f"acc_{v}" for v in args.variants] + [f"drop_{v}" for v in args.variants if v != "base"]
    keys += ["followed_wrong_caption"] if "wrong_caption" in args.variants else []
    print(f"{'':28s}" + "".join(f"{d + ' (' + format(res['doses'][d]['text_share'], '.0%') + ' text)':>28s}"
                                for d in models))  # fmt: skip
    for k in keys:
        print(f"{k:28s}" + "".join(f"{so.fmt(res['doses'][d][k]):>28s}" for d in models))
    print("\ndifferences (higher dose minus lower):")
    for k, m in res["differences"].items():
        print(f"  {k:40s} joint {so.fmt(m['joint'])}   unpaired {so.fmt(m['unpaired'])}")
    if "prediction" in res:
        print(
            f"prediction: {res['prediction']['statement']}: {'met' if res['prediction']['met'] else 'MISSED'}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [res["doses"][d]["text_share"] for d in models]

    def bars(axis, ms: list[dict], label: str) -> None:
        est = np.array([x["est"] for x in ms])
        lo, hi = np.array([x["lo"] for x in ms]), np.array([x["hi"] for x in ms])
        axis.errorbar(xs, est, yerr=[est - lo, hi - est], fmt="-o", capsize=3, label=label)

    for v in [x for x in args.variants if x != "base"]:
        bars(ax, [res["doses"][d][f"drop_{v}"] for d in models], v)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("share of training samples with text evidence")
    ax.set_ylabel("accuracy - base accuracy")
    ax.set_title("Accuracy drop", fontsize=9)
    ax.legend(fontsize=8)
    if "wrong_caption" in args.variants:
        bars(ax2, [res["doses"][d]["followed_wrong_caption"] for d in models], "wrong_caption")
        ax2.set_ylim(0, 1)
        ax2.set_xlabel("share of training samples with text evidence")
        ax2.set_ylabel("share of answers naming the caption's option")
        ax2.set_title("Following the wrong caption", fontsize=9)
    fig.suptitle(
        f"Organism dose-response ({args.n} items x {len(args.seeds)} seeds, 95 % intervals)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(args.out / "dose_response.png", dpi=130)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "dose_response.json").write_text(
        json.dumps({"settings": settings, "times": times, "results": res}, indent=2) + "\n"
    )
    print(f"figure: {args.out / 'dose_response.png'}; total {times['total_wall_s']} s wall, "
          f"{times['total_cpu_s']} s CPU")  # fmt: skip


if __name__ == "__main__":
    main()
