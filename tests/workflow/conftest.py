"""Helpers to run the real workflow (Snakemake + the tiny real model) in a scratch copy."""

import copy
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEST_CONFIG = ROOT / "tests/workflow/config/config.yaml"


class Study:
    """A scratch copy of the workflow; runs snakemake inside it."""

    def __init__(self, path: Path):
        self.path = path
        for name in ("Snakefile", "workflow", "config", "envs", "profiles"):
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, path / name)
        self.config = yaml.safe_load(TEST_CONFIG.read_text())
        self.write_config("test.yaml", self.config)

    def copy_to(self, dst: Path) -> "Study":
        """A copy of this study in ``dst``: its files, results and Snakemake's records (modification
        times kept), so Snakemake in the copy sees the same finished outputs as in this study."""
        shutil.copytree(self.path, dst, symlinks=True, dirs_exist_ok=True)
        study = Study.__new__(Study)
        study.path, study.config = dst, copy.deepcopy(self.config)
        return study

    def write_config(self, name: str, config: dict) -> str:
        (self.path / name).write_text(yaml.safe_dump(config, sort_keys=False))
        return name

    def run(
        self, *args: str, check: bool = True, path_first: Path | None = None
    ) -> subprocess.CompletedProcess:
        """``snakemake ARGS`` in the study.

        The rules call ``python -m cotprobe``: the interpreter running the tests comes first on their
        PATH, after ``path_first`` when given (a directory whose commands the rules must find first).
        """
        env = dict(os.environ)
        first = [str(path_first)] if path_first else []
        env["PATH"] = os.pathsep.join([*first, str(Path(sys.executable).parent), env.get("PATH", "")])
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", *args],
            check=False,
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def planned_jobs(self, configfile: str = "test.yaml", *extra: str) -> list[tuple[str, str]]:
        """(rule, first output, "" for none) of every job a dry run would execute.

        Never vacuous: an empty list needs Snakemake's "Nothing to be done", and a non-empty one
        must match the count in its "Job stats" table; output of any other layout fails loudly.
        """
        proc = self.run("-n", "--configfile", configfile, *extra)
        return parse_dry_run(proc.stdout + proc.stderr)

    def file(self, rel: str) -> Path:
        return self.path / rel


NOTHING_TO_DO = "Nothing to be done (all requested files are present and up to date)."
_JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)(?:Shell command: (.*)\n?)?", flags=re.MULTILINE)
_TOTAL = re.compile(r"^Job stats:\njob +count\n[- ]+\n(?:\w+ +\d+\n)*total +(\d+)$", flags=re.MULTILINE)


@dataclass(frozen=True)
class DryRunJob:
    """One job of a dry run: its rule, outputs, wildcards and (with ``-p``) its shell command."""

    rule: str
    outputs: tuple[str, ...]
    wildcards: dict[str, str]
    shell: str | None


def dry_run_jobs(text: str) -> list[DryRunJob]:
    """Every job of a dry run's output, in its order; [] only with Snakemake's "Nothing to be done".

    Raises:
        AssertionError: The output says neither "Nothing to be done" nor has a job table whose total
            is the number of job blocks read: Snakemake's layout is not the one this parser knows.
    """
    jobs = []
    for match in _JOB.finditer(text):
        fields = dict(re.findall(r"^    (\w+): (.*)$", match.group(2), flags=re.MULTILINE))
        outputs = tuple(fields["output"].split(", ")) if "output" in fields else ()
        wildcards = (
            dict(w.split("=", 1) for w in fields["wildcards"].split(", ")) if "wildcards" in fields else {}
        )
        jobs.append(DryRunJob(match.group(1), outputs, wildcards, match.group(3)))
    totals = {int(t) for t in _TOTAL.findall(text)}
    if not jobs and not totals:
        if NOTHING_TO_DO not in text:
            raise AssertionError(f"dry run: neither jobs nor {NOTHING_TO_DO!r} in its output:\n{text}")
        return []
    if totals != {len(jobs)}:
        raise AssertionError(
            f"dry run: read {len(jobs)} job block(s) but its 'Job stats' say {sorted(totals) or 'nothing'}; "
            f"unknown output layout:\n{text}"
        )
    return jobs


def parse_dry_run(text: str) -> list[tuple[str, str]]:
    """The sorted (rule, first output) of the jobs in a dry run's output; "" when a job has no output.

    Raises:
        AssertionError: as ``dry_run_jobs``.
    """
    return sorted((job.rule, job.outputs[0] if job.outputs else "") for job in dry_run_jobs(text))


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> Study:
    """The test study, run once end to end (shared by the workflow tests)."""
    study = Study(tmp_path_factory.mktemp("study"))
    study.run("--cores", "2", "--configfile", "test.yaml", "--show-failed-logs")
    return study
