"""Aggregate: every cell into the metric tables, the judge agreement table, the paper's tables, the
joined sample table and its browser, and the study's figures."""

from __future__ import annotations

import json
import logging
import time

from cotprobe.stages import parse_spec

log = logging.getLogger(__name__)


def metric_tables(args) -> None:
    import polars as pl

    from cotprobe import metrics
    from cotprobe.threads import available_cpus
    from cotprobe.workflow import cell_entries

    start = time.perf_counter()
    tables = metrics.compute_metrics(
        cell_entries(parse_spec(args.axes)),
        metrics.Analysis.from_config(parse_spec(args.analysis)),
        threads=args.threads if args.threads > 0 else available_cpus(),
    )
    for name, table in tables.items():
        metrics.write_csv(table, getattr(args, name))
    cells = tables["cells"].filter(pl.col("flag_unparsed"))
    flagged = cells.select("model", "bench", "variant", "seed").unique().height
    log.info(
        "metrics over %d cell rows written in %.1f s (%d cells flagged for unparsed answers)",
        tables["cells"].height, time.perf_counter() - start, flagged,
    )  # fmt: skip


def agreement_table(args) -> None:
    from cotprobe import agreement, metrics
    from cotprobe.workflow import cell_entries

    judges = json.loads(args.judges)
    table = agreement.agreement_rows(cell_entries(parse_spec(args.axes)), judges, parse_spec(args.analysis))
    metrics.write_csv(table, args.out)
    log.info("agreement of %s over %d groups written", judges, table.height)


def agreement_figure(args) -> None:
    from cotprobe import figures

    figures.plot_agreement(args.agreement, args.out)


def paper_tables(args) -> None:
    from cotprobe.tables import write_tables

    inputs = {name: getattr(args, name) for name in ("summary", "effects", "auroc", "cells", "agreement")}
    written = write_tables(inputs, args.out_dir, parse_spec(args.analysis))
    log.info("tables written: %s", ", ".join(str(p) for p in written))


def sample_browser(args) -> None:
    from cotprobe import samples
    from cotprobe.workflow import cell_entries

    table = samples.sample_table(cell_entries(parse_spec(args.axes)))
    samples.write_table(table, args.table)
    page = samples.write_browser(table, args.browser)
    log.info("%d samples joined into %s; browser at %s", table.height, args.table, page)


def study_figures(args) -> None:
    from cotprobe import figures

    figures.plot_accuracy(args.summary, args.accuracy, judge=args.judge)
    figures.plot_quadrants(args.summary, args.quadrants, judge=args.judge)
    figures.plot_auroc(args.auroc, args.auroc_out)
    figures.plot_forest(args.effects, args.forest)
    figures.plot_uncertainty(args.summary, args.uncertainty, judge=args.judge)
    figures.plot_risk_coverage(args.risk_coverage, args.aurc, args.risk_coverage_out)
