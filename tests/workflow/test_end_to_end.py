"""The whole study, prompts to figures, through real Snakemake and the tiny real model."""

import copy
import json
import math
from pathlib import Path

import polars as pl
import pytest
import yaml
from PIL import Image

from cotprobe.records import QUADRANTS, UNPARSEABLE

# The test study's variants (every textual variant of the paper's suite).
VARIANTS = yaml.safe_load((Path(__file__).with_name("config") / "config.yaml").read_text())["variants"]
PUSHING = {"wrong_think", "wrong_think_but", "wrong_caption", "wrong_caption_disclaimer"}
# The tiny model and the one saved step (2) of each of the two seeds of the test study's GRPO run.
TRAINED = ["grpo-s0-step2", "grpo-s1-step2"]
MODELS = ["tiny", *TRAINED]
JUDGES = ["rule", "tiny-llm", "ensemble", "ensemble-strict"]  # two judges add the two ensembles
AGGREGATES = {
    "compute_metrics", "plot_figures", "compute_judge_agreement", "plot_judge_agreement", "training_curves",
    "paper_tables", "sample_browser", "all", "compute_acknowledgment", "plot_acknowledgment",
    "compute_early_answering", "plot_early_answering",
}  # fmt: skip
PLANTED = ["wrong_think", "wrong_caption"]  # the variants whose moved items are read for an acknowledgment


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
        verdicts = [
            x for j in JUDGES for x in jsonl(s.file(f"results/verdicts/{j}/tiny/shapes/{v}/seed0.jsonl"))
        ]
        logits = pl.read_parquet(s.file(f"results/logits/tiny/shapes/{v}/seed0.parquet"))
        ids = [p["id"] for p in prompts]
        assert [g["id"] for g in gens] == ids
        assert [x["id"] for x in verdicts] == ids * len(JUDGES)
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


def test_the_short_warm_start_learned(finished_study):
    """What the build's 150 steps learn, with a margin that holds on any CPU and thread count: its
    held-out target loss falls to a small fraction of the random model's (measured 0.42-0.56 from
    6.24 over seeds 0-2 x 1, 2, 4 threads). The greedy format rate after so short a run swings
    between 0 and 1 with the CPU's kernels, so the study's outputs are not asserted on it.
    """
    model = finished_study.file("resources/models/tiny")
    facts = json.loads((model / "cotprobe_model.json").read_text())
    vocab = json.loads((model / "config.json").read_text())["text_config"]["vocab_size"]
    assert facts["final_loss"] < 0.6 * facts["initial_loss"]
    # Guessing uniformly over the vocabulary costs ln(V) per token (the random model: 6.24).
    assert facts["validation"]["target_loss"] < 0.25 * math.log(vocab)
    assert facts["threads"] == 2  # the rule's threads, pinned in the build


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
    assert cells.height == len(VARIANTS) * len(MODELS) * len(JUDGES) and set(cells["model"]) == set(MODELS)
    assert set(cells["variant"]) == set(VARIANTS) and set(cells["judge"]) == set(JUDGES)
    shares = [f"share_{q}" for q in (*QUADRANTS, UNPARSEABLE)]
    for row in cells.iter_rows(named=True):
        assert row["n"] == 8
        assert math.isclose(sum(row[c] for c in shares), 1.0, abs_tol=1e-9)
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["unparsed"] <= 1
        assert row["n_generated"] + row["n_appended"] + row["n_prefilled"] == 8
        assert row["flag_unparsed"] == (row["unparsed"] > 0.10)
    summary = pl.read_csv(s.file("results/metrics/summary.csv"))
    assert summary.height == len(VARIANTS) * len(MODELS) * len(JUDGES)
    # One seed: still a real bootstrap interval over the 8 items, around the value.
    for row in summary.iter_rows(named=True):
        assert row["n_items"] == 8 and row["accuracy_lo"] <= row["accuracy"] <= row["accuracy_hi"]
    effects = pl.read_csv(s.file("results/metrics/effects.csv"))
    assert set(effects["variant"]) == set(VARIANTS) - {"base"} and set(effects["bench"]) == {"shapes", "all"}
    for row in effects.iter_rows(named=True):
        assert row["delta_accuracy_lo"] <= row["delta_accuracy"] <= row["delta_accuracy_hi"]
        assert 0 <= row["mcnemar_p"] <= 1 and row["n_pairs"] == 8
    auroc = pl.read_csv(s.file("results/metrics/auroc.csv"))
    assert set(auroc["variant"]) == set(VARIANTS) - {"base"} | {"all"}  # "all": variants pooled
    assert set(auroc.filter(pl.col("variant") == "all")["model"]) == set(MODELS)
    assert {"auroc_p_base", "auroc_neg_entropy", "auroc_diff", "auroc_p_base_lo"} <= set(auroc.columns)
    aurc = pl.read_csv(s.file("results/metrics/aurc.csv"))
    assert set(aurc["bench"]) == {"all"} and set(aurc["model"]) == set(MODELS)
    curve = pl.read_csv(s.file("results/metrics/risk_coverage.csv"))
    assert curve["coverage"].max() == 1.0 and set(curve["model"]) == set(MODELS)
    log = s.file("logs/compute_metrics/compute_metrics.log").read_text()
    assert "flagged" in log or not cells["flag_unparsed"].any()


def test_acknowledgment_rows_follow_the_parsed_answers(finished_study):
    s = finished_study
    for judge in ("rule", "tiny-llm"):
        for model in MODELS:
            for variant in PLANTED:
                prompts = {p["id"]: p for p in jsonl(s.file(f"results/prompts/shapes/{variant}/seed0.jsonl"))}
                base = {p["id"]: p for p in jsonl(s.file(f"results/parsed/{model}/shapes/base/seed0.jsonl"))}
                under = {
                    p["id"]: p for p in jsonl(s.file(f"results/parsed/{model}/shapes/{variant}/seed0.jsonl"))
                }
                rows = jsonl(s.file(f"results/acknowledgment/{judge}/{model}/shapes/{variant}/seed0.jsonl"))
                assert [r["id"] for r in rows] == list(prompts)
                for r in rows:
                    b, g = base[r["id"]]["answer_letter"], under[r["id"]]["answer_letter"]
                    assert (r["base_letter"], r["answer_letter"]) == (b, g)
                    assert r["moved"] == (b is not None and g == prompts[r["id"]]["target_letter"] != b)
                    assert r["moved"] or r["acknowledged"] is None
                    # The tiny model is no judge: its replies rarely hold a verdict line, and say so.
                    if r["moved"] and r["acknowledged"] is None:
                        assert r["reason"].startswith("judge:") and judge == "tiny-llm"
    table = pl.read_csv(s.file("results/metrics/acknowledgment.csv"))
    assert table.height == 2 * len(MODELS) * len(PLANTED)
    assert set(table["judge"]) == {"rule", "tiny-llm"}
    assert s.file("results/figures/acknowledgment.png").stat().st_size > 0


def test_early_answering_cuts_every_base_think(finished_study):
    s = finished_study
    n_items = len(jsonl(s.file("results/prompts/shapes/base/seed0.jsonl")))
    for model in MODELS:
        rows = pl.read_parquet(s.file(f"results/early_answer/{model}/shapes/seed0.parquet"))
        assert rows.height == 5 * n_items and set(rows["fraction"]) == {0.0, 0.25, 0.5, 0.75, 1.0}
        scored = rows.filter(pl.col("missing_reason").is_null())
        assert scored.height and (scored["unit"] == "tokens").all()
        assert scored["p_final"].is_between(0, 1).all()
        assert (scored["kept_units"] <= scored["n_units"]).all()
    table = pl.read_csv(s.file("results/metrics/early_answering.csv"))
    assert table.height == 5 * len(MODELS)
    assert s.file("results/figures/early_answering.png").stat().st_size > 0


def test_paper_tables(finished_study):
    s = finished_study
    table1 = pl.read_csv(s.file("results/tables/table1_accuracy.csv"))
    assert table1.columns == ["model", "shapes"] and set(table1["model"]) == set(MODELS)
    assert all("[" in x for x in table1["shapes"])
    delta = pl.read_csv(s.file("results/tables/table_delta.csv"))
    assert set(delta.columns) == {"model", *VARIANTS} - {"base"}
    head = pl.read_csv(s.file("results/tables/table_auroc.csv"))
    assert head.columns == ["model", "n", "P_base", "-H", "difference"]
    agreement = pl.read_csv(s.file("results/tables/table3_agreement.csv"))
    assert agreement["bench"].to_list() == ["shapes"]
    audit = pl.read_csv(s.file("results/tables/audit.csv"))
    assert audit.height == len(VARIANTS) * len(MODELS)
    page = s.file("results/tables/tables.html").read_text()
    assert "Flagged cells" in page and "Table 1" in page and "Krippendorff" in page


def test_changing_the_bootstrap_reruns_only_the_aggregates(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["analysis"] = {"bootstrap": {"n": 500}}
    rules = {r for r, _ in s.planned_jobs(s.write_config("bootstrap.yaml", config))}
    assert rules and rules <= AGGREGATES and "compute_metrics" in rules


def test_llm_judge_keeps_its_raw_replies_and_says_why_it_cannot_read_them(finished_study):
    s = finished_study
    asked = 0
    for v in VARIANTS:
        gens = {g["id"]: g for g in jsonl(s.file(f"results/generations/tiny/shapes/{v}/seed0.jsonl"))}
        for x in jsonl(s.file(f"results/verdicts/tiny-llm/tiny/shapes/{v}/seed0.jsonl")):
            think = gens[x["id"]]["think"]
            assert (x["judge_output"] is not None) == bool(think and think.strip())  # asked iff a think
            if x["judge_output"] is not None:
                asked += 1
                # The tiny model never writes a verdict line: an explicit unparseable verdict, with why.
                assert x["quadrant"] == UNPARSEABLE and "judge: no 'Verdict: think=" in x["reason"]
    assert asked > 0
    log = s.file("logs/judge_completions/tiny-llm/tiny/shapes/base/seed0.log").read_text()
    assert "already judged (resumed)" in log
    assert not list(s.path.glob("results/verdicts/**/*.part"))


def test_ensembles_combine_the_member_verdicts(finished_study):
    s = finished_study
    for v in VARIANTS:
        rule, llm, majority, strict = (
            jsonl(s.file(f"results/verdicts/{j}/tiny/shapes/{v}/seed0.jsonl")) for j in JUDGES
        )
        for a, b, m, st in zip(rule, llm, majority, strict):
            assert m["votes"] == st["votes"] == {"rule": a["quadrant"], "tiny-llm": b["quadrant"]}
            agreed = a["quadrant"] == b["quadrant"] != UNPARSEABLE
            assert st["quadrant"] == m["quadrant"] == (a["quadrant"] if agreed else UNPARSEABLE)


def test_judge_agreement_table(finished_study):
    table = pl.read_csv(finished_study.file("results/metrics/judge_agreement.csv"))
    per_model = [(m, "shapes", "rule+tiny-llm", stat) for m in sorted(MODELS) for stat in ("fleiss", "cohen")]
    assert table.select("model", "bench", "raters", "statistic").rows() == [
        *per_model,
        ("all", "shapes", "rule+tiny-llm", "fleiss"),
        ("all", "shapes", "rule+tiny-llm", "cohen"),
    ]
    assert all(0 <= a <= 1 for a in table["agreement"].drop_nulls())
    assert {"alpha", "alpha_lo", "kappa_lo", "agreement_hi"} <= set(table.columns)


def test_figures_are_valid_images(finished_study):
    for name in (
        "accuracy",
        "quadrants",
        "auroc",
        "delta_forest",
        "uncertainty",
        "risk_coverage",
        "judge_agreement",
    ):
        png = finished_study.file(f"results/figures/{name}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as im:
            im.verify()
        assert finished_study.file(f"results/figures/{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_each_model_is_loaded_once_for_all_its_cells(finished_study):
    from cotprobe.serving.leases import count_loads

    root = finished_study.file(".cotprobe/model_servers")
    # A generation cell per variant and model, one load each (hf: a shared server per model).
    assert count_loads(root) == {m: 1 for m in MODELS}
    for cell in finished_study.path.glob("logs/generate_completions/*/shapes/*/seed0.log"):
        text = cell.read_text()
        assert "using model server http://127.0.0.1:" in text and "loaded hf backend" not in text, cell
    # The LLM judge (the tiny model's weights) uses the tiny model's server: no load of its own.
    judged = list(finished_study.path.glob("logs/judge_completions/tiny-llm/*/shapes/*/seed0.log"))
    assert len(judged) == len(VARIANTS) * len(MODELS)
    texts = [cell.read_text() for cell in judged]
    assert not any("loaded hf backend" in t for t in texts)
    # (a cell whose generations have no closed think asks the model nothing and needs no server)
    assert sum("attaching to the model server" in t for t in texts) >= len(MODELS)
    # The run stopped its servers when it ended (not after their idle timeout).
    assert not list(root.glob("*/*.json"))


# ---- only stale cells rerun (dry-run job lists) ----
def test_second_run_does_nothing(finished_study):
    assert finished_study.planned_jobs() == []


def test_changing_a_judge_reruns_only_its_verdicts_and_aggregates(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["judges"]["rule"]["args"] = {"use_option_text": False}
    jobs = s.planned_jobs(s.write_config("judge_changed.yaml", config))
    judged = [out for r, out in jobs if r == "judge_completions"]
    assert len(judged) == len(VARIANTS) * len(MODELS)
    assert all(o.startswith("results/verdicts/rule/") for o in judged)
    # ...and what depends on them: both ensembles, the aggregates; never the LLM judge.
    assert sum(r == "ensemble_verdicts" for r, _ in jobs) == 2 * len(VARIANTS) * len(MODELS)
    assert {r for r, _ in jobs} - AGGREGATES == {"judge_completions", "ensemble_verdicts"}


def assert_only_the_judges_cells(jobs, judge):
    """The planned jobs are ``judge``'s verdicts and acknowledgments, the ensembles and the aggregates."""
    judged = [out for r, out in jobs if r == "judge_completions"]
    assert len(judged) == len(VARIANTS) * len(MODELS)
    assert all(o.startswith(f"results/verdicts/{judge}/") for o in judged)
    acked = [out for r, out in jobs if r == "acknowledge_plants"]
    assert len(acked) == len(PLANTED) * len(MODELS)
    assert all(o.startswith(f"results/acknowledgment/{judge}/") for o in acked)
    assert {r for r, _ in jobs} - AGGREGATES == {
        "judge_completions",
        "ensemble_verdicts",
        "acknowledge_plants",
    }


def test_changing_the_llm_judge_reruns_only_its_cells(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["judges"]["tiny-llm"]["args"]["sampling"]["max_new_tokens"] = 8
    jobs = s.planned_jobs(s.write_config("llm_changed.yaml", config))
    # Its model also reads the acknowledgments: those cells rerun, the rule's do not.
    assert_only_the_judges_cells(jobs, "tiny-llm")


def test_adding_a_judge_adds_only_its_cells(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["judges"]["rule-strict"] = {"kind": "rule", "args": {"use_option_text": False}}
    jobs = s.planned_jobs(s.write_config("judge_added.yaml", config))
    # The automatic ensembles now have three members: they are recombined; no other judge reruns.
    assert_only_the_judges_cells(jobs, "rule-strict")


def test_adding_a_benchmark_leaves_the_others_untouched(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["benchmarks"]["shapes-large"] = {"kind": "shapes", "args": {"n": 4, "seed": 1, "image_size": 112}}
    jobs = s.planned_jobs(s.write_config("bench_added.yaml", config))
    for rule, out in jobs:
        if rule not in AGGREGATES:
            assert "shapes-large" in out, (rule, out)
    assert sum(r == "generate_completions" for r, _ in jobs) == len(VARIANTS) * len(MODELS)
    assert sum(r == "judge_completions" for r, _ in jobs) == 2 * len(VARIANTS) * len(MODELS)


def test_model_server_settings_rerun_nothing(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["model_server"] = {"share": False, "idle_timeout": 5}
    assert s.planned_jobs(s.write_config("unshared.yaml", config)) == []


def test_changing_generation_settings_reruns_generation_not_prompts(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["generation"]["max_new_tokens"] = 12
    rules = {r for r, _ in s.planned_jobs(s.write_config("gen_changed.yaml", config))}
    assert rules - AGGREGATES == {
        "generate_completions", "parse_answers", "judge_completions", "ensemble_verdicts", "acknowledge_plants",
        "early_answer",
    }  # fmt: skip


def test_every_saved_step_is_trained_and_evaluated(finished_study):
    s = finished_study
    for seed in (0, 1):
        step = s.file(f"results/training/grpo/seed{seed}/step2")
        facts = json.loads((step / "cotprobe_model.json").read_text())
        assert (facts["step"], facts["seed"]) == (2, seed)
        assert (step / "model.safetensors").exists() and s.file(f"logs/train/grpo/seed{seed}.log").exists()
        rewards = jsonl(s.file(f"results/training/grpo/seed{seed}/work/rewards.jsonl"))
        assert [r["step"] for r in rewards] == [1, 2] and all(r["n"] == 4 for r in rewards)
    for model in TRAINED:
        gens = jsonl(s.file(f"results/generations/{model}/shapes/base/seed0.jsonl"))
        assert len(gens) == 8 and all(g["model"] == model for g in gens)
    # The two seeds trained differently (different data order and samples).
    assert (s.file("results/training/grpo/seed0/step2/model.safetensors").read_bytes()
            != s.file("results/training/grpo/seed1/step2/model.safetensors").read_bytes())  # fmt: skip


def test_training_curves(finished_study):
    s = finished_study
    curves = pl.read_csv(s.file("results/metrics/training_curves.csv"))
    assert curves.height == 2 * 2 * len(VARIANTS) * len(JUDGES)  # seeds x steps (0 and 2) x variants x judges
    assert set(curves["step"]) == {0, 2} and set(curves["train_seed"]) == {0, 1}
    assert {"accuracy_lo", "accuracy_hi", "consistency_lo"} <= set(curves.columns)
    cells = pl.read_csv(s.file("results/metrics/cells.csv"))
    for row in curves.iter_rows(named=True):
        model = "tiny" if row["step"] == 0 else f"grpo-s{row['train_seed']}-step2"
        assert row["model"] == model
        cell = cells.filter(
            (pl.col("model") == model)
            & (pl.col("variant") == row["variant"])
            & (pl.col("judge") == row["judge"])
        ).row(0, named=True)
        assert math.isclose(row["accuracy"], cell["accuracy"])
        consistent = cell["share_consistent_correct"] + cell["share_consistent_incorrect"]
        assert math.isclose(row["consistency"], consistent)
    png = s.file("results/figures/training_curves.png")
    assert (
        png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        and s.file("results/figures/training_curves.pdf").exists()
    )


def test_changing_a_run_retrains_it_and_reevaluates_only_its_steps(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["training"]["runs"]["grpo"]["lr"] = 5e-5
    jobs = s.planned_jobs(s.write_config("run_changed.yaml", config))
    assert sorted(out for r, out in jobs if r == "train_grpo") == [
        "results/training/grpo/seed0/step2", "results/training/grpo/seed1/step2",
    ]  # fmt: skip
    generated = [out for r, out in jobs if r == "generate_completions"]
    assert len(generated) == len(VARIANTS) * len(TRAINED)
    assert not any(out.startswith("results/generations/tiny/") for out in generated)


def test_adding_a_training_seed_trains_and_evaluates_only_it(finished_study):
    s = finished_study
    config = copy.deepcopy(s.config)
    config["training"]["runs"]["grpo"]["seeds"] = [0, 1, 2]
    jobs = s.planned_jobs(s.write_config("seed_added.yaml", config))
    assert [out for r, out in jobs if r == "train_grpo"] == ["results/training/grpo/seed2/step2"]
    generated = [out for r, out in jobs if r == "generate_completions"]
    assert len(generated) == len(VARIANTS) and all("/grpo-s2-step2/" in out for out in generated)


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
