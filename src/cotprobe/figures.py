"""Figures from the metrics CSVs (``cotprobe.metrics``): accuracy, quadrants, AUROC, paired effects
(forest plot), letter entropy and P(correct), risk-coverage, judge agreement.

Each function reads a CSV, draws with matplotlib's Agg backend (no display, no pyplot state)
and writes ``out_png`` plus a PDF with the same stem next to it, both atomically. Missing
values (empty CSV fields, NaN) are drawn as missing, never as zero; an empty table gives a
figure that says so. Variants are ordered ``base`` first, then as they appear in the CSV.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from cotprobe.io import InputError, atomic_path
from cotprobe.metrics import BASE_VARIANT
from cotprobe.records import QUADRANTS, UNPARSEABLE

# Bump when a figure may change; cotprobe.workflow reads it from this file without importing polars.
FIGURES_VERSION = 3  # 3: Glasbey colours past ten series

PathLike = str | os.PathLike
STACK = (*QUADRANTS, UNPARSEABLE)
STACK_COLOURS = {
    "consistent_correct": "#1b9e77",
    "inconsistent_correct": "#a6dba0",
    "consistent_incorrect": "#d95f02",
    "inconsistent_incorrect": "#fdb863",
    "unparseable": "#bdbdbd",
}
CI_NOTE = "error bars: 95% bootstrap interval over items (seeds resampled with their item)"


class Written(NamedTuple):
    png: Path
    pdf: Path


def plot_accuracy(summary_csv: PathLike, out_png: PathLike, judge: str | None = None) -> Written:
    """Accuracy per variant, one bar colour per model, one panel per benchmark (Fig. 3 style).

    Accuracy does not depend on the judge; the rows of ``judge`` (default: the summary's first
    judge) are drawn.

    Args:
        summary_csv: The seed summary (``metrics.summary_rows``).
        out_png: Output path ending in ``.png``; the PDF goes next to it.
        judge: Any judge or ensemble of the summary.
    """
    table = _read(summary_csv)
    fig = _figure()
    if table.is_empty():
        return _empty(fig, "Accuracy by prompt variant", out_png)
    table = _one_judge(table, judge, summary_csv)
    benches = _unique(table["bench"])
    models = _unique(table["model"])
    variants = _variants(table["variant"])
    width = max(4.5, 0.3 * len(variants) * max(len(models), 2) + 1.5)
    axes = _axes(fig, len(benches), width, 3.8)
    bar = 0.8 / len(models)
    for ax, bench in zip(axes, benches):
        rows = table.filter(pl.col("bench") == bench)
        for m, model in enumerate(models):
            xs, ys, lo, hi = [], [], [], []
            for v, variant in enumerate(variants):
                row = _row(rows, model=model, variant=variant)
                if row is None or _nan(row["accuracy"]):
                    continue
                xs.append(v - 0.4 + bar * (m + 0.5))
                ys.append(row["accuracy"])
                lo.append(row.get("accuracy_lo"))
                hi.append(row.get("accuracy_hi"))
            ax.bar(xs, ys, width=bar, color=_colour(m), label=model, edgecolor="white", linewidth=0.5)
            ci = [i for i in range(len(xs)) if not (_nan(lo[i]) or _nan(hi[i]))]
            if ci:
                ax.errorbar(
                    [xs[i] for i in ci],
                    [ys[i] for i in ci],
                    yerr=[[ys[i] - lo[i] for i in ci], [hi[i] - ys[i] for i in ci]],
                    fmt="none",
                    ecolor="black",
                    elinewidth=0.8,
                    capsize=2,
                )
        _variant_axis(ax, variants)
        ax.set_ylim(0, 1)
        ax.set_ylabel("Accuracy")
        ax.set_title(bench)
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, axes[0], "Model")
    fig.suptitle(f"Accuracy by prompt variant\n{CI_NOTE}", fontsize="medium")
    return _save(fig, out_png)


def plot_quadrants(summary_csv: PathLike, out_png: PathLike, judge: str | None = None) -> Written:
    """Quadrant shares (and unparseable) as stacked bars per model x variant.

    One panel per (benchmark, judge); bars are grouped by model, one bar per variant.

    Args:
        summary_csv: The seed summary (``metrics.summary_rows``).
        out_png: Output path ending in ``.png``; the PDF goes next to it.
        judge: Draw only this judge or ensemble (default: every judge of the summary).
    """
    from matplotlib.patches import Patch

    table = _read(summary_csv)
    fig = _figure()
    if table.is_empty():
        return _empty(fig, "Think/answer quadrants", out_png)
    if judge is not None:
        table = _one_judge(table, judge, summary_csv)
    panels = _unique(table.select(pl.concat_str("bench", pl.lit(" | judge: "), "judge"))[:, 0])
    models = _unique(table["model"])
    variants = _variants(table["variant"])
    width = max(5.0, 0.32 * len(models) * (len(variants) + 1) + 2.0)
    axes = _axes(fig, len(panels), width, 4.2, max_cols=1 if width > 9 else 2)
    table = table.with_columns(pl.concat_str("bench", pl.lit(" | judge: "), "judge").alias("_panel"))
    for ax, panel in zip(axes, panels):
        rows = table.filter(pl.col("_panel") == panel)
        ticks, labels = [], []
        for m, model in enumerate(models):
            group_x = []
            for v, variant in enumerate(variants):
                row = _row(rows, model=model, variant=variant)
                x = m * (len(variants) + 1) + v
                ticks.append(x)
                labels.append(variant)
                group_x.append(x)
                if row is None:
                    continue
                shares = [row.get(f"share_{q}") for q in STACK]
                if all(_nan(s) for s in shares):
                    ax.text(x, 0.02, "n/a", ha="center", va="bottom", rotation=90, fontsize="x-small")
                    continue
                bottom = 0.0
                for q, share in zip(STACK, shares):
                    if not _nan(share):
                        ax.bar(x, share, bottom=bottom, width=0.8, color=STACK_COLOURS[q], linewidth=0)
                        bottom += share
            ax.text(sum(group_x) / len(group_x), 1.03, model, ha="center", va="bottom", fontsize="small")
        ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize="small")
        ax.set_ylim(0, 1.12)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_ylabel("Share of samples")
        ax.set_title(panel, pad=14)
    handles = [Patch(color=STACK_COLOURS[q], label=q.replace("_", " ")) for q in reversed(STACK)]
    fig.legend(handles=handles, title="Quadrant", loc="outside right upper", fontsize="small")
    fig.suptitle("Think/answer consistency x correctness", fontsize="medium")
    return _save(fig, out_png)


def plot_auroc(auroc_csv: PathLike, out_png: PathLike) -> Written:
    """AUROC of P_base and of −H for staying correct, per perturbing variant, with 95% intervals.

    One panel per (benchmark, model), paired bars per variant, a dashed chance line at 0.5;
    the ``all`` panels pool benchmarks, and their ``all`` bars pool the variants too.
    A null AUROC (one class only) has no bar and an ``n/a`` mark.

    Args:
        auroc_csv: The AUROC table (``metrics.auroc_rows``).
        out_png: Output path ending in ``.png``; the PDF goes next to it.
    """
    table = _read(auroc_csv)
    fig = _figure()
    if table.is_empty():
        return _empty(fig, "AUROC of base-prompt confidence", out_png)
    benches = _unique(table["bench"])
    models = _unique(table["model"])
    variants = _variants(table["variant"])
    width = max(3.5, 0.7 * len(variants) + 1.5)
    panels = [(b, m) for b in benches for m in models]
    axes = _axes(fig, len(panels), width, 3.6, max_cols=min(len(models), max(1, int(16 // width))))
    series = (
        ("auroc_p_base", "P_base (p_correct)", "#3b6fb6"),
        ("auroc_neg_entropy", "−H (minus entropy)", "#e08a2b"),
    )
    missing_note = False
    for ax, (bench, model) in zip(axes, panels):
        rows = table.filter((pl.col("bench") == bench) & (pl.col("model") == model))
        for s, (column, label, colour) in enumerate(series):
            xs, ys, err = [], [], []
            for v, variant in enumerate(variants):
                row = _row(rows, variant=variant)
                if row is None:
                    continue
                x = v - 0.2 + 0.4 * s
                if _nan(row[column]):
                    ax.text(
                        x,
                        0.03,
                        "n/a",
                        ha="center",
                        va="bottom",
                        rotation=90,
                        fontsize="x-small",
                        color=colour,
                    )
                    missing_note = True
                else:
                    xs.append(x)
                    ys.append(row[column])
                    lo, hi = row.get(f"{column}_lo"), row.get(f"{column}_hi")
                    err.append((0.0, 0.0) if _nan(lo) or _nan(hi) else (row[column] - lo, hi - row[column]))
            ax.bar(xs, ys, width=0.38, color=colour, label=label)
            if xs:
                ax.errorbar(
                    xs, ys, yerr=list(zip(*err)), fmt="none", ecolor="black", elinewidth=0.8, capsize=2
                )
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance (0.5)")
        _variant_axis(ax, variants)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("AUROC")
        ax.set_title(f"{model} | {bench}", fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, axes[0], "Score on the base prompt")
    title = "AUROC for staying correct under each perturbation"
    if missing_note:
        title += "\nn/a: only one class (every or no sample stays correct)"
    fig.suptitle(title, fontsize="medium")
    return _save(fig, out_png)


def plot_forest(effects_csv: PathLike, out_png: PathLike) -> Written:
    """Δaccuracy against ``base`` with its paired interval: one panel per model, variants down the axis.

    Per variant, the mean over benchmarks (black, ``bench = all``) and each benchmark's effect
    (coloured, smaller) with their intervals; the dashed line is no effect.

    Args:
        effects_csv: The paired-effects table (``metrics.effect_rows``).
        out_png: Output path ending in ``.png``; the PDF goes next to it.
    """
    table = _read(effects_csv)
    fig = _figure()
    title = "Change in accuracy against base (paired, 95% bootstrap interval)"
    if table.is_empty():
        return _empty(fig, title, out_png)
    models = _unique(table["model"])
    variants = [v for v in _variants(table["variant"]) if v != BASE_VARIANT]
    benches = [b for b in _unique(table["bench"]) if b != "all"]
    axes = _axes(fig, len(models), 4.2, 0.45 * len(variants) + 1.4, max_cols=3)
    series = [("all", "mean over benchmarks", "black")] + [(b, b, _colour(i)) for i, b in enumerate(benches)]
    step = 0.6 / max(len(series), 1)
    for ax, model in zip(axes, models):
        rows = table.filter(pl.col("model") == model)
        for k, (bench, label, colour) in enumerate(series):
            ys, xs, lo, hi = [], [], [], []
            for v, variant in enumerate(variants):
                row = _row(rows, bench=bench, variant=variant)
                if row is None or _nan(row["delta_accuracy"]):
                    continue
                ys.append(v - 0.3 + step * (k + 0.5))
                xs.append(row["delta_accuracy"])
                lo.append(
                    row["delta_accuracy"]
                    - (
                        row["delta_accuracy_lo"]
                        if not _nan(row["delta_accuracy_lo"])
                        else row["delta_accuracy"]
                    )
                )
                hi.append(
                    (
                        row["delta_accuracy_hi"]
                        if not _nan(row["delta_accuracy_hi"])
                        else row["delta_accuracy"]
                    )
                    - row["delta_accuracy"]
                )
            if xs:
                big = bench == "all"
                ax.errorbar(
                    xs, ys, xerr=[lo, hi], fmt="o" if big else ".", color=colour, ms=6 if big else 4,
                    elinewidth=1.4 if big else 0.8, capsize=2, label=label,
                )  # fmt: skip
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(variants)), variants)
        ax.set_ylim(len(variants) - 0.5, -0.5)
        ax.set_xlabel("Δ accuracy (variant − base)")
        ax.set_title(model)
        ax.grid(axis="x", alpha=0.3)
    _legend(fig, axes[0], "Benchmark")
    fig.suptitle(title, fontsize="medium")
    return _save(fig, out_png)


UNCERTAINTY = (("mean_entropy", "Letter entropy (nats)"), ("mean_p_correct", "P(correct letter)"))


def plot_uncertainty(summary_csv: PathLike, out_png: PathLike, judge: str | None = None) -> Written:
    """Letter entropy and P(correct letter) per variant: one column per model, one row per measure.

    Points per benchmark with their bootstrap intervals; rows share their y-axis so models
    compare at a glance (the paper's entropy analysis).

    Args:
        summary_csv: The seed summary (``metrics.summary_rows``).
        out_png: Output path ending in ``.png``; the PDF goes next to it.
        judge: Any judge of the summary (these measures do not depend on it).
    """
    table = _read(summary_csv)
    fig = _figure()
    title = f"Letter entropy and P(correct) by prompt variant\n{CI_NOTE}"
    if table.is_empty():
        return _empty(fig, "Letter entropy and P(correct) by prompt variant", out_png)
    table = _one_judge(table, judge, summary_csv)
    models, benches = _unique(table["model"]), _unique(table["bench"])
    variants = _variants(table["variant"])
    width = max(3.5, 0.45 * len(variants) + 1.2)
    fig.set_size_inches(width * len(models) + 2.5, 3.2 * len(UNCERTAINTY) + 0.8)
    grid = fig.subplots(len(UNCERTAINTY), len(models), squeeze=False, sharey="row")
    step = 0.6 / max(len(benches), 1)
    for col, model in enumerate(models):
        for r, (metric, label) in enumerate(UNCERTAINTY):
            ax = grid[r][col]
            for b, bench in enumerate(benches):
                rows = table.filter((pl.col("model") == model) & (pl.col("bench") == bench))
                xs, ys, lo, hi = [], [], [], []
                for v, variant in enumerate(variants):
                    row = _row(rows, variant=variant)
                    if row is None or _nan(row[metric]):
                        continue
                    xs.append(v - 0.3 + step * (b + 0.5))
                    ys.append(row[metric])
                    lo.append(
                        row[metric] - (row[metric] if _nan(row[f"{metric}_lo"]) else row[f"{metric}_lo"])
                    )
                    hi.append(
                        (row[metric] if _nan(row[f"{metric}_hi"]) else row[f"{metric}_hi"]) - row[metric]
                    )
                if xs:
                    ax.errorbar(
                        xs, ys, yerr=[lo, hi], fmt="o", ms=4, color=_colour(b), capsize=2, elinewidth=0.8,
                        label=bench if (r, col) == (0, 0) else None,
                    )  # fmt: skip
            _variant_axis(ax, variants)
            if r == 0:
                ax.set_title(model)
            if col == 0:
                ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
    _legend(fig, grid[0][0], "Benchmark")
    fig.suptitle(title, fontsize="medium")
    return _save(fig, out_png)


def plot_risk_coverage(curve_csv: PathLike, aurc_csv: PathLike, out_png: PathLike) -> Written:
    """Risk-coverage curves from P_base on the base prompt, one line per model, AURC in the legend.

    Rejecting the lowest-P_base items first, the error rate among the items kept (risk) against
    the share kept (coverage); benchmarks pooled (``bench = all``). Lower is better.

    Args:
        curve_csv: The curve table (``metrics.aurc_rows``, second table).
        aurc_csv: The AURC table (``metrics.aurc_rows``, first table).
        out_png: Output path ending in ``.png``; the PDF goes next to it.
    """
    curves, areas = _read(curve_csv), _read(aurc_csv)
    fig = _figure()
    title = "Risk-coverage: rejecting the lowest P_base first (base prompt, benchmarks pooled)"
    curves = curves.filter(pl.col("bench") == "all") if not curves.is_empty() else curves
    if curves.is_empty():
        return _empty(fig, title, out_png)
    fig.set_size_inches(7.5, 4.5)
    ax = fig.subplots()
    for i, model in enumerate(_unique(curves["model"])):
        line = curves.filter(pl.col("model") == model).sort("coverage")
        row = _row(areas, model=model, bench="all") if not areas.is_empty() else None
        label = model
        if row is not None and not _nan(row["aurc"]):
            label += f" (AURC {row['aurc']:.3f} [{row['aurc_lo']:.3f}, {row['aurc_hi']:.3f}])"
        ax.plot(line["coverage"], line["risk"], color=_colour(i), linewidth=1.5, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("Coverage (share of items kept)")
    ax.set_ylabel("Risk (error rate of kept items)")
    ax.grid(alpha=0.3)
    _legend(fig, ax, "Model (AURC, 95% interval)")
    fig.suptitle(title, fontsize="medium")
    return _save(fig, out_png)


def plot_agreement(agreement_csv: PathLike, out_png: PathLike) -> Written:
    """Pairwise Cohen's kappa between judges, one heat map per benchmark (all models pooled).

    Each panel's title gives the strict all-judge agreement and Fleiss' kappa; an undefined
    kappa is shown as ``n/a`` (see ``cotprobe.agreement``).

    Args:
        agreement_csv: The agreement table (``agreement.agreement_rows``).
        out_png: Output path ending in ``.png``; the PDF goes next to it.
    """
    table = _read(agreement_csv)
    fig = _figure()
    title = "Judge agreement (pairwise Cohen's kappa)"
    if table.is_empty():
        return _empty(fig, title, out_png)
    table = table.filter(pl.col("model") == "all")
    benches = _unique(table["bench"])
    fleiss_rows = table.filter(pl.col("statistic") == "fleiss")
    judges = str(fleiss_rows["raters"][0]).split("+")
    k = len(judges)
    axes = _axes(fig, len(benches), 1.0 * k + 2.0, 0.9 * k + 1.6)
    image = None
    for ax, bench in zip(axes, benches):
        rows = table.filter(pl.col("bench") == bench)
        matrix = [[1.0 if i == j else math.nan for j in range(k)] for i in range(k)]
        for row in rows.filter(pl.col("statistic") == "cohen").iter_rows(named=True):
            a, b = str(row["raters"]).split("+")
            value = math.nan if _nan(row["kappa"]) else row["kappa"]
            matrix[judges.index(a)][judges.index(b)] = matrix[judges.index(b)][judges.index(a)] = value
        image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdYlGn")
        for i in range(k):
            for j in range(k):
                text = "n/a" if math.isnan(matrix[i][j]) else f"{matrix[i][j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize="small")
        ax.set_xticks(range(k), judges, rotation=30, ha="right", fontsize="small")
        ax.set_yticks(range(k), judges, fontsize="small")
        fl = _row(rows, statistic="fleiss")
        strict = "n/a" if fl is None or _nan(fl["agreement"]) else f"{fl['agreement']:.0%}"
        kappa = "n/a" if fl is None or _nan(fl["kappa"]) else f"{fl['kappa']:.2f}"
        n = 0 if fl is None else fl["n"]
        ax.set_title(f"{bench} (n={n})\nstrict {strict}, Fleiss κ {kappa}", fontsize="small")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="Cohen's κ")
    fig.suptitle(title, fontsize="medium")
    return _save(fig, out_png)


def plot_acknowledgment(table_csv: PathLike, out_png: PathLike) -> Written:
    """Does the think admit the plant? One panel per (judge, bench): per model, the share of items
    that moved to the planted option (hatched) and, among them, the share whose think admits the
    plant (solid), each with its bootstrap interval; ``n`` moved items under each pair of bars.

    Args:
        table_csv: ``acknowledgment.ack_rows``'s table.
        out_png: Output path ending in ``.png``; the PDF goes next to it.
    """
    table = _read(table_csv)
    fig = _figure()
    title = "Does the think admit the plant? (moved: answer moved to the planted option)"
    if table.is_empty():
        return _empty(fig, title, out_png)
    panels = table.select("judge", "bench").unique(maintain_order=True).rows()
    variants = _unique(table["variant"])
    models = _unique(table["model"])
    axes = _axes(fig, len(panels), 1.2 + 0.9 * len(models) * len(variants), 3.2)
    width = 0.8 / (2 * len(variants))
    for ax, (judge, bench) in zip(axes, panels):
        rows = table.filter((pl.col("judge") == judge) & (pl.col("bench") == bench))
        for v, variant in enumerate(variants):
            for k, (col, hatch) in enumerate((("moved_share", "//"), ("ack_share", None))):
                xs, ys, err = [], [], [[], []]
                for m, model in enumerate(models):
                    row = _row(rows, model=model, variant=variant)
                    if row is None or _nan(row[col]):
                        continue
                    xs.append(m + (2 * v + k) * width - 0.4 + width / 2)
                    ys.append(row[col])
                    lo, hi = row[f"{col}_lo"], row[f"{col}_hi"]
                    err[0].append(0 if _nan(lo) else max(0, row[col] - lo))
                    err[1].append(0 if _nan(hi) else max(0, hi - row[col]))
                label = f"{variant}: {'moved' if k == 0 else 'admits the plant'}"
                ax.bar(xs, ys, width, yerr=err, capsize=2, hatch=hatch, color=f"C{v}",
                       alpha=0.45 if k == 0 else 0.9, label=label)  # fmt: skip
        ticks = []
        for model in models:
            moved = [r["n_moved"] for r in rows.filter(pl.col("model") == model).iter_rows(named=True)]
            ticks.append(f"{model}\nmoved n={'/'.join(str(n) for n in moved)}")
        ax.set_xticks(range(len(models)), ticks, fontsize="x-small", rotation=20, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share")
        ax.set_title(f"{bench} (judge {judge})", fontsize="small")
    _legend(fig, axes[0], "")
    fig.suptitle(title, fontsize="medium")
    return _save(fig, out_png)


def plot_early_answering(table_csv: PathLike, out_png: PathLike) -> Written:
    """Early answering: per benchmark (columns), agreement of the argmax letter with the final
    answer (top) and the mean P(final answer) (bottom) against the share of the think kept, one
    line per model with its bootstrap band. Both rows share their y-axis (0 to 1).

    Args:
        table_csv: ``early_answer.early_rows``'s table.
        out_png: Output path ending in ``.png``; the PDF goes next to it.
    """
    table = _read(table_csv)
    fig = _figure()
    title = "Early answering\nthe base think cut, the letter read at <answer>"
    if table.is_empty() or table["agreement"].is_null().all():
        return _empty(fig, title, out_png)
    benches = _unique(table["bench"])
    models = _unique(table["model"])
    fig.set_size_inches(3.2 * len(benches) + 3.5, 5.6)
    grid = fig.subplots(2, len(benches), squeeze=False, sharey="row")
    for j, bench in enumerate(benches):
        for i, (col, label) in enumerate(
            (("agreement", "argmax = final answer"), ("mean_p_final", "P(final answer)"))
        ):
            ax = grid[i][j]
            for m, model in enumerate(models):
                rows = table.filter((pl.col("bench") == bench) & (pl.col("model") == model)).sort("fraction")
                rows = rows.filter(pl.col(col).is_not_null())
                if not rows.height:
                    continue
                x = (rows["fraction"] * 100).to_list()
                ax.plot(x, rows[col].to_list(), marker="o", color=f"C{m % 10}", label=model)
                ax.fill_between(x, rows[f"{col}_lo"].fill_null(float("nan")).to_list(),
                                rows[f"{col}_hi"].fill_null(float("nan")).to_list(), color=f"C{m % 10}", alpha=0.15)  # fmt: skip
            ax.set_ylim(0, 1.05)
            ax.set_xticks([0, 25, 50, 75, 100])
            if i == 0:
                ax.set_title(bench, fontsize="small")
            if i == 1:
                ax.set_xlabel("share of the think kept (%)")
            if j == 0:
                ax.set_ylabel(label)
    _legend(fig, grid[0][0], "model")
    fig.suptitle(title, fontsize="medium")
    return _save(fig, out_png)


def _one_judge(table: pl.DataFrame, judge: str | None, path: PathLike) -> pl.DataFrame:
    if "judge" not in table.columns:
        return table
    judges = _unique(table["judge"])
    if judge is None:
        judge = judges[0]
    if judge not in judges:
        raise InputError(f"{path}: no rows of judge {judge!r} (judges: {', '.join(judges)})")
    return table.filter(pl.col("judge") == judge)


def _read(path: PathLike) -> pl.DataFrame:
    table = pl.read_csv(path, infer_schema_length=None)
    keys = [c for c in ("model", "bench", "variant", "judge", "raters", "statistic") if c in table.columns]
    return table.with_columns(pl.col(keys).cast(pl.String))


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(layout="constrained")


def _axes(fig: Any, n: int, width: float, height: float, max_cols: int = 3) -> list[Any]:
    cols = max(1, min(n, max_cols))
    rows = math.ceil(n / cols)
    fig.set_size_inches(width * cols + 2.5, height * rows + 0.8)
    grid = fig.subplots(rows, cols, squeeze=False)
    flat = [ax for row in grid for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return flat[:n]


def _empty(fig: Any, title: str, out_png: PathLike) -> Written:
    fig.set_size_inches(5, 3)
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title)
    return _save(fig, out_png)


def _save(fig: Any, out_png: PathLike) -> Written:
    png = Path(out_png)
    if png.suffix != ".png":
        raise ValueError(f"output path must end in .png: {png}")
    pdf = png.with_suffix(".pdf")
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(path) as tmp:
            # No creation date in the PDF: a rerun of the same table writes the same bytes.
            meta = {"CreationDate": None} if fmt == "pdf" else {}
            fig.savefig(tmp, format=fmt, dpi=150, metadata=meta)
    return Written(png, pdf)


def _legend(fig: Any, ax: Any, title: str) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, title=title, loc="outside right upper", fontsize="small")


def _variant_axis(ax: Any, variants: list[str]) -> None:
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    ax.set_xlim(-0.6, len(variants) - 0.4)
    ax.set_xlabel("Prompt variant")


def _unique(column: pl.Series) -> list[str]:
    return [str(v) for v in column.unique(maintain_order=True).to_list()]


def _variants(column: pl.Series) -> list[str]:
    variants = _unique(column)
    return sorted(variants, key=lambda v: v != BASE_VARIANT)


def _row(rows: pl.DataFrame, **match: str) -> dict[str, Any] | None:
    hit = rows.filter(pl.all_horizontal([pl.col(k) == v for k, v in match.items()]))
    return hit.row(0, named=True) if hit.height else None


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _colour(i: int) -> Any:
    """The i-th colour of a series (a model, a benchmark), the same i in every figure.

    Glasbey's palette extended from category10 (colorcet): matplotlib's first ten colours, then
    colours chosen to stay distinguishable from all earlier ones (256 in all; tab20 after tab10
    repeated hues from the 11th model on).
    """
    import colorcet

    palette = colorcet.palette["glasbey_category10"]  # hex strings: one colour, never a sequence
    return palette[i % len(palette)]
