"""A hub model's revision and resolved commit are part of its cells' identity: a new revision, or a new
upstream commit in the local hub cache, reruns that model's cells and nothing else (dry-run job lists).

Two hub ids (``cotprobe/tiny-a``, ``cotprobe/tiny-b``) live in a hub cache built offline in the
layout huggingface_hub writes; the study runs for real (hf on the tiny model) up to the rule judge's
verdicts, then each config or cache change is checked with ``snakemake -n``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("workflow_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
Study = _conftest.Study

COMMITS = {"a": "a" * 40, "b": "b" * 40}
NEW_B, V2_A = "c" * 40, "d" * 40


def _targets(models=("hub-a", "hub-b")):
    return [f"results/verdicts/rule/{m}/shapes/base/seed0.jsonl" for m in models]


@pytest.fixture(scope="module")
def hub_study(tiny_model_dir, tmp_path_factory):
    from cotprobe.models.tiny import build_tiny_model

    cache = tmp_path_factory.mktemp("hub")
    for name, commit in COMMITS.items():
        repo = cache / f"models--cotprobe--tiny-{name}"
        shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
    build_tiny_model(cache / "models--cotprobe--tiny-a" / "snapshots" / V2_A, seed=1)
    (cache / "models--cotprobe--tiny-a" / "refs" / "v2").write_text(V2_A)
    study = Study(tmp_path_factory.mktemp("hub-study"))
    config = {k: v for k, v in study.config.items() if k != "training"}
    config.update(
        variants=["base"],
        benchmarks={"shapes": {"kind": "shapes", "args": {"n": 2, "seed": 0, "image_size": 112}}},
        models={m: {"backend": "hf", "path": f"cotprobe/tiny-{m[-1]}", "settings": {"device": "cpu"}}
                for m in ("hub-a", "hub-b")},
        judges={"rule": {"kind": "rule"}},
        model_server={"share": False},
        generation={**config["generation"], "max_new_tokens": 8},
    )  # fmt: skip
    study.config = config
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        study.run("--cores", "2", "--configfile", study.write_config("hub.yaml", config), "--show-failed-logs",
                  *_targets())  # fmt: skip
        yield study, cache


def _jobs(study, config, name):
    # "--" ends --configfile's list of files: the targets follow.
    return study.planned_jobs(study.write_config(name, config), "--", *_targets())


def test_the_finished_study_is_up_to_date(hub_study):
    study, _ = hub_study
    assert _jobs(study, study.config, "same.yaml") == []


def test_a_new_revision_reruns_only_that_models_cells(hub_study):
    study, _ = hub_study
    config = copy.deepcopy(study.config)
    config["models"]["hub-a"]["settings"]["revision"] = "v2"
    assert _jobs(study, config, "revision.yaml") == [
        ("generate_completions", "results/generations/hub-a/shapes/base/seed0.jsonl"),
        ("judge_completions", "results/verdicts/rule/hub-a/shapes/base/seed0.jsonl"),
    ]


def test_a_new_upstream_commit_reruns_only_that_models_cells(hub_study):
    study, cache = hub_study
    repo = cache / "models--cotprobe--tiny-b"
    main = repo / "refs" / "main"
    shutil.copytree(repo / "snapshots" / COMMITS["b"], repo / "snapshots" / NEW_B)
    main.write_text(NEW_B)  # what a download of a new push of `main` leaves in the cache
    try:
        assert _jobs(study, study.config, "same.yaml") == [
            ("generate_completions", "results/generations/hub-b/shapes/base/seed0.jsonl"),
            ("judge_completions", "results/verdicts/rule/hub-b/shapes/base/seed0.jsonl"),
        ]
    finally:
        main.write_text(COMMITS["b"])
    assert _jobs(study, study.config, "same.yaml") == []


def test_the_hub_models_ran_and_their_spec_carries_the_commit(hub_study):
    study, _ = hub_study
    rows = [json.loads(line) for line in study.file(
        "results/generations/hub-a/shapes/base/seed0.jsonl").read_text().splitlines()]  # fmt: skip
    assert len(rows) == 2 and all(r["model"] == "hub-a" for r in rows)
    log = study.file("logs/generate_completions/hub-a/shapes/base/seed0.log").read_text()
    assert "error" not in log.lower()
    from cotprobe.workflow import Grid

    with pytest.MonkeyPatch.context() as mp:
        import huggingface_hub.constants as hub

        mp.setattr(hub, "HF_HUB_CACHE", str(hub_study[1]))
        grid = Grid.from_config(study.config)
        assert grid.model_params("hub-a")["commit"] == COMMITS["a"]
        config = copy.deepcopy(study.config)
        config["models"]["hub-a"]["settings"]["revision"] = "v2"
        config["models"]["local"] = {"backend": "hf", "path": str(study.path), "settings": {}}
        grid = Grid.from_config(config)
        assert grid.model_params("hub-a")["commit"] == V2_A
        assert "commit" not in grid.model_params("local")  # a local model's spec is as before
