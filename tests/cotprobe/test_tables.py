"""The paper's tables, formatted from the metric CSVs of a small study."""

import importlib.util
from pathlib import Path

import polars as pl

from cotprobe import metrics, stats, tables

_spec = importlib.util.spec_from_file_location("_tm", Path(__file__).with_name("test_metrics.py"))
_tm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tm)


def test_tables_and_page_from_a_small_study(tmp_path):
    entries = [
        _tm.write_cell(tmp_path, v, s, answers, _tm.QUADS4)
        for s in (0, 1)
        for v, answers in (("base", _tm.BASE_ANSWERS), ("wrong_think", ["B", "A", "B", "B"]))
    ]
    out = tmp_path / "metrics"
    computed = metrics.compute_metrics(entries, metrics.Analysis(stats.Bootstrap(n=200)))
    for name, table in computed.items():
        metrics.write_csv(table, out / f"{name}.csv")
    inputs = {name: out / f"{name}.csv" for name in ("summary", "effects", "auroc", "cells")}
    written = tables.write_tables(inputs, tmp_path / "tables", {"max_unparsed": 0.2})
    assert [p.name for p in written] == [f"{n}.csv" for n in tables.NAMES] + ["tables.html"]
    table1 = pl.read_csv(tmp_path / "tables/table1_accuracy.csv")
    assert table1.columns == ["model", "shapes"] and table1["shapes"][0].startswith("50.0 [")
    delta = pl.read_csv(tmp_path / "tables/table_delta.csv")
    assert delta["wrong_think"][0].startswith("-25.0 [")  # 4/8 -> 2/8
    audit = pl.read_csv(tmp_path / "tables/audit.csv")
    assert audit.height == 4 and audit.filter(pl.col("flag_unparsed"))["variant"].to_list() == [
        "base",
        "base",
    ]
    assert dict(zip(audit["variant"], audit["answer_rules"])) == {
        "base": "letter 3, no_answer 1", "wrong_think": "letter 4",
    }  # fmt: skip
    agreement = pl.read_csv(tmp_path / "tables/table3_agreement.csv")
    assert "fewer than two judges" in agreement["note"][0]
    page = (tmp_path / "tables/tables.html").read_text()
    assert "2 cell(s) with an unparsed-answer rate above 20%" in page and "Table 1" in page
    assert "letter 3, no_answer 1" in page


def test_fmt():
    assert tables.fmt(0.5, 0.4, 0.6, 100) == "50.0 [40.0, 60.0]"
    assert tables.fmt(-0.1, -0.2, 0.0, 100, sign=True) == "-10.0 [-20.0, +0.0]"
    assert tables.fmt(None, 0.1, 0.2) is None and tables.fmt(0.91234, None, None, digits=3) == "0.912"


def test_circular_column_and_abstention_table(tmp_path):
    # Rotations: q1 right in all three, q2 wrong in one, q3 plain and right.
    ids = ["q1~0", "q1~1", "q1~2", "q2~0", "q2~1", "q2~2", "q3"]
    quads = ["consistent_correct"] * 7
    entries = [
        _tm.write_cell(tmp_path, "base", 0, ["A", "A", "A", "A", "B", "A", "A"], quads, ids=ids),
        _tm.write_cell(tmp_path, "wrong_caption", 0, ["B", "A", "A", "A", "B", "A", "A"], quads, ids=ids),
        _tm.write_cell(
            tmp_path, "wrong_caption_abstain", 0, ["C", "C", "A", "A", "B", "C", "A"], quads, ids=ids
        ),
    ]
    _tm._rewrite_jsonl(entries[2]["prompts"], lambda rows: [r | {"abstain_letter": "C"} for r in rows])
    out = tmp_path / "metrics"
    computed = metrics.compute_metrics(entries, metrics.Analysis(stats.Bootstrap(n=200)))
    for name, table in computed.items():
        metrics.write_csv(table, out / f"{name}.csv")
    summary = pl.read_csv(out / "summary.csv")
    assert set(zip(summary["n_items"], summary["n_original_items"])) == {(7, 3)}
    inputs = {name: out / f"{name}.csv" for name in ("summary", "effects", "auroc", "cells")}
    tables.write_tables(inputs, tmp_path / "tables")
    table1 = pl.read_csv(tmp_path / "tables/table1_accuracy.csv")
    assert table1.columns == ["model", "shapes", "shapes (circular)"]
    assert table1["shapes"][0].startswith("85.7 [") and table1["shapes (circular)"][0].startswith("66.7 [")
    abstain = pl.read_csv(tmp_path / "tables/table_abstain.csv")
    row = abstain.row(0, named=True)
    assert abstain.height == 1 and (row["variant"], row["without"]) == (
        "wrong_caption_abstain",
        "wrong_caption",
    )
    assert row["abstain_rate"].startswith("42.9 [") and row["accuracy"].startswith("42.9 [")
    assert row["accuracy_without"].startswith("71.4 [")
