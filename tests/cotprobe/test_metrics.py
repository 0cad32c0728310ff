import math

import polars as pl
import pytest

from cotprobe import metrics
from cotprobe.io import InputError, write_jsonl
from cotprobe.records import Generation, LetterScores, Prompt, Verdict

IDS = ["s0", "s1", "s2", "s3"]
OPTIONS = {"A": "yellow", "B": "purple", "C": "red"}
# Base cell: answers A, A, B, none -> accuracy 1/2, parse_ok 3/4.
BASE_ANSWERS = ["A", "A", "B", None]
BASE_QUADRANTS = ["consistent_correct", "consistent_correct", "consistent_incorrect", "unparseable"]
P_CORRECT = [0.9, 0.8, 0.3, 0.2]
ENTROPY = [0.4, 0.1, 0.2, 0.3]


def write_cell(tmp_path, variant, seed, answers, quadrants, p_target=None, ids=IDS, verdict_ids=None):
    root = tmp_path / variant / f"seed{seed}"
    paths = {k: root / f"{k}.jsonl" for k in ("prompts", "generations", "verdicts")}
    paths["logits"] = root / "logits.parquet"
    write_jsonl(
        paths["prompts"],
        [
            Prompt(i, "shapes", variant, seed, "x.png", "Colour?", OPTIONS, "A", "left", "...").to_dict()
            for i in ids
        ],
    )
    write_jsonl(
        paths["generations"],
        [
            Generation(
                i, "tiny", "shapes", variant, seed, "", "", "", "t", a, a,
                "ok" if a else "no_answer", 1, 1, 0.1, "stop",
            ).to_dict()
            for i, a in zip(ids, answers)
        ],
    )  # fmt: skip
    write_jsonl(
        paths["verdicts"],
        [
            Verdict(i, "rule", None, None, None, None, q).to_dict()
            for i, q in zip(verdict_ids or ids, quadrants)
        ],
    )
    scores = [
        LetterScores(i, list("ABC"), [p, (1 - p) / 2, (1 - p) / 2], h, p, p_target, "A", "generated")
        for i, p, h in zip(ids, P_CORRECT, ENTROPY)
    ]
    pl.DataFrame([vars(s) for s in scores]).write_parquet(paths["logits"])
    entry = {"model": "tiny", "bench": "shapes", "variant": variant, "seed": seed, "judge": "rule"}
    return entry | {k: str(v) for k, v in paths.items()}


def test_cell_rows_hand_computed(tmp_path):
    cells = metrics.cell_rows([write_cell(tmp_path, "base", 0, BASE_ANSWERS, BASE_QUADRANTS)])
    row = cells.row(0, named=True)
    assert (row["model"], row["variant"], row["seed"], row["n"]) == ("tiny", "base", 0, 4)
    assert row["accuracy"] == pytest.approx(0.5)
    assert row["parse_ok"] == pytest.approx(0.75)
    assert row["mean_entropy"] == pytest.approx(0.25)
    assert row["mean_p_correct"] == pytest.approx(0.55)
    assert row["mean_p_target"] is None
    assert row["share_consistent_correct"] == pytest.approx(0.5)
    assert row["share_inconsistent_correct"] == 0
    assert row["share_consistent_incorrect"] == pytest.approx(0.25)
    assert row["share_unparseable"] == pytest.approx(0.25)
    assert sum(row[s] for s in metrics.SHARES) == pytest.approx(1.0)
    assert cells.columns == [*metrics.KEYS, "n", "n_scored", *metrics.METRICS]
    assert row["n_scored"] == 4


def test_mean_p_target_when_the_variant_pushes(tmp_path):
    entry = write_cell(tmp_path, "wrong_think", 0, ["B"] * 4, ["consistent_incorrect"] * 4, p_target=0.6)
    assert metrics.cell_rows([entry])["mean_p_target"][0] == pytest.approx(0.6)


def test_mismatched_ids_name_the_files(tmp_path):
    entry = write_cell(tmp_path, "base", 0, BASE_ANSWERS, BASE_QUADRANTS[:3], verdict_ids=IDS[:3])
    with pytest.raises(InputError, match=r"verdicts\.jsonl lacks id 's3'"):
        metrics.cell_rows([entry])
    entry = write_cell(
        tmp_path, "base", 1, BASE_ANSWERS, BASE_QUADRANTS, verdict_ids=["s0", "s1", "s2", "zz"]
    )
    with pytest.raises(InputError, match=r"verdicts\.jsonl has id 'zz' not in .*prompts\.jsonl"):
        metrics.cell_rows([entry])


def test_unknown_quadrant_fails(tmp_path):
    entry = write_cell(tmp_path, "base", 0, BASE_ANSWERS, ["maybe"] * 4)
    with pytest.raises(InputError, match="maybe"):
        metrics.cell_rows([entry])


def cells_table(accuracies, variant="base", n=4):
    rows = [
        {"model": "tiny", "bench": "shapes", "variant": variant, "seed": s, "judge": "rule", "n": n}
        | dict.fromkeys(metrics.METRICS, 0.0)
        | {"accuracy": a, "share_consistent_correct": a, "share_unparseable": 1 - a, "mean_entropy": 0.3}
        | {"mean_p_target": None}
        for s, a in enumerate(accuracies)
    ]
    return pl.DataFrame(rows, schema=metrics.cell_rows([]).schema, orient="row")


def test_summary_t_interval_over_seeds():
    summary = metrics.summary_rows(cells_table([0.5, 0.75, 0.625]))
    row = summary.row(0, named=True)
    assert (row["n_seeds"], row["n"]) == (3, 12)
    assert row["accuracy"] == pytest.approx(0.625)
    half = metrics.t_quantile(2) * 0.125 / math.sqrt(3)  # sd of (0.5, 0.75, 0.625) is 0.125
    assert (row["accuracy_lo"], row["accuracy_hi"]) == pytest.approx((0.625 - half, 0.625 + half))
    assert row["mean_entropy_lo"] == row["mean_entropy_hi"] == pytest.approx(0.3)
    assert row["mean_p_target"] is None and row["mean_p_target_lo"] is None
    assert sum(row[s] for s in metrics.SHARES) == pytest.approx(1.0)


def test_summary_clips_proportions():
    row = metrics.summary_rows(cells_table([0.5, 1.0])).row(0, named=True)
    assert row["accuracy_lo"] == 0.0 and row["accuracy_hi"] == 1.0


def test_summary_wilson_for_one_seed():
    row = metrics.summary_rows(cells_table([0.5])).row(0, named=True)
    assert (row["accuracy_lo"], row["accuracy_hi"]) == pytest.approx((0.1500, 0.8500), abs=1e-4)
    assert row["share_unparseable_lo"] < 0.5 < row["share_unparseable_hi"]
    assert row["mean_entropy"] == pytest.approx(0.3)
    assert row["mean_entropy_lo"] is None and row["mean_p_correct_hi"] is None


def test_summary_sorts_base_first():
    cells = pl.concat(
        [cells_table([0.2], "wrong_think"), cells_table([0.2], "stop_think"), cells_table([0.5])]
    )
    assert metrics.summary_rows(cells)["variant"].to_list() == ["base", "stop_think", "wrong_think"]


def test_t_table_matches_scipy():
    from scipy import stats

    for df in (1, 2, 5, 30):
        assert metrics._T975[df - 1] == pytest.approx(stats.t.ppf(0.975, df), abs=1e-3)
    assert metrics._Z975 + 2.4 / 60 == pytest.approx(stats.t.ppf(0.975, 60), abs=2e-3)


def test_auroc_hand_computed_and_pooled(tmp_path):
    quadrants = ["consistent_correct"] * 4
    # Under the variant s0, s1 stay correct: P_base (0.9, 0.8 vs 0.3, 0.2) separates them
    # perfectly; -H (-0.4, -0.1 vs -0.2, -0.3) wins 2 of 4 pairs.
    entries = [
        write_cell(tmp_path, variant, seed, answers, quadrants)
        for seed in (0, 1)
        for variant, answers in (
            ("base", BASE_ANSWERS),
            ("wrong_think", ["A", "A", "B", None]),
            ("stop_think", ["A"] * 4),
        )
    ]
    entries.append(entries[0] | {"judge": "other"})  # read once whatever the judge
    table = metrics.auroc_rows(entries)
    assert table["variant"].to_list() == ["stop_think", "wrong_think"]
    wrong = table.filter(pl.col("variant") == "wrong_think").row(0, named=True)
    assert (wrong["n"], wrong["n_positive"]) == (8, 4)
    assert wrong["auroc_p_base"] == pytest.approx(1.0)
    assert wrong["auroc_neg_entropy"] == pytest.approx(0.5)
    assert wrong["note"] is None
    stop = table.filter(pl.col("variant") == "stop_think").row(0, named=True)
    assert stop["auroc_p_base"] is None and stop["auroc_neg_entropy"] is None
    assert "one class" in stop["note"]


def test_auroc_needs_the_base_cell(tmp_path):
    entry = write_cell(tmp_path, "wrong_think", 0, BASE_ANSWERS, BASE_QUADRANTS)
    with pytest.raises(InputError, match="no 'base' cell"):
        metrics.auroc_rows([entry])


def test_auroc_mismatched_ids(tmp_path):
    base = write_cell(tmp_path, "base", 0, BASE_ANSWERS, BASE_QUADRANTS)
    other = write_cell(tmp_path, "wrong_think", 0, BASE_ANSWERS[:3], BASE_QUADRANTS[:3], ids=IDS[:3])
    with pytest.raises(InputError, match="differ"):
        metrics.auroc_rows([base, other])


def test_write_csv_round_trip(tmp_path):
    table = metrics.summary_rows(cells_table([0.5]))
    path = tmp_path / "out" / "summary.csv"
    metrics.write_csv(table, path)
    back = pl.read_csv(path, infer_schema_length=None)
    assert back.columns == table.columns
    assert back["mean_entropy_lo"].is_null().all()
    assert list(path.parent.iterdir()) == [path]
