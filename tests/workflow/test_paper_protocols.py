"""The evaluation protocols end to end on a small real study (dummy backend, rule judge): a circular
benchmark read from a fixture in MMBench's Hub layout, the abstain option under attack, and what a
caption-template change or a letter-set change reruns (dry-run job lists)."""

import copy
import importlib.util
import json
import sys
from pathlib import Path

import polars as pl
import pytest

_spec = importlib.util.spec_from_file_location("workflow_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
Study = _conftest.Study

sys.path.insert(0, str(Path(__file__).parents[1] / "cotprobe" / "benchmarks"))
import source_fixtures as fx

VARIANTS = ["base", "wrong_caption", "wrong_think", "wrong_caption_abstain", "wrong_think_abstain"]
pytestmark = pytest.mark.slow
DOWNSTREAM = {"parse_answers", "judge_completions", "compute_metrics", "paper_tables", "plot_figures",
              "sample_browser", "all", "acknowledge_plants", "compute_acknowledgment", "plot_acknowledgment"}  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    s = Study(tmp_path_factory.mktemp("protocols"))
    args = fx.mmbench(tmp_path_factory.mktemp("mmbench_source"))
    config = {
        "seeds": [0],
        "variants": VARIANTS,
        "benchmarks": {"mmbench": {"kind": "mmbench", "args": {**args, "circular": True}}},
        "models": {"fake": {"backend": "dummy", "path": "none"}},
        "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4},
        "judges": {"rule": {"kind": "rule"}},
    }
    s.config = config
    s.write_config("circ.yaml", config)
    s.run("--cores", "2", "--configfile", "circ.yaml", "-q")
    return s


def jsonl(study, rel):
    return [json.loads(x) for x in study.file(rel).read_text().splitlines()]


def test_circular_items_are_scored_per_original_item(study):
    samples = jsonl(study, "results/data/mmbench/samples.jsonl")
    # The fixture: a four-option item and a two-option one (its copy dropped): 4 + 2 rotations.
    assert sorted(s["id"] for s in samples) == sorted(
        [f"mmbench-241~{k}" for k in range(4)] + [f"mmbench-300~{k}" for k in range(2)]
    )
    report = json.loads(study.file("results/data/mmbench/report.json").read_text())
    assert (report["n_items"], report["n_samples"]) == (2, 6)
    cells = pl.read_csv(study.file("results/metrics/cells.csv"))
    for row in cells.iter_rows(named=True):
        rel = f"fake/mmbench/{row['variant']}/seed0.jsonl"
        prompts = {p["id"]: p for p in jsonl(study, f"results/prompts/mmbench/{row['variant']}/seed0.jsonl")}
        parsed = jsonl(study, f"results/parsed/{rel}")
        right = {p["id"]: p["answer_letter"] == prompts[p["id"]]["answer"] for p in parsed}
        items = {i.split("~")[0] for i in right}
        every = [all(v for k, v in right.items() if k.split("~")[0] == item) for item in items]
        assert row["accuracy"] == pytest.approx(sum(right.values()) / 6)
        assert row["accuracy_circular"] == pytest.approx(sum(every) / 2)
        abstain = prompts[parsed[0]["id"]]["abstain_letter"]
        if row["variant"].endswith("_abstain"):
            share = sum(p["answer_letter"] == prompts[p["id"]]["abstain_letter"] for p in parsed) / 6
            assert abstain is not None and row["abstain_rate"] == pytest.approx(share)
        else:
            assert abstain is None and row["abstain_rate"] is None
    table1 = pl.read_csv(study.file("results/tables/table1_accuracy.csv"))
    assert table1.columns == ["model", "mmbench", "mmbench (circular)"]
    abstain = pl.read_csv(study.file("results/tables/table_abstain.csv"))
    assert dict(zip(abstain["variant"], abstain["without"])) == {
        "wrong_caption_abstain": "wrong_caption", "wrong_think_abstain": "wrong_think"
    }  # fmt: skip
    summary = pl.read_csv(study.file("results/metrics/summary.csv"))
    assert {"accuracy_circular", "accuracy_circular_lo", "abstain_rate", "abstain_rate_hi"} <= set(
        summary.columns
    )


def test_rotations_push_the_same_wrong_text(study):
    for variant in ("wrong_caption", "wrong_caption_abstain", "wrong_think"):
        prompts = jsonl(study, f"results/prompts/mmbench/{variant}/seed0.jsonl")
        pushed = {}
        for p in prompts:
            pushed.setdefault(p["id"].split("~")[0], set()).add(p["options"][p["target_letter"]])
        assert all(len(texts) == 1 for texts in pushed.values()), pushed
        for p in prompts:
            if p["caption"]:
                assert "answer" not in p["caption"].lower()


def test_a_caption_template_change_reruns_only_the_caption_cells(study):
    assert study.planned_jobs("circ.yaml") == []
    common = study.file("workflow/rules/common.smk")
    backup = common.read_text()
    try:  # what bumping WrongCaption.version does: the variant's param changes
        common.write_text(
            backup
            + '\nGRID._versions[("variant", "wrong_caption")] = GRID._version("variant", "wrong_caption") + 1\n'
        )
        jobs = study.planned_jobs("circ.yaml")
    finally:
        common.write_text(backup)
    assert {r for r, _ in jobs} == {"perturb_prompts", "generate_completions"} | DOWNSTREAM
    cell = "mmbench/wrong_caption/seed0"
    assert [o for r, o in jobs if r == "perturb_prompts"] == [f"results/prompts/{cell}.jsonl"]
    assert [o for r, o in jobs if r == "generate_completions"] == [f"results/generations/fake/{cell}.jsonl"]
    assert study.planned_jobs("circ.yaml") == []


def test_the_letter_set_reruns_scoring_and_what_follows_never_the_prompts(study):
    config = copy.deepcopy(study.config)
    config["generation"]["letters"] = "fixed"
    jobs = study.planned_jobs(study.write_config("fixed.yaml", config))
    # Letters are scored in the generation job (one model load): its cells and what reads them rerun.
    early = {"early_answer", "compute_early_answering", "plot_early_answering"}  # the base cells' scores too
    assert {r for r, _ in jobs} == {"generate_completions"} | DOWNSTREAM | early
    assert len([o for r, o in jobs if r == "generate_completions"]) == len(VARIANTS)
    # `options` is the default: set explicitly or not, the same cells, nothing reruns.
    config["generation"]["letters"] = "options"
    assert study.planned_jobs(study.write_config("options.yaml", config)) == []
    assert study.planned_jobs("circ.yaml") == []
