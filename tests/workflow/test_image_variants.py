"""Image variants in the workflow: adding one reruns only its own cells; its images, report and skip table.

A small real study (the dummy backend, the rule judge) is run once with the textual variants; the
image variants are then added to its config, as a user would.
"""

import copy
import csv
import hashlib
import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest

# tests/workflow/conftest.py (conftest modules are not importable by name).
_spec = importlib.util.spec_from_file_location("workflow_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
Study = _conftest.Study

TEXT = ["base", "wrong_think"]
IMAGE = ["mirror", "distractor", "crop_zoom"]
CONFIG = {
    "seeds": [0],
    "variants": TEXT,
    "benchmarks": {"shapes": {"kind": "shapes", "args": {"n": 12, "seed": 0, "image_size": 64}}},
    "models": {"fake": {"backend": "dummy", "path": "none"}},
    "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4},
    "judges": {"rule": {"kind": "rule"}},
}
# Jobs that read every cell: they rerun whenever a cell is added.
AGGREGATES = {"compute_metrics", "paper_tables", "plot_figures", "sample_browser", "all"}
CELL_RULES = {"generate_completions", "parse_answers", "judge_completions"}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    s = Study(tmp_path_factory.mktemp("image_variants"))
    s.write_config("text.yaml", CONFIG)
    s.run("--cores", "2", "--configfile", "text.yaml", "-q")
    return s


def _with(variants):
    config = copy.deepcopy(CONFIG)
    config["variants"] = [*TEXT, *variants]
    return config


@pytest.mark.parametrize("added", [["mirror"], IMAGE])
def test_adding_an_image_variant_reruns_only_its_new_cells(study, added):
    jobs = study.planned_jobs(study.write_config(f"with_{len(added)}.yaml", _with(added)))
    rules = {r for r, _ in jobs}
    assert rules - AGGREGATES == {"perturb_images", "image_skips", *CELL_RULES}
    assert sorted(o for r, o in jobs if r == "perturb_images") == sorted(
        f"results/prompts/shapes/{v}/seed0.jsonl" for v in added
    )
    for rule in CELL_RULES:
        outs = [o for r, o in jobs if r == rule]
        assert len(outs) == len(added), (rule, outs)
        assert all(any(f"/shapes/{v}/seed0." in o for v in added) for o in outs), (rule, outs)
    # Nothing of the textual cells: not their prompts, nor their generations.
    assert not any(f"/{v}/" in o for _, o in jobs for v in TEXT)


def test_image_cells_write_hashed_images_and_count_their_skips(study):
    # Up to the verdicts and the skip table: the metrics over skipped samples are the next test's.
    name = study.write_config("images.yaml", _with(IMAGE))
    targets = ["results/metrics/image_skips.csv"] + [
        f"results/verdicts/rule/fake/shapes/{v}/seed0.jsonl" for v in IMAGE
    ]
    study.run(*targets, "--cores", "2", "--configfile", name)
    again = study.run("-n", *targets, "--configfile", name)
    assert _conftest.parse_dry_run(again.stdout + again.stderr) == []  # complete: nothing left to do
    samples = [
        json.loads(x) for x in study.file("results/data/shapes/samples.jsonl").read_text().splitlines()
    ]
    table = list(csv.DictReader(study.file("results/metrics/image_skips.csv").open()))
    for v in IMAGE:
        prompts = [
            json.loads(x)
            for x in study.file(f"results/prompts/shapes/{v}/seed0.jsonl").read_text().splitlines()
        ]
        report = json.loads(study.file(f"results/prompts/shapes/{v}/seed0.report.json").read_text())
        assert report["n_kept"] == len(prompts) > 0
        assert report["n_kept"] + report["n_skipped"] == report["n_samples"] == len(samples)
        assert set(report["edits"]) == {p["id"] for p in prompts}
        for p in prompts:
            # The image is the cell's own file, named by the hash of its bytes.
            assert p["image"].startswith(f"results/prompts/shapes/{v}/seed0.images/")
            digest = hashlib.sha256(study.file(p["image"]).read_bytes()).hexdigest()[:16]
            assert Path(p["image"]).name == f"{digest}.png"
        rows = [r for r in table if r["variant"] == v]
        assert sum(int(r["n_samples"]) for r in rows) == len(samples)
        assert sum(int(r["n_kept"]) for r in rows) == len(prompts)
        assert sum(int(r["n_skipped"]) for r in rows) == report["n_skipped"]
        verdicts = study.file(f"results/verdicts/rule/fake/shapes/{v}/seed0.jsonl").read_text().splitlines()
        assert [json.loads(x)["id"] for x in verdicts] == [p["id"] for p in prompts]
    # A pasted shape moves a count question's answer to the next number, which is not always an
    # option: such samples are skipped, and the table says so.
    count = [r for r in table if r["variant"] == "distractor" and r["category"] == "count"]
    assert count and sum(int(r["n_skipped"]) for r in count) > 0
    for r in count:
        assert (int(r["n_skipped"]) == 0) == (r["reasons"] == "")
        assert not r["reasons"] or r["reasons"].startswith("the count plus one is not an option: ")


def test_mirror_cells_reach_the_metrics_and_the_report(study):
    # The mirror keeps every shapes sample (its relabelling is known for every category), so its
    # cells pair item for item with base.
    name = study.write_config("mirror.yaml", _with(["mirror"]))
    study.run("--cores", "2", "--configfile", name, "-q")
    cells = pl.read_csv(study.file("results/metrics/cells.csv"))
    effects = pl.read_csv(study.file("results/metrics/effects.csv"))
    assert cells.filter(pl.col("variant") == "mirror").height == 1
    assert effects.filter((pl.col("variant") == "mirror") & (pl.col("bench") == "shapes"))[
        "n_pairs"
    ].to_list() == [CONFIG["benchmarks"]["shapes"]["args"]["n"]]
    table = list(csv.DictReader(study.file("results/metrics/image_skips.csv").open()))
    assert {r["variant"] for r in table} == {"mirror"} and all(r["n_skipped"] == "0" for r in table)
    study.run("--configfile", name, "--report", "results/report.html")
    report = study.file("results/report.html").read_text()
    assert "image_skips.csv" in report and r"how many samples the variant\nperturbed (" in report


def test_the_sample_browser_takes_a_cell_with_skipped_samples(study):
    name = study.write_config("browser.yaml", _with(["distractor"]))
    study.run("results/samples/samples.parquet", "--cores", "2", "--configfile", name)
    table = pl.read_parquet(study.file("results/samples/samples.parquet"))
    kept = study.file("results/prompts/shapes/distractor/seed0.jsonl").read_text().splitlines()
    assert (
        table.filter(pl.col("variant") == "distractor").height
        == len(kept)
        < CONFIG["benchmarks"]["shapes"]["args"]["n"]
    )


def test_metrics_over_a_cell_with_skipped_samples(study):
    name = study.write_config("distractor.yaml", _with(["distractor"]))
    proc = study.run("--cores", "2", "--configfile", name, "-q", check=False)
    log = study.file("logs/compute_metrics/compute_metrics.log")
    assert proc.returncode == 0, log.read_text() if log.exists() else proc.stderr
    effects = pl.read_csv(study.file("results/metrics/effects.csv"))
    assert effects.filter(pl.col("variant") == "distractor").height >= 1
    # AUROC of staying correct under the distractor: over the items it kept (fewer than base's).
    auroc = pl.read_csv(study.file("results/metrics/auroc.csv"))
    row = auroc.filter((pl.col("variant") == "distractor") & (pl.col("bench") == "shapes")).row(0, named=True)
    kept = len(study.file("results/prompts/shapes/distractor/seed0.jsonl").read_text().splitlines())
    assert row["n"] == kept < CONFIG["benchmarks"]["shapes"]["args"]["n"]
