"""The whole study, prompts to figures, through real Snakemake and the tiny real model."""

import copy
import json
import math

import polars as pl
import pytest
from PIL import Image

from cotprobe.records import QUADRANTS, UNPARSEABLE

VARIANTS = [
    "base", "stop_think", "wrong_think", "wrong_think_but", "wrong_caption",
    "wrong_caption_disclaimer", "correct_caption", "correct_think", "abstain",
]  # fmt: skip
PUSHING = {"wrong_think", "wrong_think_but", "wrong_caption", "wrong_caption_disclaimer"}


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_stage_writes_its_files(finished_study):
    s = finished_study
    samples = jsonl(s.file("results/data/shapes/samples.jsonl"))
    assert len(samples) == 8
    for sample in samples:
        assert s.file(sample["image"]).exists()
        assert sample["answer"] in sample["options"]
    for v in VARIANTS:
        prompts = jsonl(s.file(f"results/prompts/shapes/{v}/seed0.jsonl"))
        gens = jsonl(s.file(f"results/generations/tiny/shapes/{v}/seed0.jsonl"))
        verdicts = jsonl(s.file(f"results/verdicts/rule/tiny/shapes/{v}/seed0.jsonl"))
        logits = pl.read_parquet(s.file(f"results/logits/tiny/shapes/{v}/seed0.parquet"))
        ids = [p["id"] for p in prompts]
        assert [g["id"] for g in gens] == ids
        assert [x["id"] for x in verdicts] == ids
        assert logits["id"].to_list() == ids
        for p, g in zip(prompts, gens):
            assert g["text"] == g["prefill"] + g["completion"] and g["prefill"] == p["prefill"]
            assert g["parse_status"] in {"ok", "no_answer", "bad_answer", "no_think"}
            assert g["completion_tokens"] > 0 and g["prompt_tokens"] > 0
        for v_ in verdicts:
            assert v_["quadrant"] in (*QUADRANTS, UNPARSEABLE)
            if v_["quadrant"] == UNPARSEABLE:
                assert v_["reason"]
        for log in (f"logs/generate_completions/tiny/shapes/{v}/seed0.log",
                    f"benchmarks/generate_completions/tiny/shapes/{v}/seed0.tsv"):  # fmt: skip
            assert s.file(log).exists()


def test_the_short_warm_start_learned_the_format(finished_study):
    facts = json.loads(finished_study.file("resources/models/tiny/cotprobe_model.json").read_text())
    assert facts["final_loss"] < facts["initial_loss"]
    gens = jsonl(finished_study.file("results/generations/tiny/shapes/base/seed0.jsonl"))
    # The random model never closes a think and answers (0%); the warm-started one mostly does.
    assert sum(g["parse_status"] == "ok" for g in gens) >= len(gens) // 2


def test_letter_distributions_are_distributions(finished_study):
    s = finished_study
    for v in VARIANTS:
        prompts = {p["id"]: p for p in jsonl(s.file(f"results/prompts/shapes/{v}/seed0.jsonl"))}
        logits = pl.read_parquet(s.file(f"results/logits/tiny/shapes/{v}/seed0.parquet"))
        for row in logits.iter_rows(named=True):
            p = prompts[row["id"]]
            assert row["letters"] == list(p["options"])
            assert math.isclose(sum(row["probs"]), 1.0, abs_tol=1e-5)
            assert 0 <= row["entropy"] <= math.log(len(row["letters"])) + 1e-6
            assert math.isclose(
                row["p_correct"], row["probs"][row["letters"].index(p["answer"])], abs_tol=1e-6
            )
            if v in PUSHING:
                assert p["target_letter"] != p["answer"]
                assert math.isclose(row["p_target"], row["probs"][row["letters"].index(p["target_letter"])])
            assert row["answer_position"] in {"generated", "appended", "prefilled"}


def test_metrics_tables(finished_study):
    s = finished_study
    cells = pl.read_csv(s.file("results/metrics/cells.csv"))
    assert cells.height == len(VARIANTS)
    assert set(cells["variant"]) == set(VARIANTS) and set(cells["judge"]) == {"rule"}
    shares = [f"share_{q}" for q in (*QUADRANTS, UNPARSEABLE)]
    for row in cells.iter_rows(named=True):
        assert row["n"] == 8
        assert math.isclose(sum(row[c] for c in shares), 1.0, abs_tol=1e-9)
        assert 0 <= row["accuracy"] <= 1
    summary = pl.read_csv(s.file("results/metrics/summary.csv"))
    assert summary.height == len(VARIANTS) and "accuracy_lo" in summary.columns
    auroc = pl.read_csv(s.file("results/metrics/auroc.csv"))
    assert set(auroc["variant"]) == set(VARIANTS) - {"base"}
    assert {"auroc_p_base", "auroc_neg_entropy"} <= set(auroc.columns)


def test_figures_are_valid_images(finished_study):
    for name in ("accuracy", "quadrants", "auroc"):
        png = finished_study.file(f"results/figures/{name}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as im:
            im.verify()
        assert finished_study.file(f"results/figures/{name}.pdf").read_bytes()[:5] == b"%PDF-"


# ---- only stale cells rerun (dry-run job lists) ----
def test_second_run_does_nothing(finished_study):
    assert finished_study.planned_jobs() == []


def test_changing_a_judge_reruns_only_its_verdicts_and_aggregates(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["judges"]["rule"]["args"] = {"use_option_text": False}
    jobs = s.planned_jobs(s.write_config("judge_changed.yaml", config))
    rules = [r for r, _ in jobs]
    assert rules.count("judge_completions") == len(VARIANTS)
    assert set(rules) - {"all"} == {"judge_completions", "compute_metrics", "plot_figures"}


def test_adding_a_judge_adds_only_its_cells(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["judges"]["rule-strict"] = {"kind": "rule", "args": {"use_option_text": False}}
    jobs = s.planned_jobs(s.write_config("judge_added.yaml", config))
    judged = [out for r, out in jobs if r == "judge_completions"]
    assert len(judged) == len(VARIANTS) and all(o.startswith("results/verdicts/rule-strict/") for o in judged)
    assert {r for r, _ in jobs} - {"all"} == {"judge_completions", "compute_metrics", "plot_figures"}


def test_adding_a_benchmark_leaves_the_others_untouched(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["benchmarks"]["shapes-large"] = {"kind": "shapes", "args": {"n": 4, "seed": 1, "image_size": 112}}
    jobs = s.planned_jobs(s.write_config("bench_added.yaml", config))
    for rule, out in jobs:
        if rule not in {"compute_metrics", "plot_figures", "all"}:
            assert "shapes-large" in out, (rule, out)
    assert sum(r == "generate_completions" for r, _ in jobs) == len(VARIANTS)


def test_changing_generation_settings_reruns_generation_not_prompts(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["generation"]["max_new_tokens"] = 12
    rules = {r for r, _ in s.planned_jobs(s.write_config("gen_changed.yaml", config))}
    assert rules - {"all"} == {"generate_completions", "judge_completions", "compute_metrics", "plot_figures"}


def test_config_typo_fails_before_any_job(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["variants"].append("wrong_thinks")
    proc = s.run("-n", "--configfile", s.write_config("typo.yaml", config), check=False)
    assert proc.returncode != 0
    assert (
        "config.variants[9]: unknown value 'wrong_thinks'; did you mean 'wrong_think'?"
        in proc.stdout + proc.stderr
    )


@pytest.mark.parametrize("configfile", ["test.yaml"])
def test_lint_is_clean(finished_study, configfile):
    proc = finished_study.run("--lint", "--configfile", configfile, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
