"""A parser change re-reads the answers, re-judges and recomputes the metrics, and never regenerates.

A small real study (the dummy backend: records of the real shape in seconds, the rule judge) is run
once; bumping ``PARSER_VERSION`` is then simulated in the study's copy of the rules, where the
constant reaches the rules' params exactly as an edit of ``cotprobe.parsing`` would.
"""

import copy
import importlib.util
import json
import shlex
from pathlib import Path

import polars as pl
import pytest

from cotprobe.parsing import PARSER_VERSION

# tests/workflow/conftest.py (conftest modules are not importable by name).
_spec = importlib.util.spec_from_file_location("workflow_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
Study, dry_run_jobs = _conftest.Study, _conftest.dry_run_jobs

VARIANTS = ["base", "wrong_think"]
CONFIG = {
    "seeds": [0],
    "variants": VARIANTS,
    "benchmarks": {"shapes": {"kind": "shapes", "args": {"n": 4, "seed": 0, "image_size": 64}}},
    "models": {"fake": {"backend": "dummy", "path": "none"}},
    "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4},
    "judges": {"rule": {"kind": "rule"}},
}
pytestmark = pytest.mark.slow
PARSE_RULES = {"parse_answers", "judge_completions", "compute_metrics", "paper_tables", "plot_figures",
               "sample_browser", "all"}  # fmt: skip
# The acknowledgment cells re-read the answer letters (like the judges), not the parsed files.
ACK_RULES = {"acknowledge_plants", "compute_acknowledgment", "plot_acknowledgment"}
EARLY_RULES = {
    "early_answer",
    "compute_early_answering",
    "plot_early_answering",
}  # read the base answer letter


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    s = Study(tmp_path_factory.mktemp("parser_rerun"))
    s.write_config("dummy.yaml", CONFIG)
    s.run("--cores", "2", "--configfile", "dummy.yaml", "-q")
    return s


def bump_parser(study) -> None:
    """What editing PARSER_VERSION does, in the study's copy: every rule that reads it sees a new value."""
    common = study.file("workflow/rules/common.smk")
    common.write_text(common.read_text() + "\nPARSER_VERSION = PARSER_VERSION + 1\n")


def test_every_cell_is_parsed_with_the_current_parser(study):
    for v in VARIANTS:
        rows = [
            json.loads(x)
            for x in study.file(f"results/parsed/fake/shapes/{v}/seed0.jsonl").read_text().splitlines()
        ]
        gens = [
            json.loads(x)
            for x in study.file(f"results/generations/fake/shapes/{v}/seed0.jsonl").read_text().splitlines()
        ]
        assert [r["id"] for r in rows] == [g["id"] for g in gens] and len(rows) == 4
        assert {r["parser_version"] for r in rows} == {PARSER_VERSION}
        for r, g in zip(rows, gens):
            assert (r["answer_letter"], r["answer_rule"]) == (g["answer_letter"], g["answer_rule"])
    cells = pl.read_csv(study.file("results/metrics/cells.csv"))
    # The dummy backend writes a bare letter or stops inside the think (no answer block).
    for rules, unparsed in zip(cells["answer_rules"], cells["unparsed"]):
        counts = dict(part.rsplit(" ", 1) for part in rules.split(", "))
        assert set(counts) <= {"letter", "no_answer"} and sum(map(int, counts.values())) == 4
        assert int(counts.get("no_answer", 0)) == round(unparsed * 4)
    audit = pl.read_csv(study.file("results/tables/audit.csv"))
    assert audit["answer_rules"].to_list() == cells["answer_rules"].to_list()


def test_a_parser_version_bump_reruns_parse_judge_and_metrics_never_generation(study):
    assert study.planned_jobs("dummy.yaml") == []
    backup = study.file("workflow/rules/common.smk").read_text()
    try:
        bump_parser(study)
        jobs = study.planned_jobs("dummy.yaml")
    finally:
        study.file("workflow/rules/common.smk").write_text(backup)
    assert {
        r for r, _ in jobs
    } == PARSE_RULES | ACK_RULES | EARLY_RULES  # no generate_completions (nor logits, its output)
    cells = [f"fake/shapes/{v}/seed0.jsonl" for v in VARIANTS]
    assert sorted(o for r, o in jobs if r == "parse_answers") == [f"results/parsed/{c}" for c in cells]
    assert sorted(o for r, o in jobs if r == "judge_completions") == [
        f"results/verdicts/rule/{c}" for c in cells
    ]
    assert study.planned_jobs("dummy.yaml") == []  # the bump undone: up to date again


def test_the_llm_extractor_reruns_parse_and_what_reads_it_never_generation_or_judges(study):
    from cotprobe.extractor import Extractor

    # Turned on (the server need not exist for a dry run), changed, then off again.
    config = copy.deepcopy(CONFIG)
    config["extractor"] = {"path": "extractor-model", "settings": {"base_url": "http://127.0.0.1:9/v1"}}
    name = study.write_config("extractor.yaml", config)
    proc = study.run("-n", "-p", "--configfile", name)
    on, spec = dry_run_jobs(proc.stdout + proc.stderr), Extractor.spec(config["extractor"])
    config["extractor"]["sampling"] = {"max_new_tokens": 4}
    changed = study.planned_jobs(study.write_config("extractor_changed.yaml", config))
    cells = [f"results/parsed/fake/shapes/{v}/seed0.jsonl" for v in VARIANTS]
    for jobs in ([(j.rule, j.outputs[0] if j.outputs else "") for j in on], changed):
        assert {r for r, _ in jobs} == PARSE_RULES - {"judge_completions"}
        assert sorted(o for r, o in jobs if r == "parse_answers") == cells
    # The parse command gets the extractor's whole spec, quoted intact.
    for job in (j for j in on if j.rule == "parse_answers"):
        argv = shlex.split(job.shell.split(" > ")[0])
        assert json.loads(argv[argv.index("--extractor") + 1]) == spec
    assert study.planned_jobs("dummy.yaml") == []  # off (absent) is what the study ran with


def test_a_changed_generation_is_parsed_again(study):
    # The counterpart: the parse follows its input, so a regenerated cell is re-read too.
    config = copy.deepcopy(CONFIG)
    config["generation"]["max_new_tokens"] = 6
    rules = {r for r, _ in study.planned_jobs(study.write_config("gen_changed.yaml", config))}
    assert {"generate_completions", "parse_answers", "judge_completions"} <= rules


def test_the_sample_browser_joins_every_cell_and_is_in_the_report(study):
    table = pl.read_parquet(study.file("results/samples/samples.parquet"))
    n = sum(
        len(study.file(f"results/prompts/shapes/{v}/seed0.jsonl").read_text().splitlines()) for v in VARIANTS
    )
    assert table.height == n and set(table["variant"]) == set(VARIANTS) and "verdict_rule" in table.columns
    page = study.file("results/samples/browser.html").read_text()
    assert "window.SAMPLES = " in page and 'src="samples.js"' not in page
    study.run("--configfile", "dummy.yaml", "--report", "results/report.html")
    report = study.file("results/report.html").read_text()
    assert "browser.html" in report and "filter by model, variant" in report
