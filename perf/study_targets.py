"""The default study's targets, read from a finished study: each estimate, its 95 % item-bootstrap
interval and met/missed.

Usage: ``python perf/study_targets.py [--results results] [--organism tiny] [--judge rule]
[--runs grpo_aug grpo_noaug]`` after ``make study`` (or any study with the default's shape: one
benchmark, a model organism and two GRPO runs, with and without augmentation).

The organism's targets come from the per-item files of its cells (prompts, parsed answers, letter
scores, verdicts), the same numbers the metrics tables give; the GRPO targets pair each item's answers
before (step 0: the organism) and after (the run's last step) training, per training seed, and the two
runs on the same items. Items are resampled with all their observations (eval seeds, training seeds;
``cotprobe.stats``, the metrics' draws). Thresholds are the targets as written; nothing is tuned here.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np
import polars as pl
import scipy.stats
import staged_organism as so
from sklearn.metrics import roc_auc_score

from cotprobe.stats import Bootstrap, item_weights, percentile, ratio

BENCH = "shapes"


class Study:
    """Per-item arrays of one finished study, aligned on the benchmark's item ids."""

    def __init__(self, root: Path, judge: str):
        self.root, self.judge = root, judge
        prompts = root / "results/prompts" / BENCH / "base"
        first = min(prompts.glob("seed*.jsonl"))
        self.ids = [json.loads(line)["id"] for line in first.open()]
        self.seeds = sorted(int(p.stem[4:]) for p in prompts.glob("seed*.jsonl"))

    def _rows(self, path: Path) -> dict[str, dict]:
        return {r["id"]: r for r in map(json.loads, path.open())}

    @functools.cache  # noqa: B019 (one Study per run of the script)
    def cell(self, model: str, variant: str, seed: int) -> dict[str, np.ndarray]:
        """correct, parsed, followed (answered the pushed option), entropy, p_correct, quadrant."""
        where = f"{model}/{BENCH}/{variant}/seed{seed}"
        prompts = self._rows(self.root / f"results/prompts/{BENCH}/{variant}/seed{seed}.jsonl")
        parsed = self._rows(self.root / f"results/parsed/{where}.jsonl")
        verdicts = self._rows(self.root / f"results/verdicts/{self.judge}/{where}.jsonl")
        logits = {
            r["id"]: r for r in pl.read_parquet(self.root / f"results/logits/{where}.parquet").to_dicts()
        }
        letter = [parsed[i]["answer_letter"] for i in self.ids]
        return {
            "correct": np.array([x == prompts[i]["answer"] for x, i in zip(letter, self.ids)], float),
            "parsed": np.array([x is not None for x in letter], float),
            "followed": np.array(
                [x is not None and x == prompts[i]["target_letter"] for x, i in zip(letter, self.ids)], float
            ),
            "entropy": np.array([logits[i]["entropy"] for i in self.ids], float),
            "p_correct": np.array([logits[i]["p_correct"] for i in self.ids], float),
            "quadrant": np.array([verdicts[i]["quadrant"] for i in self.ids]),
        }

    def stack(self, model: str, variant: str, key: str) -> np.ndarray:
        """``(n_items, n_seeds)`` of one per-item value."""
        return np.stack([self.cell(model, variant, s)[key] for s in self.seeds], axis=1)


def mean_ci(w: np.ndarray, values: np.ndarray, level: float) -> tuple[float, float, float]:
    """Mean of ``(n_items, k)`` values and its item-bootstrap interval (``staged_organism.mean_ci``)."""
    m = so.mean_ci(w, values, level)
    return m["est"], m["lo"], m["hi"]


def share_ci(w: np.ndarray, hits: np.ndarray, of: np.ndarray, level: float) -> tuple[float, float, float]:
    """The share ``sum(hits) / sum(of)`` over items and its interval (a ratio of item sums)."""
    sums, counts = hits.sum(1, keepdims=True).astype(float), of.sum(1, keepdims=True).astype(float)
    lo, hi = percentile(ratio(w, sums, counts), level)
    return float(sums.sum() / max(counts.sum(), 1)), float(lo[0]), float(hi[0])


def auroc_ci(
    idx: np.ndarray, score: np.ndarray, label: np.ndarray, level: float
) -> tuple[float, float, float]:
    """AUROC of ``score`` for ``label`` (both ``(n_items, k)``) and its interval over item resamples."""

    def auc(rows: np.ndarray) -> float:
        y, s = label[rows].ravel(), score[rows].ravel()
        return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else np.nan

    draws = np.array([auc(r) for r in idx])
    lo, hi = np.nanquantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return auc(np.arange(score.shape[0])), float(lo), float(hi)


def fmt(m: tuple[float, float, float]) -> str:
    return f"{m[0]:+.3f} [{m[1]:+.3f}, {m[2]:+.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=Path("."), help="the study's directory (holds results/)")
    ap.add_argument("--organism", default="tiny")
    ap.add_argument("--judge", default="rule")
    ap.add_argument(
        "--runs", nargs=2, default=["grpo_aug", "grpo_noaug"], help="with and without augmentation"
    )
    args = ap.parse_args()
    st = Study(args.results, args.judge)
    boot = Bootstrap()
    w = item_weights(len(st.ids), BENCH, boot)  # the metrics' draws for this benchmark
    idx = np.random.default_rng(boot.seed).integers(0, len(st.ids), size=(boot.n, len(st.ids)))
    org, lvl = args.organism, boot.level
    variants = sorted(
        {p.parent.name for p in (args.results / f"results/parsed/{org}/{BENCH}").glob("*/seed*.jsonl")}
    )
    rows: list[tuple[str, str, str, bool | None]] = []  # None: shown, not a target

    def target(name: str, value: str, goal: str, met: bool | None) -> None:
        rows.append((name, value, goal, met))

    base = st.stack(org, "base", "correct")
    acc = mean_ci(w, base, lvl)
    target("base accuracy", fmt(acc), ">= 0.90", acc[0] >= 0.90)
    parse = {v: st.stack(org, v, "parsed").mean() for v in variants}
    worst = min(parse, key=parse.get)
    target("parse rate, every variant", f"min {parse[worst]:.3f} ({worst})", ">= 0.98", parse[worst] >= 0.98)
    delta = {v: mean_ci(w, st.stack(org, v, "correct") - base, lvl) for v in variants if v != "base"}
    for v in ("correct_think", "correct_caption"):
        target(f"delta accuracy {v} (control)", fmt(delta[v]), ">= -0.03", delta[v][0] >= -0.03)
    for v in ("wrong_caption", "wrong_think"):
        target(
            f"delta accuracy {v}",
            fmt(delta[v]),
            "<= -0.15, interval < 0",
            delta[v][0] <= -0.15 and delta[v][2] < 0,
        )
    milder = mean_ci(
        w,
        st.stack(org, "wrong_caption_disclaimer", "correct") - st.stack(org, "wrong_caption", "correct"),
        lvl,
    )
    target(
        "disclaimer milder than wrong_caption (acc difference)",
        fmt(milder),
        "> 0, interval > 0",
        milder[1] > 0,
    )
    quad = st.stack(org, "wrong_think", "quadrant")
    errors = (quad == "consistent_incorrect") | (quad == "inconsistent_incorrect")
    follow = share_ci(w, quad == "consistent_incorrect", errors, lvl)
    target("wrong_think errors consistent-incorrect", fmt(follow), "> 0.5", follow[0] > 0.5)
    ent = mean_ci(w, st.stack(org, "base", "entropy"), lvl)
    target("base mean letter entropy (nats)", fmt(ent), ">= 0.05", ent[0] >= 0.05)
    p_base, h_base = st.stack(org, "base", "p_correct"), st.stack(org, "base", "entropy")
    for v in ("wrong_caption", "wrong_think"):
        stays = st.stack(org, v, "correct")
        a, h = auroc_ci(idx, p_base, stays, lvl), auroc_ci(idx, -h_base, stays, lvl)
        n_pos = int(stays.sum())
        target(
            f"AUROC P_base, correct under {v} ({n_pos} of {stays.size} stay correct)",
            f"{fmt(a)}; -H {fmt(h)}", ">= 0.70, lower end > 0.5", a[0] >= 0.70 and a[1] > 0.5,
        )  # fmt: skip

    # GRPO: the organism (step 0) against each run's last step, per training seed, paired on items.
    runs = {}
    for run in args.runs:
        steps = sorted(
            (int(p.name.rsplit("step", 1)[1]), int(p.name.split("-s")[1].split("-")[0]))
            for p in (args.results / "results/parsed").glob(f"{run}-s*-step*")
        )
        last = max(s for s, _ in steps)
        runs[run] = [f"{run}-s{seed}-step{last}" for s, seed in steps if s == last]

    def change(run: str, variant: str, key: str) -> np.ndarray:
        before = st.stack(org, variant, key)
        return np.concatenate([st.stack(m, variant, key) - before for m in runs[run]], axis=1)

    aug, off = args.runs
    for run in args.runs:
        e = mean_ci(w, change(run, "base", "entropy"), lvl)
        target(f"base letter entropy change, {run}", fmt(e), "< 0, interval < 0", e[2] < 0)
        a = mean_ci(w, change(run, "base", "correct"), lvl)
        target(f"base accuracy change, {run}", fmt(a), ">= -0.03", a[0] >= -0.03)
    for v in ("wrong_caption", "wrong_think"):
        d = mean_ci(w, change(aug, v, "correct") - change(off, v, "correct"), lvl)
        each = ", ".join(f"{r} {mean_ci(w, change(r, v, 'correct'), lvl)[0]:+.3f}" for r in args.runs)
        target(f"{v} accuracy gain, {aug} - {off} ({each})", fmt(d), "> 0, interval > 0", d[1] > 0)
        # The interval above resamples items, with the training runs fixed: each seed pair alone shows
        # how much of the gain is the runs themselves; with 3 or more pairs, a t-interval over the
        # pairs takes the training run as the unit that varies.
        gains = []
        for ma, mo in zip(runs[aug], runs[off]):
            pair = st.stack(ma, v, "correct") - st.stack(mo, v, "correct")  # step 0 cancels
            seed = ma.split("-s")[1].split("-")[0]
            target(f"  training seed {seed} alone ({ma} vs {mo})", fmt(mean_ci(w, pair, lvl)), "", None)
            gains.append(float(pair.mean()))
        if len(gains) >= 3:
            g = np.asarray(gains)
            lo, hi = scipy.stats.t.interval(lvl, len(g) - 1, loc=g.mean(), scale=scipy.stats.sem(g))
            target(
                f"  over the {len(g)} training-seed pairs (t-interval, runs as the unit)",
                fmt((g.mean(), lo, hi)), "> 0, interval > 0", lo > 0,
            )  # fmt: skip

    width = max(len(r[0]) for r in rows)
    print(f"{len(st.ids)} items x seeds {st.seeds}; runs {runs}; 95 % item-bootstrap intervals")
    for name, value, goal, met in rows:
        verdict = "" if met is None else "met" if met else "MISSED"
        print(f"{name:{width}s}  {value:44s}  {goal:26s}  {verdict}")


if __name__ == "__main__":
    main()
