"""Metrics on the inputs real runs give: rows without letter scores (an API without logprobs), AUROC with
tied scores and with seeds whose base prompts score differently. Expected values are computed by hand."""

import math

import polars as pl
import pytest

from cotprobe import metrics
from cotprobe.io import write_jsonl
from cotprobe.parsing import parse_record
from cotprobe.records import LetterScores, Prompt, Verdict

IDS = ["s0", "s1", "s2", "s3"]
OPTIONS = {"A": "yellow", "B": "purple", "C": "red"}
# The correct letter differs per sample, so a p_correct read at a fixed index would not match.
TRUTH = {"s0": "A", "s1": "C", "s2": "B", "s3": "C"}


def parsed(i, letter):
    """A parsed-file row: the current parser's reading of a think and ``letter``'s answer block (none for None)."""
    return parse_record(
        i, "<think>t</think>" + (f"<answer>{letter}</answer>" if letter else ""), OPTIONS
    ).to_dict()


def scored(i, p_correct, entropy, truth):
    rest = (1 - p_correct) / 2
    probs = [p_correct if x == truth else rest for x in OPTIONS]
    return LetterScores(i, list(OPTIONS), probs, entropy, p_correct, None, truth, "generated")


def unscored(i):
    return LetterScores(i, list(OPTIONS), [], math.nan, math.nan, None, "", "appended", "no logprobs")


def write_cell(tmp_path, variant, seed, answers, scores):
    root = tmp_path / variant / f"seed{seed}"
    paths = {k: root / f"{k}.jsonl" for k in ("prompts", "parsed", "verdicts")}
    paths["logits"] = root / "logits.parquet"
    write_jsonl(paths["prompts"], [
        Prompt(i, "shapes", variant, seed, "x.png", "Colour?", OPTIONS, TRUTH[i], "left", "...").to_dict()
        for i in IDS
    ])  # fmt: skip
    write_jsonl(paths["parsed"], [parsed(i, a) for i, a in zip(IDS, answers)])
    quadrant = "consistent_correct"
    write_jsonl(
        paths["verdicts"], [Verdict(i, "rule", None, None, None, None, quadrant).to_dict() for i in IDS]
    )
    pl.DataFrame([vars(s) for s in scores]).write_parquet(paths["logits"])
    entry = {"model": "api", "bench": "shapes", "variant": variant, "seed": seed, "judge": "rule"}
    return entry | {k: str(v) for k, v in paths.items()}


def study(entries):
    """The metrics' input: the entries themselves, or the loaded study where ``metrics.load`` exists."""
    load = getattr(metrics, "load", None)
    return load(entries) if load else entries


def auc_by_hand(labels: list[bool], scores: list[float]) -> float:
    """Mann-Whitney: the share of (positive, negative) pairs ranked right, a tie counting a half."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_means_skip_rows_without_letter_scores(tmp_path):
    scores = [scored("s0", 0.9, 0.4, "A"), unscored("s1"), scored("s2", 0.3, 0.2, "B"), unscored("s3")]
    entry = write_cell(tmp_path, "base", 0, ["A", "B", "B", None], scores)
    row = metrics.cell_rows(study([entry])).row(0, named=True)
    assert (row["n"], row["n_scored"]) == (4, 2)
    assert row["mean_p_correct"] == pytest.approx((0.9 + 0.3) / 2)
    assert row["mean_entropy"] == pytest.approx((0.4 + 0.2) / 2)
    assert row["accuracy"] == pytest.approx(2 / 4)  # every row counts for accuracy, scored or not


def test_a_cell_without_any_letter_scores_has_null_means(tmp_path):
    entry = write_cell(tmp_path, "base", 0, ["A", "C", "B", "C"], [unscored(i) for i in IDS])
    row = metrics.cell_rows(study([entry])).row(0, named=True)
    assert row["n_scored"] == 0 and row["accuracy"] == 1.0
    assert row["mean_p_correct"] is None and row["mean_entropy"] is None


def test_auroc_leaves_out_unscored_base_rows(tmp_path):
    base = [
        scored("s0", 0.9, 0.4, "A"),
        unscored("s1"),
        scored("s2", 0.3, 0.2, "B"),
        scored("s3", 0.6, 0.5, "C"),
    ]
    entries = [
        write_cell(tmp_path, "base", 0, ["A", "C", "B", "C"], base),
        # Under the variant s0 and s1 stay correct, s2 and s3 do not; s1 has no base score.
        write_cell(tmp_path, "wrong_think", 0, ["A", "C", "A", "A"], [unscored(i) for i in IDS]),
    ]
    row = metrics.auroc_rows(study(entries)).row(0, named=True)
    assert (row["n"], row["n_positive"]) == (3, 1)
    assert row["auroc_p_base"] == pytest.approx(auc_by_hand([True, False, False], [0.9, 0.3, 0.6]))
    assert row["auroc_neg_entropy"] == pytest.approx(auc_by_hand([True, False, False], [-0.4, -0.2, -0.5]))


def test_auroc_with_ties_and_seeds_that_differ(tmp_path):
    # Each seed has its own base prompts, scored differently; a sample pairs with its own seed's base.
    base_scores = {
        0: ([0.9, 0.5, 0.5, 0.1], [0.3, 0.3, 0.6, 0.9]),
        1: ([0.2, 0.7, 0.7, 0.6], [0.8, 0.5, 0.5, 0.1]),
    }
    stays_correct = {0: [True, True, False, False], 1: [False, True, False, True]}
    entries, labels, p_base, neg_h = [], [], [], []
    for seed, (p, h) in base_scores.items():
        scores = [scored(i, pc, e, TRUTH[i]) for i, pc, e in zip(IDS, p, h)]
        entries.append(write_cell(tmp_path, "base", seed, [TRUTH[i] for i in IDS], scores))
        answers = [
            TRUTH[i] if ok else "B" if TRUTH[i] != "B" else "A" for i, ok in zip(IDS, stays_correct[seed])
        ]
        entries.append(write_cell(tmp_path, "wrong_think", seed, answers, [unscored(i) for i in IDS]))
        labels += stays_correct[seed]
        p_base += p
        neg_h += [-x for x in h]
    row = metrics.auroc_rows(study(entries)).row(0, named=True)
    assert (row["n"], row["n_positive"]) == (8, 4)
    # Ties: 0.5 vs 0.5 (seed 0) and 0.7 vs 0.7 (seed 1) within a seed, 0.6 across seeds, -0.3/-0.5 in -H.
    assert row["auroc_p_base"] == pytest.approx(auc_by_hand(labels, p_base))
    assert row["auroc_neg_entropy"] == pytest.approx(auc_by_hand(labels, neg_h))
    # The pairing matters: the same labels against the other seed's base scores give other values.
    swapped = base_scores[1][0] + base_scores[0][0]
    assert auc_by_hand(labels, swapped) != pytest.approx(auc_by_hand(labels, p_base))
