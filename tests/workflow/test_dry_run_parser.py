"""The dry-run job list that the rerun tests rely on: real Snakemake output, never an empty list by accident."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("workflow_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
NOTHING_TO_DO, parse_dry_run = _conftest.NOTHING_TO_DO, _conftest.parse_dry_run
dry_run_jobs = _conftest.dry_run_jobs

SNAKEFILE = """
rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    shell: "echo a > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    shell: "cat {input} > {output}"

rule c:
    output: "c/{x}.txt", "c/{x}.log"
    shell: "echo {wildcards.x} > {output[0]}; touch {output[1]}"
"""


def dry_run(path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1"],
        cwd=path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> tuple[str, str]:
    """A real dry run's output with jobs pending, then after the run (nothing to do)."""
    path = tmp_path_factory.mktemp("dry")
    (path / "Snakefile").write_text(SNAKEFILE)
    pending = dry_run(path)
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-q"], cwd=path, check=True)
    return pending, dry_run(path)


def test_reads_every_job_of_a_real_dry_run_and_nothing_when_up_to_date(outputs):
    pending, done = outputs
    assert parse_dry_run(pending) == [("a", "a.txt"), ("all", ""), ("b", "b.txt")]
    assert NOTHING_TO_DO in done and parse_dry_run(done) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace(NOTHING_TO_DO, "All done."),  # an up-to-date run in another wording
        lambda t: t.replace("rule ", "job "),  # job blocks in another layout
        lambda t: t.replace("Job stats:", "Jobs:"),  # no job table to check the count against
        lambda t: t.replace("rule b:", "rule b (local):"),  # one job block not read
        lambda t: "",  # no output at all
    ],
)
def test_an_unknown_layout_fails_loudly(outputs, change):
    changed = [change(text) for text in outputs if change(text) != text]
    assert changed
    for text in changed:
        with pytest.raises(AssertionError, match="dry run: "):
            parse_dry_run(text)


def test_reads_outputs_wildcards_and_shell_commands(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "c/one.txt", "b.txt"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    jobs = {job.rule: job for job in dry_run_jobs(proc.stdout + proc.stderr)}
    assert sorted(jobs) == ["a", "b", "c"]
    assert jobs["c"].outputs == ("c/one.txt", "c/one.log") and jobs["c"].wildcards == {"x": "one"}
    assert jobs["c"].shell == "echo one > c/one.txt; touch c/one.log"
    assert jobs["b"].shell == "cat a.txt > b.txt" and jobs["b"].wildcards == {}
