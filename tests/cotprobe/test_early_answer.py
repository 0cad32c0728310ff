"""Early answering: the cut, the pre-fill, and the curve on the real tiny model (hf)."""

import dataclasses
import json
import subprocess
import sys

import polars as pl
import pytest

from cotprobe import early_answer as ea
from cotprobe import stats
from cotprobe.parsing import reparse
from cotprobe.records import Generation


def generation(prompt, text):
    g = Generation(id=prompt.id, model="m", bench="shapes", variant="base", seed=0, prefill="", completion=text,
                   text=text, think=None, answer_text=None, answer_letter=None, parse_status="",
                   prompt_tokens=1, completion_tokens=1, seconds=0.0, finish_reason="stop")  # fmt: skip
    return reparse(g, prompt.options)


def test_cut_points_round_half_up():
    assert ea.cut_points(4) == [0, 1, 2, 3, 4]
    assert ea.cut_points(3) == [0, 1, 2, 2, 3]
    assert ea.cut_points(0) == [0, 0, 0, 0, 0]


def test_pairs_prefill_the_cut_think_and_keep_the_unreadable_items(make_prompt):
    prompts = [make_prompt(i) for i in range(3)]
    base = [
        generation(prompts[0], "<think>one two three four</think><answer>A</answer>"),
        generation(prompts[1], "<think>no answer here</think>"),
        generation(prompts[2], "<answer>C</answer>"),
    ]
    rows, pairs = ea.early_pairs(prompts, base)
    assert len(rows) == 15 and len(pairs) == 5
    assert [p.prefill for p, _ in pairs] == [
        f"<think>{t}</think><answer>" for t in ("", "one", "one two", "one two three", "one two three four")
    ]
    assert all(g.prefill == p.prefill and g.completion == "" for p, g in pairs)
    reasons = {r["id"]: r["missing_reason"] for r in rows}
    assert reasons == {
        "s0": None,
        "s1": "no answer letter on the base prompt",
        "s2": "no think on the base prompt",
    }


def test_curve_on_the_tiny_model_equals_scoring_each_cut_by_hand(tiny_model_dir, make_prompt):
    from transformers import AutoTokenizer

    from cotprobe.backends.hf import HFBackend

    prompts = [make_prompt(i) for i in range(2)]
    base = [generation(p, f"<think>The {p.options['B']} square is on the left, so B.</think><answer>B</answer>")
            for p in prompts]  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows, pairs = ea.early_pairs(prompts, base, lambda t: ea.token_units(tokenizer, t))
    backend = HFBackend(path=str(tiny_model_dir), device="cpu")
    with backend:
        scores = backend.letter_scores([p for p, _ in pairs], [g for _, g in pairs])
        out = ea.with_scores(rows, scores, "tokens")
        # The last cut (100 %) is the whole think: the same as scoring it pre-filled by hand.
        think = base[0].think.strip()
        prefill = f"<think>{think}</think><answer>"
        by_hand = backend.letter_scores(
            [dataclasses.replace(prompts[0], prefill=prefill)],
            [dataclasses.replace(base[0], prefill=prefill, completion="", text=prefill)],
        )[0]
    assert [s.answer_position for s in scores] == ["prefilled"] * len(pairs)
    last = next(r for r in out if r["id"] == "s0" and r["fraction"] == 1.0)
    assert last["kept_units"] == len(tokenizer.encode(think, add_special_tokens=False)) == last["n_units"]
    assert last["p_final"] == pytest.approx(dict(zip(by_hand.letters, by_hand.probs))["B"])
    top = sorted(by_hand.probs, reverse=True)
    if top[0] - top[1] > 1e-3:  # the random-weight model's letters can be near-tied: argmax is kernel noise
        assert last["agrees"] == (by_hand.argmax_letter == "B")
    assert all(0 <= r["p_final"] <= 1 and r["unit"] == "tokens" for r in out)
    # Different cuts are different contexts: the distribution moves along the think.
    assert len({round(r["p_final"], 6) for r in out if r["id"] == "s0"}) > 1


def test_table_and_figure(tmp_path, make_prompt):
    rows = []
    for i, agrees in enumerate([False, True, True]):  # the first item agrees only from 50 % on
        for f in ea.FRACTIONS:
            rows.append({"id": f"s{i}", "fraction": f, "n_units": 4, "kept_units": 0, "final_letter": "A",
                         "missing_reason": None, "unit": "words", "argmax_letter": "A",
                         "p_final": 0.9 if (agrees or f >= 0.5) else 0.2,
                         "agrees": agrees or f >= 0.5, "early_version": 1})  # fmt: skip
    schema = {k: getattr(pl, v) for k, v in ea.SCHEMA.items()}
    path = tmp_path / "results/early_answer/m/shapes/seed0.parquet"
    path.parent.mkdir(parents=True)
    pl.DataFrame(rows, schema=schema).write_parquet(path)
    table = ea.early_rows(
        [{"model": "m", "bench": "shapes", "seed": 0, "path": str(path)}], stats.Bootstrap(n=300)
    )
    agreement = dict(zip(table["fraction"], table["agreement"]))
    assert agreement == pytest.approx({0.0: 2 / 3, 0.25: 2 / 3, 0.5: 1.0, 0.75: 1.0, 1.0: 1.0})
    row = table.filter(pl.col("fraction") == 0.0).row(0, named=True)
    assert row["agreement_lo"] <= 2 / 3 <= row["agreement_hi"] and row["agreement_lo"] < row["agreement_hi"]
    axes = {"models": ["m"], "benchmarks": ["shapes"], "seeds": [0]}
    run = [sys.executable, "-m", "cotprobe"]
    subprocess.run(
        [*run, "early-answering", "--axes", json.dumps(axes), "--out", "t.csv"], check=True, cwd=tmp_path
    )
    subprocess.run(
        [*run, "early-answering-figure", "--table", "t.csv", "--out", "f.png"], check=True, cwd=tmp_path
    )
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").stat().st_size > 0
