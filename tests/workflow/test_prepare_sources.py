"""The prepare stage through real Snakemake on fixtures of the real sources' schemas."""

import base64
import importlib.util
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cotprobe" / "benchmarks"))
import source_fixtures as fx

pytestmark = pytest.mark.slow


def _study_class():
    """tests/workflow/conftest.py's Study (conftest modules are not importable by name)."""
    spec = importlib.util.spec_from_file_location(
        "workflow_conftest", Path(__file__).with_name("conftest.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Study


GOOD = ("cvbench", "mme-realworld-lite", "spatial-mm-obj", "geometry3k")


def _targets(benches):
    return [f"results/data/{b}/{f}" for b in benches for f in ("samples.jsonl", "report.json")]


def test_prepare_stage_end_to_end_and_a_failure_keeps_other_outputs(tmp_path):
    (tmp_path / "study").mkdir()
    study = _study_class()(tmp_path / "study")
    sources = fx.write_all(tmp_path / "sources")
    config = dict(study.config)
    config["benchmarks"] = {b: {"kind": sources[b][0], "args": sources[b][1]} for b in GOOD}
    study.write_config("sources.yaml", config)
    # Targets first: --configfile takes several values and would swallow them.
    study.run(*_targets(GOOD), "--cores", "2", "--configfile", "sources.yaml", "--show-failed-logs")
    stamps = {}
    for bench in GOOD:
        samples = [
            json.loads(line)
            for line in study.file(f"results/data/{bench}/samples.jsonl").read_text().splitlines()
        ]
        report = json.loads(study.file(f"results/data/{bench}/report.json").read_text())
        assert report["n_samples"] == len(samples) > 0
        assert all(study.file(s["image"]).is_file() for s in samples)  # paths relative to the workdir
        stamps[bench] = study.file(f"results/data/{bench}/samples.jsonl").stat().st_mtime_ns
    assert json.loads(study.file("results/data/spatial-mm-obj/report.json").read_text())["dropped"] == {
        "answer_text_contradicts_letter": 1
    }

    # A corrupt source: its job fails with a message naming file, row and field; the finished
    # benchmarks' files stay as they were.
    bad = tmp_path / "bad.tsv"
    image = base64.b64encode(fx.png(0)).decode()
    row = {
        "index": 1,
        "question": "Q?",
        "A": "cat",
        "B": "dog",
        "answer": "E",
        "category": "x",
        "image": image,
    }
    fx.write_tsv(bad, [row])
    config["benchmarks"]["broken"] = {"kind": "mmbench", "args": {"path": str(bad)}}
    study.write_config("broken.yaml", config)
    proc = study.run(
        *_targets([*GOOD, "broken"]),
        "--cores",
        "2",
        "--keep-going",
        "--configfile",
        "broken.yaml",
        check=False,
    )
    assert proc.returncode != 0, proc.stderr
    assert "prepare_benchmark" in proc.stderr and "broken" in proc.stderr, proc.stderr
    log = study.file("logs/prepare_benchmark/broken.log").read_text()
    assert "bad.tsv: row 1: field 'answer': answer 'E' names no option" in log
    assert not study.file("results/data/broken/samples.jsonl").exists()
    for bench in GOOD:
        assert study.file(f"results/data/{bench}/samples.jsonl").stat().st_mtime_ns == stamps[bench]
        assert study.file(f"results/data/{bench}/report.json").exists()
