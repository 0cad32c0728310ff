"""Reward-hacking diagnostics of the training curves, on thinks written for the purpose."""

import math
import sys
from pathlib import Path

import pytest

from cotprobe import figures
from cotprobe.training import curves

sys.path.insert(0, str(Path(__file__).parents[1]))
from test_figures import summary

TEMPLATE = "Let me look at the image carefully. The object is on the {}."
VARIED = [
    "The red square sits left of the circle, so A.",
    "Counting the dots I get three, which is option C.",
    "The lamp is nearer the camera than the chair: B.",
    "Both shapes are blue; the question asks for the larger one, D.",
]


def rows(thinks, answers=None):
    answers = answers or ["A"] * len(thinks)
    return [{"id": f"s{i}", "think": t, "answer_text": a} for i, (t, a) in enumerate(zip(thinks, answers))]


def test_a_templated_model_scores_high_and_a_varied_one_low():
    templated = curves.think_diagnostics(rows([TEMPLATE.format(s) for s in ("left", "right", "left", "top")]))
    varied = curves.think_diagnostics(rows(VARIED))
    assert templated["templated_share"] == 1.0 and varied["templated_share"] == 0.0
    assert templated["distinct_2"] < 0.5 < varied["distinct_2"] == 1.0
    assert varied["think_chars"] == pytest.approx(sum(map(len, VARIED)) / 4)
    assert varied["think_is_answer"] == 0.0


def test_thinks_that_only_restate_the_answer_and_missing_thinks():
    thinks = ["B", " b. ", "**B**", "B, because it is left", None]
    d = curves.think_diagnostics(rows(thinks, ["B"] * 4 + [None]))
    assert d["think_is_answer"] == pytest.approx(3 / 5)  # the missing think counts, never as a restatement
    assert d["think_chars"] == pytest.approx(sum(len(t or "") for t in thinks) / 5)
    assert curves.think_diagnostics([]) == dict.fromkeys(curves.DIAGNOSTICS)
    assert curves.think_diagnostics(rows(["A", "B"]))["distinct_2"] is None  # no bigram at all


def test_diagnostics_join_the_curves_for_every_judge(tmp_path, monkeypatch):
    runs = {"grpo": {"base": "tiny", "models": [{"seed": 0, "step": 2, "model": "tiny-grpo"}]}}
    axes = {"benchmarks": ["shapes"], "variants": ["wrong_think", "base", "stop_think"], "seeds": [0, 1]}
    asked = []

    def read(model, bench, variant, seed):
        asked.append((model, bench, variant, seed))
        if model == "tiny":
            return rows(VARIED[seed * 2 : seed * 2 + 2])
        return rows([TEMPLATE.format("left")] * 2)

    diag = curves.diagnostic_rows(runs, axes, read)
    assert len(asked) == 2 * 3 * 2 and diag.height == 2 * 3  # (base, step 2) x variants, eval seeds pooled
    table = curves.curve_rows(summary(judges=("rule", "llm")), runs, diag)
    assert table.height == 2 * 3 * 2
    for row in table.iter_rows(named=True):
        expected = 0.0 if row["step"] == 0 else 1.0
        assert row["templated_share"] == expected, row
        assert math.isclose(
            row["think_chars"],
            sum(map(len, VARIED)) / 4 if row["step"] == 0 else len(TEMPLATE.format("left")),
        )
    saved = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: saved.append(fig) or figures.Written(out, out))
    curves.plot_curves(table, tmp_path / "c.png", judge="llm")
    labels = [ax.get_ylabel() for ax in saved[0].axes if ax.get_ylabel()]
    assert labels == [label for _, label in curves.PLOTTED]
