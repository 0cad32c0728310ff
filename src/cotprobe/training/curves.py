"""Training curves: the evaluation's cell metrics of every saved step, per run, seed and variant.

Step 0 of every seed is the run's base model (one evaluation shared by all seeds). Metrics are
the cell table's (``cotprobe.metrics.cell_rows``), averaged over the evaluation seeds:
``accuracy``, ``mean_entropy`` (letter entropy), ``mean_p_correct``, ``parse_ok`` and
``consistency``, the share of samples whose think settles on the answer given (consistent
correct + consistent incorrect; unparseable counts as not consistent).
"""

from __future__ import annotations

import os
from typing import Any

import polars as pl

from cotprobe.metrics import BASE_VARIANT

PathLike = str | os.PathLike
CURVE_METRICS = ("accuracy", "mean_entropy", "consistency", "mean_p_correct", "parse_ok")
PLOTTED = (
    ("accuracy", "Accuracy"),
    ("mean_entropy", "Letter entropy (nats)"),
    ("consistency", "Think ≡ answer"),
)


def curve_rows(cells: pl.DataFrame, runs: dict[str, Any]) -> pl.DataFrame:
    """One row per (run, train seed, step, bench, variant, judge).

    Args:
        cells: The cell table.
        runs: run -> ``{"base": model id, "models": [{"seed", "step", "model"}, ...]}`` (steps > 0).

    Returns:
        Columns ``run, train_seed, step, model, bench, variant, judge, n_eval_seeds`` and
        ``CURVE_METRICS``; sorted by run, bench, judge, variant, seed, step.
    """
    cells = cells.with_columns(
        (pl.col("share_consistent_correct") + pl.col("share_consistent_incorrect")).alias("consistency")
    )
    parts = []
    for run, spec in runs.items():
        seeds = sorted({m["seed"] for m in spec["models"]})
        points = [(s, 0, spec["base"]) for s in seeds] + [
            (m["seed"], m["step"], m["model"]) for m in spec["models"]
        ]
        for seed, step, model in points:
            rows = cells.filter(pl.col("model") == model)
            if rows.is_empty():
                continue
            parts.append(
                rows.group_by(["bench", "variant", "judge"], maintain_order=True)
                .agg(pl.len().alias("n_eval_seeds"), *[pl.col(m).mean() for m in CURVE_METRICS])
                .with_columns(
                    pl.lit(run).alias("run"),
                    pl.lit(seed, dtype=pl.Int64).alias("train_seed"),
                    pl.lit(step, dtype=pl.Int64).alias("step"),
                    pl.lit(model).alias("model"),
                )
            )
    columns = [
        "run",
        "train_seed",
        "step",
        "model",
        "bench",
        "variant",
        "judge",
        "n_eval_seeds",
        *CURVE_METRICS,
    ]
    if not parts:
        schema = {c: pl.String for c in columns[:8]} | {c: pl.Float64 for c in CURVE_METRICS}
        schema.update(train_seed=pl.Int64, step=pl.Int64, n_eval_seeds=pl.UInt32)
        return pl.DataFrame(schema=schema)
    table = pl.concat(parts).select(columns)
    return table.sort(["run", "bench", "judge", "variant", "train_seed", "step"])


def plot_curves(curves: pl.DataFrame, out_png: PathLike, judge: str | None = None):
    """Accuracy, letter entropy and consistency against the step, one panel column per variant.

    Thin lines: one per (run, train seed); thick line and band: the mean over seeds and their
    min-max spread. Benchmarks are averaged; ``judge``'s consistency is drawn (default: the
    first judge; the workflow passes the one the other figures draw, the ensemble when there is one).
    """
    from cotprobe.figures import _colour, _empty, _figure, _save

    fig = _figure()
    if curves.is_empty():
        return _empty(fig, "Training curves", out_png)
    curves = curves.filter(pl.col("judge") == (judge or curves["judge"][0]))
    per_seed = curves.group_by(["run", "train_seed", "step", "variant"]).agg(
        *[pl.col(m).mean() for m, _ in PLOTTED]
    )
    variants = sorted(per_seed["variant"].unique().to_list(), key=lambda v: (v != BASE_VARIANT, v))
    runs = per_seed["run"].unique(maintain_order=True).to_list()
    fig.set_size_inches(2.6 * len(variants) + 2.5, 2.3 * len(PLOTTED) + 0.8)
    grid = fig.subplots(len(PLOTTED), len(variants), squeeze=False, sharex=True)
    for col, variant in enumerate(variants):
        for row, (metric, label) in enumerate(PLOTTED):
            ax = grid[row][col]
            for i, run in enumerate(sorted(runs)):
                data = per_seed.filter((pl.col("variant") == variant) & (pl.col("run") == run)).sort("step")
                colour = _colour(i)
                for seed in sorted(data["train_seed"].unique().to_list()):
                    line = data.filter(pl.col("train_seed") == seed)
                    ax.plot(line["step"], line[metric], color=colour, alpha=0.35, linewidth=0.8)
                stats = data.group_by("step").agg(
                    pl.col(metric).mean().alias("mean"), pl.col(metric).min().alias("lo"),
                    pl.col(metric).max().alias("hi"),
                ).sort("step")  # fmt: skip
                ax.fill_between(
                    stats["step"], stats["lo"], stats["hi"], color=colour, alpha=0.15, linewidth=0
                )
                ax.plot(
                    stats["step"], stats["mean"], color=colour, linewidth=2, label=run if col == 0 else None
                )
            if row == 0:
                ax.set_title(variant, fontsize="small")
            if col == 0:
                ax.set_ylabel(label)
            if row == len(PLOTTED) - 1:
                ax.set_xlabel("step")
    handles, labels = grid[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            title="run (mean; band: seed min-max)",
            loc="outside right upper",
            fontsize="small",
        )
    return _save(fig, out_png)
