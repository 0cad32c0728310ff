"""How much the judges agree (the paper's Table 3): strict agreement, Fleiss' and Cohen's kappa,
Krippendorff's alpha, each with a bootstrap interval over items.

Each judge's verdict on a sample is one of three labels: ``consistent``, ``inconsistent``
(the think settles on another option than the answer) or ``unparseable`` (the think settles on
none, or the judge's reply was unreadable). Samples without an answer letter are left out:
every judge calls them unparseable for the answer's sake, which would inflate agreement.

Per (model, bench), pooled over variants and seeds, and per bench over all models
(``model = "all"``), the table has one ``fleiss`` row over every judge (``agreement`` is the
strict all-judge agreement, ``kappa`` Fleiss' kappa from statsmodels) and one ``cohen`` row per
pair of judges (``agreement`` the share of equal labels, ``kappa`` Cohen's kappa from
scikit-learn); ``alpha`` is Krippendorff's alpha (nominal, the ``krippendorff`` package) of the
row's raters. A coefficient that is undefined (every rating the same label) is null with a ``note``.

Intervals (``_lo``, ``_hi``) resample benchmark items (``cotprobe.stats``, same draws as the
metrics tables): an item's ratings over variants, seeds and, for ``all``, models go together.
The resampled coefficients come from the sums the coefficients are built from
(``stats.fleiss_alpha_strict``, ``stats.cohen_from_sums``), checked against the packages in the
tests.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

import polars as pl

from cotprobe.io import InputError, read_jsonl
from cotprobe.records import original_item

LABELS = ("consistent", "inconsistent", "unparseable")
ALL = "all"
SCHEMA = {
    "model": pl.String,
    "bench": pl.String,
    "raters": pl.String,
    "statistic": pl.String,
    "n": pl.Int64,
    **{c: pl.Float64 for s in ("agreement", "kappa", "alpha") for c in (s, f"{s}_lo", f"{s}_hi")},
    "note": pl.String,
}


def label(row: Mapping[str, Any]) -> str | None:
    """A verdict's label, or None when the generation has no answer letter (not rated)."""
    if row.get("answer_letter") is None:
        return None
    consistent = row.get("consistent")
    return "unparseable" if consistent is None else ("consistent" if consistent else "inconsistent")


def ratings(paths: Mapping[str, str], with_ids: bool = False) -> list[Any]:
    """One row of labels (in the order of ``paths``' judges) per rated sample of one cell.

    With ``with_ids``, ``(id, labels)`` for every sample of the cell, ``labels`` None when not rated.

    Args:
        paths: Judge id -> its verdict file for the cell.

    Raises:
        InputError: The judges' files hold different ids.
    """
    tables = {}
    for judge, path in paths.items():
        rows = read_jsonl(path, required=("id", "answer_letter", "consistent"))
        tables[judge] = {row["id"]: row for row in rows}
    judges = list(paths)
    ids = list(tables[judges[0]])
    for judge in judges[1:]:
        if set(tables[judge]) != set(ids):
            raise InputError(f"{paths[judge]}: ids differ from those of {paths[judges[0]]}")
    out = []
    for i in ids:
        labels = [label(tables[j][i]) for j in judges]
        rated = all(x is not None for x in labels)
        if with_ids:
            out.append((i, labels if rated else None))
        elif rated:
            out.append(labels)
    return out


def _label_counts(table: list[list[str]]):
    """Samples x LABELS counts of a samples x raters table, or (None, why a coefficient is undefined)."""
    import numpy as np

    if not table:
        return None, "no rated sample"
    used = sorted({x for row in table for x in row})
    if len(used) < 2:
        return None, f"undefined: every rating is {used[0]!r}"
    return np.array([[row.count(x) for x in LABELS] for row in table]), None


def fleiss(table: list[list[str]]) -> tuple[float | None, str | None]:
    """Fleiss' kappa of samples x raters labels (statsmodels), or None with the reason."""
    from statsmodels.stats.inter_rater import fleiss_kappa

    counts, why = _label_counts(table)
    return (None, why) if counts is None else (float(fleiss_kappa(counts, method="fleiss")), None)


def alpha(table: list[list[str]]) -> tuple[float | None, str | None]:
    """Krippendorff's alpha (nominal; the ``krippendorff`` package), or None with the reason."""
    import krippendorff

    counts, why = _label_counts(table)
    if counts is None:
        return None, why
    return float(krippendorff.alpha(value_counts=counts, level_of_measurement="nominal")), None


def cohen(a: list[str], b: list[str]) -> tuple[float | None, str | None]:
    """Cohen's kappa of two raters (scikit-learn), or None with the reason."""
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return None, "no rated sample"
    used = sorted(set(a) | set(b))
    if len(used) < 2:
        return None, f"undefined: every rating is {used[0]!r}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(a, b, labels=list(LABELS)))
    return (None, "undefined") if math.isnan(value) else (value, None)


def group_rows(
    model: str,
    bench: str,
    judges: list[str],
    table: Any,
    item: Any = None,
    weights: Any = None,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """The ``fleiss`` row and the pairwise ``cohen`` rows of one group of rated samples.

    Args:
        table: Labels, samples x judges (lists of label names, or an int array of ``LABELS`` indices).
        item: Item index of each row of ``table`` (rows of one item are resampled together).
        weights: ``(n_items, n_resamples)`` multiplicities (``stats.item_weights``); no
            intervals without them.
    """
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import fleiss_kappa

    from cotprobe import stats

    if isinstance(table, np.ndarray):
        codes = table.reshape(-1, len(judges)).astype(np.int64)
    else:
        codes = np.array([[LABELS.index(x) for x in row] for row in table], dtype=np.int64).reshape(
            -1, len(judges)
        )
    n = len(codes)

    def boot(features: np.ndarray):
        if weights is None or n == 0:
            return None
        sums = np.column_stack(
            [
                np.bincount(item, weights=features[:, j], minlength=weights.shape[0])
                for j in range(features.shape[1])
            ]
        )
        return weights.T.astype(np.float64) @ sums

    def bounds(resamples, name: str, defined: bool) -> dict[str, float | None]:
        if resamples is None or not defined:
            return {f"{name}_lo": None, f"{name}_hi": None}
        lo, hi = stats.percentile(resamples, level)
        return {f"{name}_lo": _f(lo[0]), f"{name}_hi": _f(hi[0])}

    def one(raters: list[str], cols: list[int], statistic: str) -> dict[str, Any]:
        sub = codes[:, cols]
        counts = np.stack([(sub == k).sum(axis=1) for k in range(len(LABELS))], axis=1)
        used = np.unique(sub)
        note = (
            "no rated sample"
            if n == 0
            else (None if len(used) > 1 else f"undefined: every rating is {LABELS[used[0]]!r}")
        )
        share = float((counts.max(axis=1) == len(cols)).mean()) if n else None
        a_value = k_value = None
        if note is None:
            a_value = float(krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"))
            if statistic == "fleiss":
                k_value = float(fleiss_kappa(counts, method="fleiss"))
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    k_value = _f(
                        float(cohen_kappa_score(sub[:, 0], sub[:, 1], labels=list(range(len(LABELS)))))
                    )
        sums = boot(stats.agreement_sums(counts, len(cols)))
        res = None if sums is None else stats.fleiss_alpha_strict(sums, len(cols))
        k_res, share_res = (None, None) if res is None else (res[0], res[2])
        if statistic == "cohen" and res is not None:
            k_res, share_res = stats.cohen_from_sums(
                boot(stats.cohen_features(sub[:, 0], sub[:, 1], len(LABELS))), len(LABELS)
            )
        row = {"model": model, "bench": bench, "raters": "+".join(raters), "statistic": statistic, "n": n}
        row |= {"agreement": share, **bounds(share_res, "agreement", share is not None)}
        row |= {"kappa": k_value, **bounds(k_res, "kappa", k_value is not None)}
        row |= {"alpha": a_value, **bounds(None if res is None else res[1], "alpha", a_value is not None)}
        row["note"] = note if note else (None if k_value is not None else "undefined")
        return row

    rows = [one(judges, list(range(len(judges))), "fleiss")]
    for (i, a), (j, b) in combinations(enumerate(judges), 2):
        rows.append(one([a, b], [i, j], "cohen"))
    return rows


def cell_codes(paths: Mapping[str, str]) -> tuple[list[str], Any]:
    """The ids of one cell and its labels ``(n, judges)`` as ``LABELS`` indices (-1: not rated).

    Reads only the fields it needs (polars); a bad file gets the slow reader's precise error.

    Raises:
        InputError: The judges' files hold different ids.
    """
    import numpy as np

    from cotprobe.metrics import _ndjson

    judges = list(paths)
    schema = {"id": pl.String, "answer_letter": pl.String, "consistent": pl.Boolean}
    tables = {j: _ndjson(paths[j], schema, ("id",)) for j in judges}
    ids = tables[judges[0]]["id"].to_list()
    codes = np.empty((len(ids), len(judges)), np.int64)
    for k, judge in enumerate(judges):
        t = tables[judge]
        if k and set(t["id"].to_list()) != set(ids):
            raise InputError(f"{paths[judge]}: ids differ from those of {paths[judges[0]]}")
        t = pl.DataFrame({"id": ids}).join(t, on="id", how="left", maintain_order="left")
        codes[:, k] = t.select(
            pl.when(pl.col("answer_letter").is_null()).then(-1)
            .when(pl.col("consistent").is_null()).then(LABELS.index("unparseable"))
            .when(pl.col("consistent")).then(LABELS.index("consistent"))
            .otherwise(LABELS.index("inconsistent"))
        ).to_series().to_numpy()  # fmt: skip
    return ids, codes


def _f(x: Any) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _item_weights(ids: list[str], key: str, boot: Any):
    """Bootstrap multiplicities per id that resample original items with all their rotations."""
    import numpy as np

    from cotprobe import stats

    seen: dict[str, int] = {}
    group = np.array([seen.setdefault(original_item(i), len(seen)) for i in ids], dtype=np.int64)
    return stats.item_weights(len(seen), key, boot)[group]


def agreement_rows(
    entries: Iterable[Mapping[str, Any]], judges: list[str], analysis: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """The agreement table over cells.

    Args:
        entries: Cell entries (``cotprobe.workflow.cell_entries``) of every judge; only those
            of ``judges`` are read.
        judges: The judges compared (two or more).
        analysis: The config slice ``analysis`` (its ``bootstrap``).

    Returns:
        Columns ``model, bench, raters, statistic, n`` and ``agreement``, ``kappa``, ``alpha``
        each with ``_lo``/``_hi``, then ``note`` (see the module docstring); per (model, bench)
        first, then the ``all``-model rows of each bench.
    """
    from cotprobe import stats

    if len(judges) < 2:
        raise ValueError(f"agreement needs two or more judges, got {judges}")
    boot = stats.Bootstrap.from_config(analysis)
    cells: dict[tuple[str, str, str, int], dict[str, str]] = {}
    for e in entries:
        if e["judge"] in judges:
            key = (e["model"], e["bench"], e["variant"], int(e["seed"]))
            cells.setdefault(key, {})[e["judge"]] = e["verdicts"]
    import numpy as np

    parts: dict[tuple[str, str], list[tuple[list[str], Any]]] = {}
    ids: dict[str, set[str]] = {}
    for (model, bench, variant, seed), paths in cells.items():
        lacking = [j for j in judges if j not in paths]
        if lacking:
            raise InputError(f"no verdicts of judge {lacking[0]!r} for {model}/{bench}/{variant}/seed{seed}")
        cell_ids, codes = cell_codes({j: paths[j] for j in judges})
        ids.setdefault(bench, set()).update(cell_ids)
        rated = (codes >= 0).all(axis=1)
        part = ([i for i, r in zip(cell_ids, rated) if r], codes[rated])
        parts.setdefault((model, bench), []).append(part)
        parts.setdefault((ALL, bench), []).append(part)
    # The bench's items: every id of its cells, as in the metrics tables (same draws).
    items = {bench: sorted(found) for bench, found in ids.items()}
    # Rotations of one item (ids <item>~<k>) are drawn together, as in the metrics tables.
    weights = {b: _item_weights(ids, b, boot) for b, ids in items.items()}
    index = {b: {i: k for k, i in enumerate(ids)} for b, ids in items.items()}
    rows = []
    for (model, bench), group in sorted(parts.items(), key=lambda kv: (kv[0][0] == ALL, kv[0])):
        item = np.array([index[bench][i] for ids_, _ in group for i in ids_], dtype=np.int64)
        codes = np.vstack([c for _, c in group]) if group else np.empty((0, len(judges)), np.int64)
        rows.extend(group_rows(model, bench, judges, codes, item, weights[bench], boot.level))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")
