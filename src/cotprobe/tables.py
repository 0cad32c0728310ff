"""The paper's tables, formatted from the metric CSVs: value [95% interval] in each cell.

* ``table1_accuracy``: base-prompt accuracy (%), model x benchmark (the paper's Table 1);
* ``table_delta``: Δaccuracy against base (points), model x variant, mean over benchmarks;
* ``table_auroc``: AUROC of P_base and of −H and their difference, model, pooled over
  benchmarks and perturbing variants (the paper's headline);
* ``table3_agreement``: judge agreement per benchmark, all models (the paper's Table 3);
* ``table_abstain``: the abstain option under each attack: abstain rate (%) and accuracy (%) per
  (model, bench, abstain variant), beside the accuracy of the same prompt without the option;
* ``audit``: the per-cell audit, cells over ``analysis.max_unparsed`` flagged.

Table 1 adds a ``<bench> (circular)`` column for a benchmark with rotations (``accuracy_circular``:
an item counts only if every rotation of it is correct), beside the raw accuracy.

``tables.html`` shows them all on one page for the Snakemake report.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from cotprobe.io import atomic_path
from cotprobe.metrics import ALL, BASE_VARIANT, _sorted, write_csv
from cotprobe.specs import MAX_UNPARSED

log = logging.getLogger("cotprobe.tables")
PathLike = str | os.PathLike
NAMES = ("table1_accuracy", "table_delta", "table_auroc", "table3_agreement", "table_abstain", "audit")
TITLES = {
    "table1_accuracy": "Table 1: accuracy on the base prompt (%), 95% interval",
    "table_delta": "Δ accuracy against base (points), mean over benchmarks, 95% paired interval",
    "table_auroc": "AUROC for staying correct under perturbation (benchmarks and variants pooled)",
    "table3_agreement": "Table 3: judge agreement per benchmark (all models)",
    "table_abstain": "Abstention: abstain rate and accuracy (%) with the abstain option, and accuracy without it",
    "audit": "Per-cell audit",
}


def fmt(value: Any, lo: Any, hi: Any, scale: float = 1.0, digits: int = 1, sign: bool = False) -> str | None:
    """``value [lo, hi]`` scaled and rounded; None when the value is missing."""
    if value is None:
        return None
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    out = f.format(value * scale)
    if lo is not None and hi is not None:
        out += f" [{f.format(lo * scale)}, {f.format(hi * scale)}]"
    return out


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema_length=None) if path.exists() else pl.DataFrame()


def _wide(rows: list[dict[str, Any]], index: str, columns: list[str]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={index: pl.String} | dict.fromkeys(columns, pl.String), orient="row")


def table1(summary: pl.DataFrame) -> pl.DataFrame:
    base = summary.filter(pl.col("variant") == BASE_VARIANT)
    if base.is_empty():
        return _wide([], "model", [])
    base = base.filter(pl.col("judge") == base["judge"][0])
    benches = base["bench"].unique(maintain_order=True).to_list()
    rotated = set()
    if "n_original_items" in base.columns:
        rotated = set(base.filter(pl.col("n_original_items") < pl.col("n_items"))["bench"].to_list())
    columns = [c for b in benches for c in ([b, f"{b} (circular)"] if b in rotated else [b])]
    rows = []
    for model in base["model"].unique(maintain_order=True).to_list():
        row: dict[str, Any] = {"model": model}
        for bench in benches:
            hit = base.filter((pl.col("model") == model) & (pl.col("bench") == bench))
            r = hit.row(0, named=True) if hit.height else {}
            row[bench] = fmt(r.get("accuracy"), r.get("accuracy_lo"), r.get("accuracy_hi"), 100)
            if bench in rotated:
                row[f"{bench} (circular)"] = fmt(
                    r.get("accuracy_circular"),
                    r.get("accuracy_circular_lo"),
                    r.get("accuracy_circular_hi"),
                    100,
                )
        rows.append(row)
    return _wide(rows, "model", columns)


ABSTAIN_COLUMNS = ["bench", "variant", "abstain_rate", "accuracy", "without", "accuracy_without"]


def table_abstain(summary: pl.DataFrame) -> pl.DataFrame:
    """One row per (model, bench, variant) that offers the abstain option; ``without`` names the
    same prompt without it (``wrong_caption`` for ``wrong_caption_abstain``, ``base`` for ``abstain``)."""
    schema = {"model": pl.String} | dict.fromkeys(ABSTAIN_COLUMNS, pl.String)
    if summary.is_empty() or "abstain_rate" not in summary.columns:
        return pl.DataFrame(schema=schema)
    summary = summary.filter(pl.col("judge") == summary["judge"][0])
    rows = []
    for r in summary.filter(pl.col("abstain_rate").is_not_null()).iter_rows(named=True):
        without = r["variant"].removesuffix("_abstain") if r["variant"] != "abstain" else BASE_VARIANT
        hit = summary.filter(
            (pl.col("model") == r["model"]) & (pl.col("bench") == r["bench"]) & (pl.col("variant") == without)
        )
        w = hit.row(0, named=True) if hit.height else {}
        rows.append(
            {
                "model": r["model"],
                "bench": r["bench"],
                "variant": r["variant"],
                "abstain_rate": fmt(r["abstain_rate"], r["abstain_rate_lo"], r["abstain_rate_hi"], 100),
                "accuracy": fmt(r["accuracy"], r["accuracy_lo"], r["accuracy_hi"], 100),
                "without": without if hit.height else None,
                "accuracy_without": fmt(w.get("accuracy"), w.get("accuracy_lo"), w.get("accuracy_hi"), 100),
            }
        )
    return pl.DataFrame(rows, schema=schema, orient="row")


def table_delta(effects: pl.DataFrame) -> pl.DataFrame:
    pooled = _sorted(effects.filter(pl.col("bench") == ALL), ["model"]) if not effects.is_empty() else effects
    if pooled.is_empty():
        return _wide([], "model", [])
    variants = pooled["variant"].unique(maintain_order=True).to_list()
    rows = []
    for model in pooled["model"].unique(maintain_order=True).to_list():
        row: dict[str, Any] = {"model": model}
        for variant in variants:
            hit = pooled.filter((pl.col("model") == model) & (pl.col("variant") == variant))
            r = hit.row(0, named=True) if hit.height else {}
            row[variant] = fmt(
                r.get("delta_accuracy"),
                r.get("delta_accuracy_lo"),
                r.get("delta_accuracy_hi"),
                100,
                sign=True,
            )
        rows.append(row)
    return _wide(rows, "model", variants)


def table_auroc(auroc: pl.DataFrame) -> pl.DataFrame:
    columns = {"P_base": "auroc_p_base", "-H": "auroc_neg_entropy", "difference": "auroc_diff"}
    if auroc.is_empty():
        return _wide([], "model", ["n", *columns])
    head = auroc.filter((pl.col("bench") == ALL) & (pl.col("variant") == ALL))
    rows = []
    for r in head.iter_rows(named=True):
        row = {"model": r["model"], "n": str(r["n"])}
        for name, c in columns.items():
            row[name] = (
                fmt(r[c], r[f"{c}_lo"], r[f"{c}_hi"], digits=3, sign=name == "difference") or r["note"]
            )
        rows.append(row)
    return _wide(rows, "model", ["n", *columns])


def table3(agreement: pl.DataFrame) -> pl.DataFrame:
    columns = ["raters", "n", "strict agreement (%)", "Fleiss κ", "Krippendorff α", "note"]
    if agreement.is_empty():
        return _wide([{"bench": None, "note": "fewer than two judges: no agreement table"}], "bench", columns)
    rows = []
    for r in agreement.filter((pl.col("model") == ALL) & (pl.col("statistic") == "fleiss")).iter_rows(
        named=True
    ):
        rows.append(
            {
                "bench": r["bench"],
                "raters": r["raters"],
                "n": str(r["n"]),
                "strict agreement (%)": fmt(r["agreement"], r["agreement_lo"], r["agreement_hi"], 100),
                "Fleiss κ": fmt(r["kappa"], r["kappa_lo"], r["kappa_hi"], digits=2),
                "Krippendorff α": fmt(r["alpha"], r["alpha_lo"], r["alpha_hi"], digits=2),
                "note": r["note"],
            }
        )
    return _wide(rows, "bench", columns)


AUDIT_COLUMNS = (
    "model", "bench", "variant", "seed", "n", "n_scored", "unparsed", "answer_rules", "argmax_agrees",
    "n_generated", "n_appended", "n_prefilled", "mean_think_chars", "flag_unparsed", "note",
)  # fmt: skip


def audit(cells: pl.DataFrame, max_unparsed: float) -> pl.DataFrame:
    """The audit columns of every (model, bench, variant, seed) (judge-independent: one judge's rows)."""
    if cells.is_empty():
        return pl.DataFrame(schema=dict.fromkeys(AUDIT_COLUMNS, pl.String))
    one = cells.filter(pl.col("judge") == cells["judge"][0]).with_columns(
        (pl.col("unparsed") > max_unparsed).fill_null(False).alias("flag_unparsed")
    )
    return one.select(AUDIT_COLUMNS)


def _html_table(table: pl.DataFrame, flag: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for row in table.iter_rows(named=True):
        style = ' style="background:#fde0dd"' if flag and row.get(flag) else ""
        cells = "".join(f"<td>{'' if v is None else html.escape(str(v))}</td>" for v in row.values())
        body.append(f"<tr{style}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(tables: Mapping[str, pl.DataFrame], max_unparsed: float) -> str:
    flagged = tables["audit"].filter(pl.col("flag_unparsed")) if not tables["audit"].is_empty() else None
    parts = [
        (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>cotprobe tables</title><style>"
            "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse;margin-bottom:1.5em}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right} th{background:#f3f3f3}"
            "</style></head><body>"
        ),
        (
            "<p>Intervals: 95% percentile bootstrap over benchmark items, each item's seeds resampled "
            "together (config <code>analysis.bootstrap</code>).</p>"
        ),
    ]
    n_flag = 0 if flagged is None else flagged.height
    parts.append(
        f"<h2>Flagged cells</h2><p>{n_flag} cell(s) with an unparsed-answer rate above "
        f"{max_unparsed:.0%} (<code>analysis.max_unparsed</code>).</p>"
    )
    if n_flag:
        parts.append(
            _html_table(flagged.select("model", "bench", "variant", "seed", "n", "unparsed", "answer_rules"))
        )
    for name in NAMES:
        parts.append(f"<h2>{html.escape(TITLES[name])}</h2>")
        parts.append(_html_table(tables[name], flag="flag_unparsed" if name == "audit" else None))
    parts.append("</body></html>")
    return "\n".join(parts)


def write_tables(
    inputs: Mapping[str, PathLike], out_dir: PathLike, analysis: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write the paper's tables as CSV and ``tables.html`` into ``out_dir``; log flagged cells.

    Args:
        inputs: The metric CSVs by name: ``summary``, ``effects``, ``auroc``, ``cells`` and,
            with two or more judges, ``agreement``.
    """
    max_unparsed = float((analysis or {}).get("max_unparsed", MAX_UNPARSED))
    out = Path(out_dir)

    def read(name: str) -> pl.DataFrame:
        return _read(Path(inputs[name])) if inputs.get(name) else pl.DataFrame()

    tables = {
        "table1_accuracy": table1(read("summary")),
        "table_delta": table_delta(read("effects")),
        "table_auroc": table_auroc(read("auroc")),
        "table3_agreement": table3(read("agreement")),
        "table_abstain": table_abstain(read("summary")),
        "audit": audit(read("cells"), max_unparsed),
    }
    if not tables["audit"].is_empty():
        for r in tables["audit"].filter(pl.col("flag_unparsed")).iter_rows(named=True):
            log.warning(
                "flagged cell %s/%s/%s/seed%s: unparsed rate %.3f > %.3f",
                r["model"], r["bench"], r["variant"], r["seed"], r["unparsed"], max_unparsed,
            )  # fmt: skip
    written = []
    for name, table in tables.items():
        write_csv(table, out / f"{name}.csv")
        written.append(out / f"{name}.csv")
    with atomic_path(out / "tables.html") as tmp:
        tmp.write_text(render_html(tables, max_unparsed), encoding="utf-8")
    written.append(out / "tables.html")
    return written
