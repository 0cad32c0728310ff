"""How much the judges agree (the paper's Table 3): strict agreement, Fleiss' and Cohen's kappa.

Each judge's verdict on a sample is one of three labels: ``consistent``, ``inconsistent``
(the think settles on another option than the answer) or ``unparseable`` (the think settles on
none, or the judge's reply was unreadable). Samples without an answer letter are left out:
every judge calls them unparseable for the answer's sake, which would inflate agreement.

Per (model, bench), pooled over variants and seeds, and per bench over all models
(``model = "all"``), the table has one ``fleiss`` row over every judge (``agreement`` is the
strict all-judge agreement, ``kappa`` Fleiss' kappa from statsmodels) and one ``cohen`` row per
pair of judges (``agreement`` the share of equal labels, ``kappa`` Cohen's kappa from
scikit-learn). A kappa that is undefined (every rating the same label) is null with a ``note``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any

import polars as pl

from cotprobe.io import InputError, read_jsonl

LABELS = ("consistent", "inconsistent", "unparseable")
ALL = "all"
SCHEMA = {
    "model": pl.String,
    "bench": pl.String,
    "raters": pl.String,
    "statistic": pl.String,
    "n": pl.Int64,
    "agreement": pl.Float64,
    "kappa": pl.Float64,
    "note": pl.String,
}


def label(row: Mapping[str, Any]) -> str | None:
    """A verdict's label, or None when the generation has no answer letter (not rated)."""
    if row.get("answer_letter") is None:
        return None
    consistent = row.get("consistent")
    return "unparseable" if consistent is None else ("consistent" if consistent else "inconsistent")


def ratings(paths: Mapping[str, str]) -> list[list[str]]:
    """One row of labels (in the order of ``paths``' judges) per rated sample of one cell.

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
        if all(x is not None for x in labels):
            out.append(labels)
    return out


def fleiss(table: list[list[str]]) -> tuple[float | None, str | None]:
    """Fleiss' kappa of samples x raters labels (statsmodels), or None with the reason."""
    import numpy as np
    from statsmodels.stats.inter_rater import fleiss_kappa

    if not table:
        return None, "no rated sample"
    used = sorted({x for row in table for x in row})
    if len(used) < 2:
        return None, f"undefined: every rating is {used[0]!r}"
    counts = np.array([[row.count(x) for x in LABELS] for row in table])
    return float(fleiss_kappa(counts, method="fleiss")), None


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


def group_rows(model: str, bench: str, judges: list[str], table: list[list[str]]) -> list[dict[str, Any]]:
    """The ``fleiss`` row and the pairwise ``cohen`` rows of one group of rated samples."""
    n = len(table)
    kappa, note = fleiss(table)
    rows = [
        {
            "model": model,
            "bench": bench,
            "raters": "+".join(judges),
            "statistic": "fleiss",
            "n": n,
            "agreement": sum(len(set(r)) == 1 for r in table) / n if n else None,
            "kappa": kappa,
            "note": note,
        }
    ]
    for (i, a), (j, b) in combinations(enumerate(judges), 2):
        col_a, col_b = [r[i] for r in table], [r[j] for r in table]
        kappa, note = cohen(col_a, col_b)
        rows.append(
            {
                "model": model,
                "bench": bench,
                "raters": f"{a}+{b}",
                "statistic": "cohen",
                "n": n,
                "agreement": sum(x == y for x, y in zip(col_a, col_b)) / n if n else None,
                "kappa": kappa,
                "note": note,
            }
        )
    return rows


def agreement_rows(entries: Iterable[Mapping[str, Any]], judges: list[str]) -> pl.DataFrame:
    """The agreement table over cells.

    Args:
        entries: Cell entries (``cotprobe.workflow.cell_entries``) of every judge; only those
            of ``judges`` are read.
        judges: The judges compared (two or more).

    Returns:
        Columns ``model, bench, raters, statistic, n, agreement, kappa, note`` (see the module
        docstring); per (model, bench) first, then the ``all``-model rows of each bench.
    """
    if len(judges) < 2:
        raise ValueError(f"agreement needs two or more judges, got {judges}")
    cells: dict[tuple[str, str, str, int], dict[str, str]] = {}
    for e in entries:
        if e["judge"] in judges:
            cells.setdefault((e["model"], e["bench"], e["variant"], int(e["seed"])), {})[e["judge"]] = e[
                "verdicts"
            ]
    groups: dict[tuple[str, str], list[list[str]]] = {}
    for (model, bench, _, _), paths in cells.items():
        lacking = [j for j in judges if j not in paths]
        if lacking:
            raise InputError(f"no verdicts of judge {lacking[0]!r} for {model}/{bench}")
        table = ratings({j: paths[j] for j in judges})
        groups.setdefault((model, bench), []).extend(table)
        groups.setdefault((ALL, bench), []).extend(table)
    rows = []
    for (model, bench), table in sorted(groups.items(), key=lambda kv: (kv[0][0] == ALL, kv[0])):
        rows.extend(group_rows(model, bench, judges, table))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")
