"""Training curves: the evaluation's cell metrics of every saved step, per run, seed and variant.

Step 0 of every seed is the run's base model (one evaluation shared by all seeds). Metrics are
the seed summary's (``cotprobe.metrics.summary_rows``: evaluation seeds pooled, with item-level
bootstrap intervals ``_lo``/``_hi``): ``accuracy``, ``mean_entropy`` (letter entropy),
``mean_p_correct``, ``parse_ok`` and ``consistency``, the share of samples whose think settles on
the answer given (consistent correct + consistent incorrect; unparseable counts as not consistent).

Reward-hacking diagnostics, read from the thinks of the parse stage (``results/parsed``; judge-
independent, evaluation seeds pooled), beside them:

- ``think_chars``: mean length of a think (characters; a missing think counts as 0);
- ``templated_share``: share of thinks whose opening (first ``OPENING_WORDS`` words, lower-cased)
  is also another think's opening in the cell; near 1 when the model writes one template;
- ``distinct_2``: distinct word bigrams / all word bigrams over the cell's thinks (distinct-n);
  low when thinks repeat each other;
- ``think_is_answer``: share of thinks that only restate the answer block (the same text once
  case, spacing and punctuation are ignored), a think that cannot disagree with its answer.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from cotprobe.metrics import BASE_VARIANT

PathLike = str | os.PathLike
CURVE_METRICS = ("accuracy", "mean_entropy", "consistency", "mean_p_correct", "parse_ok")
PLOTTED = (
    ("accuracy", "Accuracy"),
    ("mean_entropy", "Letter entropy (nats)"),
    ("consistency", "Think ≡ answer"),
    ("think_chars", "Think length (chars)"),
    ("templated_share", "Templated thinks"),
)
DIAGNOSTICS = ("think_chars", "templated_share", "distinct_2", "think_is_answer")
OPENING_WORDS = 8
_WORD = re.compile(r"\w+")


def think_diagnostics(rows: Iterable[Mapping[str, Any]]) -> dict[str, float | None]:
    """The diagnostics (module docstring) of parsed rows (``think``, ``answer_text``); None when empty."""
    thinks, answers = [], []
    for r in rows:
        thinks.append(r.get("think") or "")
        answers.append(r.get("answer_text"))
    if not thinks:
        return dict.fromkeys(DIAGNOSTICS)
    words = [_WORD.findall(t.lower()) for t in thinks]
    openings = collections.Counter(tuple(w[:OPENING_WORDS]) for w in words if w)
    templated = sum(1 for w in words if w and openings[tuple(w[:OPENING_WORDS])] > 1)
    bigrams = [(w[i], w[i + 1]) for w in words for i in range(len(w) - 1)]
    restates = sum(
        1
        for w, a in zip(words, answers, strict=True)
        if w and a is not None and w == _WORD.findall(a.lower())
    )
    return {
        "think_chars": sum(len(t) for t in thinks) / len(thinks),
        "templated_share": templated / len(thinks),
        "distinct_2": len(set(bigrams)) / len(bigrams) if bigrams else None,
        "think_is_answer": restates / len(thinks),
    }


def diagnostic_rows(runs: dict[str, Any], axes: Mapping[str, list], read) -> pl.DataFrame:
    """One row per (run, train seed, step, bench, variant): ``think_diagnostics`` of the parsed rows
    of every evaluation seed. ``read(model, bench, variant, seed)`` returns a cell's parsed rows."""
    out = []
    for run, spec in runs.items():
        seeds = sorted({m["seed"] for m in spec["models"]})
        points = [(s, 0, spec["base"]) for s in seeds] + [
            (m["seed"], m["step"], m["model"]) for m in spec["models"]
        ]
        for seed, step, model in points:
            for bench in axes["benchmarks"]:
                for variant in (axes.get("only") or {}).get(model, axes["variants"]):
                    rows = [r for s in axes["seeds"] for r in read(model, bench, variant, s)]
                    out.append({"run": run, "train_seed": seed, "step": step, "bench": bench, "variant": variant,
                                **think_diagnostics(rows)})  # fmt: skip
    schema = {"run": pl.String, "train_seed": pl.Int64, "step": pl.Int64, "bench": pl.String,
              "variant": pl.String, **dict.fromkeys(DIAGNOSTICS, pl.Float64)}  # fmt: skip
    return pl.DataFrame(out, schema=schema)


def curve_rows(
    summary: pl.DataFrame, runs: dict[str, Any], diagnostics: pl.DataFrame | None = None
) -> pl.DataFrame:
    """One row per (run, train seed, step, bench, variant, judge).

    Args:
        summary: The seed summary table.
        runs: run -> ``{"base": model id, "models": [{"seed", "step", "model"}, ...]}`` (steps > 0).
        diagnostics: ``diagnostic_rows``, joined in (the same for every judge); None leaves them out.

    Returns:
        Columns ``run, train_seed, step, model, bench, variant, judge, n_eval_seeds``, each of
        ``CURVE_METRICS`` with ``_lo``/``_hi`` and, with ``diagnostics``, each of ``DIAGNOSTICS``;
        sorted by run, bench, judge, variant, seed, step.
    """
    table = _curve_rows(summary, runs)
    if diagnostics is None:
        return table
    keys = ["run", "train_seed", "step", "bench", "variant"]
    return table.join(diagnostics.select(*keys, *DIAGNOSTICS), on=keys, how="left").sort(
        ["run", "bench", "judge", "variant", "train_seed", "step"]
    )


def _curve_rows(summary: pl.DataFrame, runs: dict[str, Any]) -> pl.DataFrame:
    values = [c for m in CURVE_METRICS for c in (m, f"{m}_lo", f"{m}_hi")]
    parts = []
    for run, spec in runs.items():
        seeds = sorted({m["seed"] for m in spec["models"]})
        points = [(s, 0, spec["base"]) for s in seeds] + [
            (m["seed"], m["step"], m["model"]) for m in spec["models"]
        ]
        for seed, step, model in points:
            rows = summary.filter(pl.col("model") == model)
            if rows.is_empty():
                continue
            parts.append(
                rows.select(
                    pl.lit(run).alias("run"),
                    pl.lit(seed, dtype=pl.Int64).alias("train_seed"),
                    pl.lit(step, dtype=pl.Int64).alias("step"),
                    pl.lit(model).alias("model"),
                    "bench", "variant", "judge",
                    pl.col("n_seeds").cast(pl.Int64).alias("n_eval_seeds"),
                    *[pl.col(c).cast(pl.Float64) for c in values],
                )
            )  # fmt: skip
    columns = ["run", "train_seed", "step", "model", "bench", "variant", "judge", "n_eval_seeds", *values]
    if not parts:
        schema = {c: pl.String for c in columns[:8]} | {c: pl.Float64 for c in values}
        schema.update(train_seed=pl.Int64, step=pl.Int64, n_eval_seeds=pl.Int64)
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).select(columns).sort(["run", "bench", "judge", "variant", "train_seed", "step"])


def plot_curves(curves: pl.DataFrame, out_png: PathLike, judge: str | None = None):
    """Accuracy, letter entropy, consistency and (when in ``curves``) think length and templated
    share against the step, one panel column per variant.

    One line per (run, train seed) with its 95% bootstrap band over items; each row of panels
    shares its y-axis, so a tiny move in one variant does not look like a large one. Benchmarks
    are averaged (the band edges too, which widens rather than narrows the band); ``judge``'s
    consistency is drawn (default: the first judge; the workflow passes the one the other
    figures draw, the ensemble when there is one).
    """
    from cotprobe.figures import _colour, _empty, _figure, _save

    fig = _figure()
    if curves.is_empty():
        return _empty(fig, "Training curves", out_png)
    curves = curves.filter(pl.col("judge") == (judge or curves["judge"][0]))
    plotted = [(m, label) for m, label in PLOTTED if m in curves.columns]
    cols = [c for m, _ in plotted for c in (m, f"{m}_lo", f"{m}_hi") if c in curves.columns]
    per_seed = curves.group_by(["run", "train_seed", "step", "variant"]).agg(
        *[pl.col(c).mean() for c in cols]
    )
    variants = sorted(per_seed["variant"].unique().to_list(), key=lambda v: (v != BASE_VARIANT, v))
    runs = sorted(per_seed["run"].unique().to_list())
    fig.set_size_inches(2.6 * len(variants) + 2.5, 2.3 * len(plotted) + 0.8)
    grid = fig.subplots(len(plotted), len(variants), squeeze=False, sharex=True, sharey="row")
    styles = ("-", "--", ":", "-.")
    for col, variant in enumerate(variants):
        for row, (metric, label) in enumerate(plotted):
            ax = grid[row][col]
            for i, run in enumerate(runs):
                data = per_seed.filter((pl.col("variant") == variant) & (pl.col("run") == run)).sort("step")
                for k, seed in enumerate(sorted(data["train_seed"].unique().to_list())):
                    line = data.filter(pl.col("train_seed") == seed)
                    if f"{metric}_lo" in line.columns:
                        band = line.drop_nulls([f"{metric}_lo", f"{metric}_hi"])
                        ax.fill_between(
                            band["step"], band[f"{metric}_lo"], band[f"{metric}_hi"],
                            color=_colour(i), alpha=0.12, linewidth=0,
                        )  # fmt: skip
                    ax.plot(
                        line["step"], line[metric], color=_colour(i), linestyle=styles[k % len(styles)],
                        linewidth=1.4, label=f"{run} seed {seed}" if col == 0 and row == 0 else None,
                    )  # fmt: skip
            if row == 0:
                ax.set_title(variant, fontsize="small")
            if col == 0:
                ax.set_ylabel(label)
            if row == len(plotted) - 1:
                ax.set_xlabel("step")
    handles, labels = grid[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, title="run, training seed (band: 95% interval)",
            loc="outside right upper", fontsize="small",
        )  # fmt: skip
    return _save(fig, out_png)
