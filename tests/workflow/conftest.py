"""Helpers to run the real workflow (Snakemake + the tiny real model) in a scratch copy."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEST_CONFIG = ROOT / "tests/workflow/config/config.yaml"


class Study:
    """A scratch copy of the workflow; runs snakemake inside it."""

    def __init__(self, path: Path):
        self.path = path
        for name in ("Snakefile", "workflow", "config", "envs"):
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, path / name)
        self.config = yaml.safe_load(TEST_CONFIG.read_text())
        self.write_config("test.yaml", self.config)

    def write_config(self, name: str, config: dict) -> str:
        (self.path / name).write_text(yaml.safe_dump(config, sort_keys=False))
        return name

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        # The rules call `python -m cotprobe`: the interpreter running the tests must come first.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
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
        """(rule, first output) of every job a dry run would execute."""
        proc = self.run("-n", "--configfile", configfile, *extra)
        text = proc.stdout + proc.stderr
        jobs = re.findall(
            r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    output: ([^,\n]+)", text, flags=re.MULTILINE
        )
        return sorted(jobs)

    def file(self, rel: str) -> Path:
        return self.path / rel


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> Study:
    """The test study, run once end to end (shared by the workflow tests)."""
    study = Study(tmp_path_factory.mktemp("study"))
    study.run("--cores", "2", "--configfile", "test.yaml", "--show-failed-logs")
    return study
