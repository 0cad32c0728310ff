import math

import numpy as np
import polars as pl
import pytest

from cotprobe import metrics, stats
from cotprobe.io import InputError, write_jsonl
from cotprobe.parsing import parse_record
from cotprobe.records import LetterScores, Prompt, Verdict

IDS = ["s0", "s1", "s2", "s3"]
OPTIONS = {"A": "yellow", "B": "purple", "C": "red"}
# Base cell: answers A, A, B, none -> accuracy 1/2, parse_ok 3/4.
BASE_ANSWERS = ["A", "A", "B", None]
BASE_QUADRANTS = ["consistent_correct", "consistent_correct", "consistent_incorrect", "unparseable"]
P_CORRECT = [0.9, 0.8, 0.3, 0.2]
ENTROPY = [0.4, 0.1, 0.2, 0.3]


def parsed(i, letter):
    """A parsed-file row: the current parser's reading of a think and ``letter``'s answer block (none for None)."""
    return parse_record(
        i, "<think>t</think>" + (f"<answer>{letter}</answer>" if letter else ""), OPTIONS
    ).to_dict()


def write_cell(
    tmp_path,
    variant,
    seed,
    answers,
    quadrants,
    p_target=None,
    ids=IDS,
    verdict_ids=None,
    model="tiny",
    bench="shapes",
    p_correct=None,
    missing=False,
    prefill="",
):
    root = tmp_path / model / bench / variant / f"seed{seed}"
    paths = {k: root / f"{k}.jsonl" for k in ("prompts", "parsed", "verdicts")}
    paths["logits"] = root / "logits.parquet"
    write_jsonl(
        paths["prompts"],
        [
            Prompt(
                i, "shapes", variant, seed, "x.png", "Colour?", OPTIONS, "A", "left", "...", prefill
            ).to_dict()
            for i in ids
        ],
    )
    write_jsonl(paths["parsed"], [parsed(i, a) for i, a in zip(ids, answers)])
    write_jsonl(
        paths["verdicts"],
        [
            Verdict(i, "rule", None, None, None, None, q).to_dict()
            for i, q in zip(verdict_ids or ids, quadrants)
        ],
    )
    scores = [
        LetterScores(i, list("ABC"), [p, (1 - p) / 2, (1 - p) / 2], h, p, p_target, "A", "generated")
        for i, p, h in zip(ids, p_correct or P_CORRECT * (len(ids) // 4 + 1), ENTROPY * (len(ids) // 4 + 1))
    ]
    if missing:
        scores = [
            LetterScores(s.id, [], [], math.nan, math.nan, None, "", "generated", "no logprobs")
            for s in scores
        ]
    pl.DataFrame([vars(s) for s in scores]).write_parquet(paths["logits"])
    entry = {"model": model, "bench": bench, "variant": variant, "seed": seed, "judge": "rule"}
    return entry | {k: str(v) for k, v in paths.items()}


QUADS4 = ["consistent_correct"] * 4


def study_of(entries):
    return metrics.load(entries)


def analysis(n=400, seed=0):
    return metrics.Analysis(stats.Bootstrap(n=n, seed=seed))


def test_cell_rows_hand_computed(tmp_path):
    cells = metrics.cell_rows(study_of([write_cell(tmp_path, "base", 0, BASE_ANSWERS, BASE_QUADRANTS)]))
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
    assert row["consistency"] == pytest.approx(0.75)
    assert sum(row[s] for s in metrics.SHARES) == pytest.approx(1.0)
    assert cells.columns == list(metrics.CELL_SCHEMA)
    assert row["n_scored"] == 4
    # Audit: one of four has no letter; argmax (always A) equals the answer for A, A, not for B.
    assert row["unparsed"] == pytest.approx(0.25) and row["flag_unparsed"] and row["note"] is None
    assert row["argmax_agrees"] == pytest.approx(2 / 3)
    assert (row["n_generated"], row["n_appended"], row["n_prefilled"]) == (4, 0, 0)
    assert row["mean_think_chars"] == 1.0
    assert not metrics.cell_rows(study_of([write_cell(tmp_path, "base", 1, ["A"] * 4, QUADS4)]))[
        "flag_unparsed"
    ][0]


def test_the_audit_counts_which_parsing_rule_read_each_answer(tmp_path):
    # Eight answers of one cell in the forms models write, two of them unreadable, in two cells.
    blocks = ["A", "**A**", "yellow", "A or B", "The answer is C.", "(B) purple", "Option E", "B"]
    ids = [f"s{i}" for i in range(len(blocks))]
    quads = ["consistent_correct"] * len(blocks)
    entries = [write_cell(tmp_path, v, 0, blocks, quads, ids=ids) for v in ("base", "wrong_think")]
    cells = metrics.cell_rows(study_of(entries))
    expected = "letter 2, bold 1, phrase 1, paren 1, option_text 1, ambiguous 1, not_an_option 1"
    assert cells["answer_rules"].to_list() == [expected, expected]
    assert cells["unparsed"][0] == pytest.approx(2 / 8) and cells["accuracy"][0] == pytest.approx(3 / 8)
    assert metrics.format_rules({"letter": 0, "zz_new": 2, "bold": 1}) == "bold 1, zz_new 2"
    # The LLM extractor's letters come after the rules' and before the failures.
    assert metrics.format_rules({"unread": 1, "llm": 2, "bold": 1}) == "bold 1, llm 2, unread 1"
    assert metrics.format_rules({}) is None


def test_mean_p_target_when_the_variant_pushes(tmp_path):
    entry = write_cell(tmp_path, "wrong_think", 0, ["B"] * 4, ["consistent_incorrect"] * 4, p_target=0.6)
    assert metrics.cell_rows(study_of([entry]))["mean_p_target"][0] == pytest.approx(0.6)


def test_mismatched_ids_name_the_cell_and_the_files(tmp_path):
    entry = write_cell(tmp_path, "base", 0, BASE_ANSWERS, BASE_QUADRANTS[:3], verdict_ids=IDS[:3])
    with pytest.raises(InputError, match=r"^cell tiny/shapes/base/seed0: .*verdicts\.jsonl lacks id 's3'"):
        metrics.load([entry])
    entry = write_cell(
        tmp_path, "base", 1, BASE_ANSWERS, BASE_QUADRANTS, verdict_ids=["s0", "s1", "s2", "zz"]
    )
    with pytest.raises(InputError, match=r"verdicts\.jsonl has id 'zz' not in .*prompts\.jsonl"):
        metrics.load([entry])


def test_missing_logits_is_one_error_naming_cell_and_file(tmp_path, capsys):
    from pathlib import Path

    entry = write_cell(tmp_path, "base", 0, BASE_ANSWERS, BASE_QUADRANTS)
    Path(entry["logits"]).unlink()
    with pytest.raises(InputError, match=r"^cell tiny/shapes/base/seed0: .*logits\.parquet: file not found$"):
        metrics.load([entry])


def test_unknown_quadrant_fails(tmp_path):
    entry = write_cell(tmp_path, "base", 0, BASE_ANSWERS, ["maybe"] * 4)
    with pytest.raises(InputError, match="maybe"):
        metrics.load([entry])


def _rewrite_jsonl(path, edit):
    import json
    from pathlib import Path

    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in edit(rows)))


def _set(field, value, row=1):
    def edit(rows):
        rows[row][field] = value
        return rows

    return edit


@pytest.mark.parametrize(
    ("kind", "edit", "message"),
    [
        ("parsed", lambda rows: rows + [rows[0]], r"parsed\.jsonl: duplicate id 's0'"),
        ("parsed", lambda rows: rows[:3], r"parsed\.jsonl lacks id 's3'"),
        ("parsed", _set("id", "s0"), r"parsed\.jsonl: duplicate id 's0'"),  # same count, one id twice
        ("prompts", _set("id", "s0"), r"prompts\.jsonl: duplicate id 's0'"),
        ("parsed", _set("parse_status", None), r"parsed\.jsonl:2: field 'parse_status' is null"),
        ("parsed", _set("answer_rule", None), r"parsed\.jsonl:2: field 'answer_rule' is null"),
        ("prompts", _set("answer", None), r"prompts\.jsonl:2: field 'answer' is null"),
        ("verdicts", lambda rows: rows + [rows[1]], r"verdicts\.jsonl: duplicate id 's1'"),
        ("verdicts", _set("quadrant", "maybe"), r"verdicts\.jsonl: unknown quadrant 'maybe'"),
        ("logits", None, r"logits\.parquet: not a readable parquet file"),
        ("logits", "extra", r"logits\.parquet has id 'zz' not in .*prompts\.jsonl"),
    ],
)
def test_bad_files_in_a_grid_name_the_cell_file_row_and_field(tmp_path, kind, edit, message):
    """Among many good cells (files read in one batch), the bad one is named with its file."""
    entries = [
        write_cell(tmp_path, v, s, ["A"] * 4, QUADS4, model=m)
        for m in ("m1", "m2")
        for v in ("base", "wrong_think")
        for s in (0, 1)
    ]
    metrics.load(entries)  # the good grid reads
    bad = next(e for e in entries if (e["model"], e["variant"], e["seed"]) == ("m2", "wrong_think", 1))
    if kind == "logits":
        from pathlib import Path

        if edit is None:
            Path(bad["logits"]).write_bytes(b"PAR1 not really")
        else:
            table = pl.read_parquet(bad["logits"])
            table.with_columns(id=pl.Series(["s0", "s1", "s2", "zz"])).write_parquet(bad["logits"])
    else:
        _rewrite_jsonl(bad[kind], edit)
    with pytest.raises(InputError, match=r"^cell m2/shapes/wrong_think/seed1: .*" + message):
        metrics.load(entries)


def test_the_fast_read_equals_the_checked_joins(tmp_path, monkeypatch):
    """``load`` aligns tables by sorting integer keys; the string joins it falls back on agree."""
    import random

    rng = random.Random(0)
    ids = [f"q{i}" for i in (7, 3, 11, 0, 5, 9, 2, 8)]  # neither sorted nor in file order
    letters, states = list("ABC") + [None], sorted(metrics.STATES)
    entries = []
    for m in ("m1", "m2"):
        for v in ("base", "wrong_think", "abstain"):
            for s in (0, 1):
                e = write_cell(tmp_path, v, s, [rng.choice(letters) for _ in ids], [rng.choice(states) for _ in ids],
                               ids=ids, model=m, p_correct=[rng.random() for _ in ids])  # fmt: skip
                for kind in ("parsed", "verdicts"):  # each file in its own row order
                    _rewrite_jsonl(e[kind], lambda rows: rng.sample(rows, len(rows)))
                entries.append(e)
    seen = []
    aligned = metrics._aligned
    monkeypatch.setattr(metrics, "_aligned", lambda *a: seen.append(aligned(*a)) or seen[-1])
    fast = metrics.load(entries)
    monkeypatch.setattr(metrics, "_aligned", lambda *a: None)
    checked = metrics.load(entries)
    assert seen[0] is not None  # the fast path ran
    assert fast.items == checked.items == {"shapes": sorted(ids)}
    assert fast.verdicts.keys() == checked.verdicts.keys()
    for key, codes in fast.verdicts.items():
        np.testing.assert_array_equal(codes, checked.verdicts[key])
    assert fast.cells.keys() == checked.cells.keys()
    for key, cell in fast.cells.items():
        other = checked.cells[key]
        for field in ("present", "correct", "parse_ok", "answered", "entropy", "p_correct", "argmax_agrees"):
            np.testing.assert_array_equal(getattr(cell, field), getattr(other, field))
        assert (cell.positions, cell.rules) == (other.positions, other.rules)


def test_a_cell_without_scored_items_gives_empty_values_with_a_reason(tmp_path):
    entries = [write_cell(tmp_path, v, 0, ["A"] * 4, QUADS4, missing=True) for v in ("base", "wrong_think")]
    tables = metrics.compute_metrics(entries, analysis(100))
    cell = tables["cells"].row(0, named=True)
    assert cell["mean_entropy"] is None and cell["n_scored"] == 0 and "no logprobs" in cell["note"]
    row = tables["summary"].row(0, named=True)
    assert row["mean_entropy"] is None and row["mean_entropy_lo"] is None and "no scored item" in row["note"]
    assert row["accuracy"] == 1.0
    assert tables["auroc"]["auroc_p_base"].is_null().all() and tables["auroc"]["note"].is_not_null().all()
    assert tables["aurc"]["aurc"].is_null().all() and "no scored item" in tables["aurc"]["note"][0]


def brute_force_accuracy(values_by_seed, indices):
    """The resampled mean by an explicit loop: each drawn item brings all its seeds."""
    out = []
    for draw in indices:
        obs = [v[i] for v in values_by_seed for i in draw]
        out.append(sum(obs) / len(obs))
    return np.array(out)


def test_summary_intervals_match_a_brute_force_resampling_loop(tmp_path):
    answers = {0: ["A", "B", "A", None], 1: ["A", "A", "C", None]}
    entries = [write_cell(tmp_path, "base", s, a, QUADS4) for s, a in answers.items()]
    a = analysis(300)
    row = metrics.summary_rows(study_of(entries), a).row(0, named=True)
    assert (row["n_seeds"], row["n"], row["n_items"]) == (2, 8, 4)
    assert row["accuracy"] == pytest.approx(4 / 8)
    correct = [[float(x == "A") for x in answers[s]] for s in (0, 1)]
    indices = stats.resample_indices(4, "shapes", a.bootstrap)
    lo, hi = np.quantile(brute_force_accuracy(correct, indices), [0.025, 0.975])
    assert (row["accuracy_lo"], row["accuracy_hi"]) == pytest.approx((lo, hi))


def test_one_seed_gets_a_real_interval(tmp_path):
    row = metrics.summary_rows(
        study_of([write_cell(tmp_path, "base", 0, BASE_ANSWERS, BASE_QUADRANTS)]), analysis()
    )
    row = row.row(0, named=True)
    assert row["accuracy_lo"] < 0.5 < row["accuracy_hi"]
    assert row["mean_entropy_lo"] < 0.25 < row["mean_entropy_hi"]


def test_bootstrap_mean_agrees_with_scipy_percentile_bootstrap():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    x = (rng.random(300) < 0.6).astype(float)
    boot = stats.Bootstrap(n=4000)
    res = stats.ratio(stats.item_weights(300, "b", boot), x[:, None], np.ones((300, 1)))
    lo, hi = stats.percentile(res, 0.95)
    ref = bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=2).confidence_interval
    assert lo[0] == pytest.approx(ref.low, abs=0.015) and hi[0] == pytest.approx(ref.high, abs=0.015)


def test_percentile_leaves_out_undefined_resamples():
    res = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, 1.0], [np.nan, np.nan]])
    lo, hi = stats.percentile(res, 0.5)
    assert lo[0] == pytest.approx(1.5) and hi[0] == pytest.approx(2.5)
    assert (lo[1], hi[1]) == (1.0, 1.0)


def test_summary_sorts_base_first(tmp_path):
    entries = [
        write_cell(tmp_path, v, 0, BASE_ANSWERS, BASE_QUADRANTS)
        for v in ("wrong_think", "stop_think", "base")
    ]
    assert metrics.summary_rows(study_of(entries), analysis(100))["variant"].to_list() == [
        "base", "stop_think", "wrong_think"
    ]  # fmt: skip


def test_identical_base_and_variant_give_no_effect(tmp_path):
    entries = [
        write_cell(tmp_path, v, s, BASE_ANSWERS, BASE_QUADRANTS)
        for v in ("base", "wrong_think")
        for s in (0, 1)
    ]
    effects = metrics.effect_rows(study_of(entries), analysis())
    assert effects["bench"].to_list() == ["shapes", "all"]
    for row in effects.iter_rows(named=True):
        for m in metrics.EFFECTS:
            assert row[f"delta_{m}"] == 0 and row[f"delta_{m}_lo"] <= 0 <= row[f"delta_{m}_hi"]
        assert (row["n_pairs"], row["n_worse"], row["n_better"], row["mcnemar_p"]) == (8, 0, 0, 1.0)


def test_prefills_delivered_as_instructions_stay_out_of_the_effects(tmp_path):
    """A hosted model asked to begin with the pre-fill (prefill_mode fallback) was never pre-filled:
    its pre-filled variants are not compared; its other variants and every local model's are."""
    entries = [
        write_cell(
            tmp_path,
            v,
            0,
            BASE_ANSWERS,
            BASE_QUADRANTS,
            model=m,
            prefill="<think>B" if v == "wrong_think" else "",
        )
        for m in ("api", "tiny")
        for v in ("base", "wrong_think", "wrong_caption")
    ]
    study = study_of(entries)
    assert study.prefilled == {("api", "shapes", "wrong_think", 0), ("tiny", "shapes", "wrong_think", 0)}
    kept = metrics.effect_rows(
        study, metrics.Analysis(stats.Bootstrap(n=200), prefill_by_instruction=frozenset({"api"}))
    )
    rows = set(kept.select("model", "variant").unique().iter_rows())
    assert rows == {("api", "wrong_caption"), ("tiny", "wrong_caption"), ("tiny", "wrong_think")}
    every = metrics.effect_rows(study, metrics.Analysis(stats.Bootstrap(n=200)))
    assert ("api", "wrong_think") in set(every.select("model", "variant").iter_rows())
    assert metrics.Analysis.from_config({"prefill_by_instruction": ["api"]}).prefill_by_instruction == {"api"}


def test_a_ten_point_drop_on_500_items_is_detected(tmp_path):
    from statsmodels.stats.contingency_tables import mcnemar

    ids = [f"s{i:03d}" for i in range(500)]
    base = ["A" if i < 350 else "B" for i in range(500)]  # 70%
    variant = ["B" if i < 50 else a for i, a in enumerate(base)]  # 50 right answers lost: 60%
    entries = [
        write_cell(tmp_path, v, 0, a, ["consistent_correct"] * 500, ids=ids)
        for v, a in (("base", base), ("wrong_think", variant))
    ]
    row = metrics.effect_rows(study_of(entries), analysis(2000)).row(0, named=True)
    assert row["delta_accuracy"] == pytest.approx(-0.1)
    assert row["delta_accuracy_hi"] < 0 and row["delta_accuracy_lo"] > -0.2
    assert (row["n_worse"], row["n_better"]) == (50, 0)
    assert row["mcnemar_p"] == pytest.approx(mcnemar([[300, 50], [0, 150]], exact=True).pvalue)


def test_mcnemar_matches_statsmodels_and_the_binomial_test():
    from scipy.stats import binomtest
    from statsmodels.stats.contingency_tables import mcnemar

    for worse, better in ((7, 2), (0, 5), (13, 13)):
        p = metrics.mcnemar_p(worse, better)
        assert p == pytest.approx(mcnemar([[10, worse], [better, 4]], exact=True).pvalue)
        assert p == pytest.approx(binomtest(better, worse + better).pvalue)


def test_the_paired_interval_covers_the_true_drop_about_95_times_in_100():
    rng = np.random.default_rng(2026)
    n, covered = 500, 0
    for k in range(100):
        base = rng.random(n) < 0.7
        variant = base & (rng.random(n) < 6 / 7)  # E[variant] = 0.6: the true drop is 0.1
        w = stats.item_weights(n, f"sim{k}", stats.Bootstrap(n=2000, seed=k))
        res = stats.ratio(w, np.column_stack([base, variant]).astype(float), np.ones((n, 2)))
        lo, hi = stats.percentile(res[:, 1] - res[:, 0], 0.95)
        covered += bool(lo[0] <= -0.1 <= hi[0])
    assert 90 <= covered <= 99


def test_auroc_hand_computed_and_pooled(tmp_path):
    from sklearn.metrics import roc_auc_score

    # Under wrong_think s0, s1 stay correct: P_base (0.9, 0.8 vs 0.3, 0.2) separates them
    # perfectly; -H (-0.4, -0.1 vs -0.2, -0.3) wins 2 of 4 pairs.
    entries = [
        write_cell(tmp_path, variant, seed, answers, QUADS4)
        for seed in (0, 1)
        for variant, answers in (
            ("base", BASE_ANSWERS),
            ("wrong_think", ["A", "A", "B", None]),
            ("stop_think", ["A"] * 4),
        )
    ]
    entries.append(entries[0] | {"judge": "other"})  # judges do not matter
    table = metrics.auroc_rows(study_of(entries), analysis())
    assert table.select("bench", "variant").rows() == [
        ("shapes", "stop_think"), ("shapes", "wrong_think"), ("all", "stop_think"), ("all", "wrong_think"), ("all", "all"),
    ]  # fmt: skip
    wrong = table.filter((pl.col("variant") == "wrong_think") & (pl.col("bench") == "shapes")).row(
        0, named=True
    )
    assert (wrong["n"], wrong["n_positive"]) == (8, 4)
    assert wrong["auroc_p_base"] == pytest.approx(1.0) and wrong["auroc_neg_entropy"] == pytest.approx(0.5)
    assert wrong["auroc_diff"] == pytest.approx(0.5) and wrong["note"] is None
    stop = table.filter(pl.col("variant") == "stop_think").row(0, named=True)
    assert stop["auroc_p_base"] is None and "one class" in stop["note"]
    # The headline row pools both variants: sklearn on the stacked (score, label) rows.
    pooled = table.filter(pl.col("variant") == "all").row(0, named=True)
    labels = [1, 1, 0, 0] * 2 + [1] * 8
    assert pooled["n"] == 16 and pooled["auroc_p_base"] == pytest.approx(roc_auc_score(labels, P_CORRECT * 4))
    assert pooled["auroc_neg_entropy"] == pytest.approx(roc_auc_score(labels, [-h for h in ENTROPY] * 4))
    assert pooled["auroc_p_base_lo"] <= pooled["auroc_p_base"] <= pooled["auroc_p_base_hi"]


def test_auroc_resamples_match_sklearn_on_the_resampled_rows():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n_items, seeds = 30, 2
    item = np.repeat(np.arange(n_items), seeds)
    score = np.round(rng.random(len(item)), 1)  # many ties
    labels = (rng.random((len(item), 2)) < 0.5).astype(float)
    positives = np.column_stack([labels, labels.sum(axis=1)])
    boot = stats.Bootstrap(n=25)
    indices = stats.resample_indices(n_items, "x", boot)
    point, res = stats.auroc(stats.weights(indices, n_items), item, score, positives, [1, 1, 2])
    assert point[0] == pytest.approx(roc_auc_score(labels[:, 0], score))
    assert point[2] == pytest.approx(roc_auc_score(labels.T.ravel(), np.tile(score, 2)))
    for b, draw in enumerate(indices):
        rows = np.concatenate([np.flatnonzero(item == u) for u in draw])
        assert res[b, 1] == pytest.approx(roc_auc_score(labels[rows, 1], score[rows]))
        assert res[b, 2] == pytest.approx(roc_auc_score(labels[rows].T.ravel(), np.tile(score[rows], 2)))


def test_risk_coverage_hand_worked():
    # Kept by P_base: top 1 -> risk 0, top 2 -> 1/2, top 3 -> 1/3, all -> 1/2; AURC is their mean.
    score, error = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.0, 1.0, 0.0, 1.0])
    coverage, risk = stats.risk_coverage(score, error)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0] and risk == pytest.approx([0, 0.5, 1 / 3, 0.5])
    point, _ = stats.aurc(np.ones((4, 1), np.float32), np.arange(4), score, error)
    assert point == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    # Tied scores are kept or dropped together: 1/4 * 0 + 2/4 * 1/3 + 1/4 * 1/2.
    tied = np.array([0.9, 0.8, 0.8, 0.6])
    assert stats.risk_coverage(tied, error)[0].tolist() == [0.25, 0.75, 1.0]
    assert stats.aurc(np.ones((4, 1), np.float32), np.arange(4), tied, error)[0] == pytest.approx(
        1 / 6 + 1 / 8
    )


def test_aurc_resamples_match_the_curve_of_the_resampled_rows():
    rng = np.random.default_rng(3)
    item = np.repeat(np.arange(20), 2)
    score, error = np.round(rng.random(40), 1), (rng.random(40) < 0.4).astype(float)
    indices = stats.resample_indices(20, "x", stats.Bootstrap(n=20))
    _, res = stats.aurc(stats.weights(indices, 20), item, score, error)
    for b, draw in enumerate(indices):
        rows = np.concatenate([np.flatnonzero(item == u) for u in draw])
        coverage, risk = stats.risk_coverage(score[rows], error[rows], points=10**6)
        assert res[b] == pytest.approx(float(np.sum(np.diff(coverage, prepend=0) * risk)))


def test_auroc_needs_the_base_cell(tmp_path):
    entry = write_cell(tmp_path, "wrong_think", 0, BASE_ANSWERS, BASE_QUADRANTS)
    with pytest.raises(InputError, match="no 'base' cell"):
        metrics.auroc_rows(study_of([entry]))


def test_auroc_mismatched_ids(tmp_path):
    base = write_cell(tmp_path, "base", 0, BASE_ANSWERS[:3], BASE_QUADRANTS[:3], ids=IDS[:3])
    other = write_cell(tmp_path, "wrong_think", 0, BASE_ANSWERS, BASE_QUADRANTS)  # s3: not in base
    with pytest.raises(InputError, match="differ"):
        metrics.auroc_rows(study_of([base, other]))


def test_auroc_of_a_variant_that_skipped_items_uses_the_items_it_labels(tmp_path):
    from sklearn.metrics import roc_auc_score

    p_base = [0.9, 0.8, 0.3, 0.6]
    base = write_cell(tmp_path, "base", 0, ["A", "A", "B", "A"], BASE_QUADRANTS, p_correct=p_base)
    # An image variant skipped s1: its AUROC is over s0, s2, s3 (correct, wrong, correct).
    skipped = write_cell(tmp_path, "mirror", 0, ["A", "B", "A"], BASE_QUADRANTS[:3], ids=["s0", "s2", "s3"])
    full = write_cell(tmp_path, "wrong_think", 0, ["A", "B", "B", "A"], BASE_QUADRANTS)
    table = metrics.auroc_rows(
        study_of([base, skipped, full]), metrics.Analysis.from_config({"bootstrap": {"n": 50}})
    )
    mirror = table.filter((pl.col("variant") == "mirror") & (pl.col("bench") == "shapes")).row(0, named=True)
    assert (mirror["n"], mirror["n_positive"]) == (3, 2)
    assert mirror["auroc_p_base"] == pytest.approx(roc_auc_score([1, 0, 1], [0.9, 0.3, 0.6]))
    # Pooled over variants: the skipped item has one label (wrong_think's), the others two.
    pooled = table.filter((pl.col("variant") == "all") & (pl.col("bench") == "all")).row(0, named=True)
    labels = [1, 0, 1] + [1, 0, 0, 1]
    scores = [0.9, 0.3, 0.6] + p_base
    assert pooled["n"] == 7 and pooled["auroc_p_base"] == pytest.approx(roc_auc_score(labels, scores))


def test_write_csv_round_trip(tmp_path):
    table = metrics.summary_rows(
        study_of([write_cell(tmp_path, "base", 0, ["A"] * 4, QUADS4, missing=True)]), analysis(50)
    )
    path = tmp_path / "out" / "summary.csv"
    metrics.write_csv(table, path)
    back = pl.read_csv(path, infer_schema_length=None)
    assert back.columns == table.columns
    assert back["mean_entropy_lo"].is_null().all()
    assert list(path.parent.iterdir()) == [path]


def test_models_in_threads_give_the_tables_of_one_thread(tmp_path):
    """AUROC and AURC resample several models at once; the rows are those of a serial run."""
    import random

    rng = random.Random(1)
    entries = [
        write_cell(
            tmp_path,
            v,
            s,
            [rng.choice("ABC") for _ in IDS],
            QUADS4,
            model=m,
            p_correct=[rng.random() for _ in IDS],
        )
        for m in ("m1", "m2", "m3")
        for v in ("base", "wrong_think")
        for s in (0, 1)
    ]
    study = metrics.load(entries)
    a = analysis(200)
    from polars.testing import assert_frame_equal

    assert_frame_equal(metrics.auroc_rows(study, a, threads=1), metrics.auroc_rows(study, a, threads=3))
    for serial, pooled in zip(metrics.aurc_rows(study, a, threads=1), metrics.aurc_rows(study, a, threads=3)):
        assert_frame_equal(serial, pooled)
    assert metrics.auroc_rows(study, a)["model"].unique().len() == 3


def test_abstain_rate_counts_answers_of_the_abstain_option(tmp_path):
    # The abstain variants offer "I'm not sure" as C here: two of four answers take it.
    entry = write_cell(tmp_path, "wrong_caption_abstain", 0, ["C", "A", "C", None], QUADS4)
    _rewrite_jsonl(entry["prompts"], lambda rows: [r | {"abstain_letter": "C"} for r in rows])
    plain = write_cell(tmp_path, "base", 0, ["C", "A", "C", None], QUADS4)
    study = study_of([plain, entry])
    cells = metrics.cell_rows(study)
    assert cells["abstain_rate"].to_list() == [None, pytest.approx(0.5)]
    summary = metrics.summary_rows(study, analysis(200)).filter(pl.col("variant") == "wrong_caption_abstain")
    row = summary.row(0, named=True)
    assert (
        row["abstain_rate"] == pytest.approx(0.5) and row["abstain_rate_lo"] <= 0.5 <= row["abstain_rate_hi"]
    )
    assert row["accuracy"] == pytest.approx(0.25)  # an abstention is not a correct answer


# Two original items in three rotations each (ids name item and rotation), one plain item.
CIRC_IDS = ["q1~0", "q1~1", "q1~2", "q2~0", "q2~1", "q2~2", "q3"]


def test_circular_accuracy_needs_every_rotation_correct(tmp_path):
    # q1: all three right; q2: one rotation wrong; q3: plain and right.
    answers = ["A", "A", "A", "A", "B", "A", "A"]
    entry = write_cell(tmp_path, "base", 0, answers, ["consistent_correct"] * 7, ids=CIRC_IDS)
    study = study_of([entry])
    row = metrics.cell_rows(study).row(0, named=True)
    assert row["accuracy"] == pytest.approx(6 / 7)  # the raw accuracy, per rotation, kept beside it
    assert row["accuracy_circular"] == pytest.approx(2 / 3)
    assert study.groups["shapes"].tolist() == [0, 0, 0, 1, 1, 1, 2]


def test_the_bootstrap_resamples_original_items_with_all_their_rotations(tmp_path):
    answers = ["A", "A", "A", "A", "B", "A", "A"]
    entry = write_cell(tmp_path, "base", 0, answers, ["consistent_correct"] * 7, ids=CIRC_IDS)
    a = analysis(300)
    row = metrics.summary_rows(study_of([entry]), a).row(0, named=True)
    # Brute force: draw original items (3 of them), each bringing all its rotations.
    members = {0: [0, 1, 2], 1: [3, 4, 5], 2: [6]}
    correct = [float(x == "A") for x in answers]
    raw, circ = [], []
    for draw in stats.resample_indices(3, "shapes", a.bootstrap):
        rows = [i for g in draw for i in members[g]]
        raw.append(sum(correct[i] for i in rows) / len(rows))
        circ.append(np.mean([min(correct[i] for i in members[g]) for g in draw]))
    assert (row["accuracy_lo"], row["accuracy_hi"]) == pytest.approx(tuple(np.quantile(raw, [0.025, 0.975])))
    assert (row["accuracy_circular_lo"], row["accuracy_circular_hi"]) == pytest.approx(
        tuple(np.quantile(circ, [0.025, 0.975]))
    )


def test_without_rotations_circular_accuracy_is_accuracy(tmp_path):
    row = metrics.cell_rows(study_of([write_cell(tmp_path, "base", 0, BASE_ANSWERS, BASE_QUADRANTS)]))
    assert row["accuracy_circular"][0] == row["accuracy"][0] == pytest.approx(0.5)


def test_auroc_and_aurc_with_tie_groups_longer_than_a_block():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    n_items, seeds = 120, 2
    item = np.repeat(np.arange(n_items), seeds)
    score = np.round(rng.random(len(item)))  # two tie groups, each longer than stats.BLOCK
    assert np.unique(score, return_counts=True)[1].min() > stats.BLOCK
    label = (rng.random(len(item)) < 0.5).astype(float)
    indices = stats.resample_indices(n_items, "x", stats.Bootstrap(n=6))
    w = stats.weights(indices, n_items)
    point, res = stats.auroc(w, item, score, label)
    _, area = stats.aurc(w, item, score, label)
    assert point[0] == pytest.approx(roc_auc_score(label, score))
    for b, draw in enumerate(indices):
        rows = np.concatenate([np.flatnonzero(item == u) for u in draw])
        assert res[b, 0] == pytest.approx(roc_auc_score(label[rows], score[rows]))
        coverage, risk = stats.risk_coverage(score[rows], label[rows], points=10**6)
        assert area[b] == pytest.approx(float(np.sum(np.diff(coverage, prepend=0) * risk)))


def test_ratio_equals_the_resampled_means_with_shared_and_distinct_count_columns():
    rng = np.random.default_rng(7)
    n_items = 40
    counts = np.repeat(rng.integers(0, 4, (n_items, 3)), [3, 1, 2], axis=1)  # six columns, three distinct
    counts[5, 4] = 0  # now four distinct
    sums = rng.random((n_items, 6)) * counts
    indices = stats.resample_indices(n_items, "x", stats.Bootstrap(n=15))
    res = stats.ratio(stats.weights(indices, n_items), sums, counts)
    for b, draw in enumerate(indices):
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = sums[draw].sum(axis=0) / counts[draw].sum(axis=0)
        np.testing.assert_allclose(res[b], expected, rtol=1e-5)
