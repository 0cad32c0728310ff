"""Metrics tables: per cell, averaged over seeds, and the AUROC of base-prompt confidence.

A *cell* is one (model, bench, variant, seed, judge). Its files are the stage files listed in
``cotprobe.records``; an *entry* names them::

    {"model": ..., "bench": ..., "variant": ..., "seed": 0, "judge": ...,
     "prompts": path, "generations": path, "logits": path, "verdicts": path}

Tables are polars DataFrames; ``write_csv`` writes one atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from cotprobe.io import InputError, atomic_path, read_jsonl
from cotprobe.records import PARSE_OK, QUADRANTS, UNPARSEABLE

BASE_VARIANT = "base"
KEYS = ("model", "bench", "variant", "seed", "judge")
SHARES = tuple(f"share_{q}" for q in (*QUADRANTS, UNPARSEABLE))
METRICS = ("accuracy", "parse_ok", "mean_entropy", "mean_p_correct", "mean_p_target", *SHARES)
# Metrics that are a share of samples: a Wilson interval applies when there is one seed.
PROPORTIONS = ("accuracy", "parse_ok", *SHARES)
# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (scipy-free fallback).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959963984540054

Entry = Mapping[str, Any]
PathLike = str | os.PathLike


def cell_rows(entries: Iterable[Entry]) -> pl.DataFrame:
    """One row of metrics per cell.

    Args:
        entries: Cells with their four files (see the module docstring).

    Returns:
        Columns ``model, bench, variant, seed, judge, n, accuracy, parse_ok, mean_entropy,
        mean_p_correct, mean_p_target, share_consistent_correct, share_inconsistent_correct,
        share_consistent_incorrect, share_inconsistent_incorrect, share_unparseable``.
        ``accuracy`` counts a missing answer letter as incorrect; ``parse_ok`` is the share
        of generations with parse status ``ok``; ``mean_p_target`` is null when the variant
        pushes nowhere (every ``p_target`` null). The five shares sum to 1.

    Raises:
        InputError: A file is missing or malformed, or the files of a cell hold different ids.
    """
    rows = []
    for entry in entries:
        prompts, generations = _answers(entry)
        logits = _logits(entry)
        verdicts = _by_id(entry["verdicts"], read_jsonl(entry["verdicts"], required=("id", "quadrant")))
        _same_ids(entry, prompts=prompts, generations=generations, logits=logits, verdicts=verdicts)
        n = len(prompts)
        quadrants = [v["quadrant"] for v in verdicts.values()]
        unknown = sorted(set(quadrants) - {*QUADRANTS, UNPARSEABLE})
        if unknown:
            raise InputError(f"{entry['verdicts']}: unknown quadrant {unknown[0]!r}")
        # Rows without letter scores (an API that gives no logprobs) are counted, not averaged.
        scored = [r for r in logits.values() if _scored(r)]
        p_target = [r["p_target"] for r in scored if r["p_target"] is not None]
        rows.append(
            {
                **_keys(entry),
                "n": n,
                "n_scored": len(scored),
                "accuracy": _mean([generations[i]["answer_letter"] == prompts[i]["answer"] for i in prompts]),
                "parse_ok": _mean([g["parse_status"] == PARSE_OK for g in generations.values()]),
                "mean_entropy": _mean([r["entropy"] for r in scored]),
                "mean_p_correct": _mean([r["p_correct"] for r in scored]),
                "mean_p_target": _mean(p_target),
                **{f"share_{q}": (quadrants.count(q) / n if n else None) for q in (*QUADRANTS, UNPARSEABLE)},
            }
        )
    schema = {
        "model": pl.String,
        "bench": pl.String,
        "variant": pl.String,
        "seed": pl.Int64,
        "judge": pl.String,
        "n": pl.Int64,
        "n_scored": pl.Int64,
        **dict.fromkeys(METRICS, pl.Float64),
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def summary_rows(cells: pl.DataFrame) -> pl.DataFrame:
    """Average the cell metrics over seeds, with 95% intervals.

    Intervals: with two or more seeds, a t-interval over the seed means
    (``mean ± t(0.975, k-1) · sd / sqrt(k)``, k the seeds with a value), clipped to [0, 1]
    for shares and probabilities and at 0 for entropy. With one seed, a Wilson score interval
    over that seed's ``n`` samples for the shares of samples (``accuracy``, ``parse_ok``,
    ``share_*``) and null for the means (``mean_entropy``, ``mean_p_correct``,
    ``mean_p_target``), whose per-sample spread the cell table does not keep.

    Args:
        cells: The output of ``cell_rows``.

    Returns:
        Columns ``model, bench, variant, judge, n_seeds, n`` (samples over all seeds), then
        ``<metric>, <metric>_lo, <metric>_hi`` for each metric of ``cell_rows`` in its order.
        Rows are sorted by model, bench, judge and variant (``base`` first).
    """
    group_keys = ["model", "bench", "variant", "judge"]
    rows = []
    for key, group in cells.group_by(group_keys, maintain_order=True):
        row: dict[str, Any] = dict(zip(group_keys, key))
        row["n_seeds"] = group.height
        row["n"] = int(group["n"].sum())
        for metric in METRICS:
            values = [v for v in group[metric].to_list() if v is not None and not math.isnan(v)]
            interval = _interval(values, metric)
            if interval is None and len(values) == 1 and group.height == 1 and metric in PROPORTIONS:
                interval = wilson(values[0], int(group["n"][0]))
            row[metric] = sum(values) / len(values) if values else None
            row[f"{metric}_lo"], row[f"{metric}_hi"] = interval if interval else (None, None)
        rows.append(row)
    schema: dict[str, Any] = {k: pl.String for k in group_keys} | {"n_seeds": pl.Int64, "n": pl.Int64}
    for metric in METRICS:
        schema |= dict.fromkeys([metric, f"{metric}_lo", f"{metric}_hi"], pl.Float64)
    table = pl.DataFrame(rows, schema=schema, orient="row")
    return _sorted(table, ["model", "bench", "judge"])


def auroc_rows(entries: Iterable[Entry], base: str = BASE_VARIANT) -> pl.DataFrame:
    """How well base-prompt confidence predicts staying correct under each perturbation.

    For every model, bench and perturbing variant (every variant but ``base``), each sample is
    paired with its base-prompt twin by (seed, id), seeds pooled. The label is "answered
    correctly under the variant"; the scores are ``p_correct`` (P_base) and minus the letter
    entropy (−H), both on the base prompt. Judges do not matter here: entries that differ
    only by judge are read once.

    Args:
        entries: Cells with their files (``logits`` of the base cells; ``prompts`` and
            ``generations`` of the others).
        base: The unperturbed variant.

    Returns:
        Columns ``model, bench, variant, n, n_positive, auroc_p_base, auroc_neg_entropy,
        note``: the AUROCs are null, with a ``note``, when only one class is present;
        ``note`` is null otherwise.

    Raises:
        InputError: No base cell for a (model, bench, seed) that has perturbed cells, or a
            perturbed cell's ids differ from its base cell's.
    """
    from sklearn.metrics import roc_auc_score

    cells: dict[tuple[str, str, str, int], Entry] = {}
    for entry in entries:
        k = _keys(entry, KEYS[:4])
        cells.setdefault((k["model"], k["bench"], k["variant"], k["seed"]), entry)
    pooled: dict[tuple[str, str, str], tuple[list[bool], list[float], list[float]]] = {}
    base_logits: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for (model, bench, variant, seed), entry in cells.items():
        if variant == base:
            continue
        if (model, bench, base, seed) not in cells:
            raise InputError(f"no {base!r} cell for {model}/{bench}/seed{seed}, needed by {variant!r}")
        if (model, bench, seed) not in base_logits:
            base_logits[model, bench, seed] = _logits(cells[model, bench, base, seed])
        scores = base_logits[model, bench, seed]
        prompts, generations = _answers(entry)
        _same_ids(entry, prompts=prompts, generations=generations)
        if set(prompts) != set(scores):
            raise InputError(
                f"ids of {entry['prompts']} differ from those of the base logits "
                f"{cells[model, bench, base, seed]['logits']}"
            )
        labels, p_base, neg_h = pooled.setdefault((model, bench, variant), ([], [], []))
        for i in prompts:
            if not _scored(scores[i]):  # no base letter scores for this sample: nothing to rank by
                continue
            labels.append(generations[i]["answer_letter"] == prompts[i]["answer"])
            p_base.append(scores[i]["p_correct"])
            neg_h.append(-scores[i]["entropy"])
    rows = []
    for (model, bench, variant), (labels, p_base, neg_h) in pooled.items():
        positive = sum(labels)
        row = {"model": model, "bench": bench, "variant": variant, "n": len(labels), "n_positive": positive}
        if 0 < positive < len(labels):
            row |= {
                "auroc_p_base": float(roc_auc_score(labels, p_base)),
                "auroc_neg_entropy": float(roc_auc_score(labels, neg_h)),
                "note": None,
            }
        else:
            which = "every sample stays correct" if positive else "no sample stays correct"
            row |= {"auroc_p_base": None, "auroc_neg_entropy": None, "note": f"one class only: {which}"}
        rows.append(row)
    schema = {
        "model": pl.String,
        "bench": pl.String,
        "variant": pl.String,
        "n": pl.Int64,
        "n_positive": pl.Int64,
        "auroc_p_base": pl.Float64,
        "auroc_neg_entropy": pl.Float64,
        "note": pl.String,
    }
    return _sorted(pl.DataFrame(rows, schema=schema, orient="row"), ["model", "bench"], base)


def write_csv(table: pl.DataFrame, path: PathLike) -> None:
    """Write a table as CSV atomically (nulls as empty fields)."""
    with atomic_path(path) as tmp:
        table.write_csv(tmp)


class Interval(NamedTuple):
    lo: float
    hi: float


def wilson(share: float, n: int, z: float = _Z975) -> Interval | None:
    """Wilson score interval of a share of ``n`` samples (None when ``n`` is 0)."""
    if n <= 0:
        return None
    denom = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def t_quantile(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    try:
        from scipy.stats import t
    except ImportError:
        return _T975[df - 1] if df <= len(_T975) else _Z975 + 2.4 / df  # within 0.002 beyond 30
    return float(t.ppf(0.975, df))


def _interval(values: list[float], metric: str) -> Interval | None:
    k = len(values)
    if k < 2:
        return None
    mean = sum(values) / k
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    half = t_quantile(k - 1) * sd / math.sqrt(k)
    lo, hi = mean - half, mean + half
    if metric != "mean_entropy":
        hi = min(hi, 1.0)
    return Interval(max(lo, 0.0), hi)


def _sorted(table: pl.DataFrame, keys: list[str], base: str = BASE_VARIANT) -> pl.DataFrame:
    """Sort by ``keys``, then variants in the paper's order (``base`` first; unknown names last)."""
    from cotprobe.variants import VARIANT_NAMES

    rank = {name: i for i, name in enumerate([base, *[v for v in VARIANT_NAMES if v != base]])}
    return (
        table.with_columns(pl.col("variant").replace_strict(rank, default=len(rank)).alias("_rank"))
        .sort([*keys, "_rank", "variant"])
        .drop("_rank")
    )


def _keys(entry: Entry, keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    missing = [k for k in keys if k not in entry]
    if missing:
        raise InputError(f"cell entry {dict(entry)!r} lacks {', '.join(missing)}")
    return {k: (int(entry[k]) if k == "seed" else str(entry[k])) for k in keys}


def _scored(row: dict[str, Any]) -> bool:
    """Whether a logits row holds letter scores (not an explicit missing value)."""
    h = row.get("entropy")
    return h is not None and not math.isnan(h)


def _mean(values: list[Any]) -> float | None:
    return sum(values) / len(values) if values else None


def _by_id(path: PathLike, rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["id"] in out:
            raise InputError(f"{path}: duplicate id {row['id']!r}")
        out[row["id"]] = row
    return out


def _answers(entry: Entry) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    prompts = _by_id(entry["prompts"], read_jsonl(entry["prompts"], required=("id", "answer")))
    generations = _by_id(
        entry["generations"],
        read_jsonl(entry["generations"], required=("id", "answer_letter", "parse_status")),
    )
    return prompts, generations


def _logits(entry: Entry) -> dict[str, dict[str, Any]]:
    path = Path(entry["logits"])
    if not path.exists():
        raise InputError(f"{path}: file not found")
    table = pl.read_parquet(path)
    missing = [c for c in ("id", "entropy", "p_correct", "p_target") if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r}")
    return _by_id(path, table.select("id", "entropy", "p_correct", "p_target").iter_rows(named=True))


def _same_ids(entry: Entry, **tables: dict[str, Any]) -> None:
    reference = set(tables["prompts"])
    problems = []
    for name, table in tables.items():
        lacks, extra = sorted(reference - set(table)), sorted(set(table) - reference)
        if lacks:
            problems.append(f"{entry[name]} lacks id {lacks[0]!r} ({len(lacks)} in all)")
        if extra:
            problems.append(
                f"{entry[name]} has id {extra[0]!r} not in {entry['prompts']} ({len(extra)} in all)"
            )
    if problems:
        raise InputError("ids differ across the files of a cell: " + "; ".join(problems))
