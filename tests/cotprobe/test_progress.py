"""Progress lines (rate, ETA) and the CLI's log level."""

import logging
import subprocess
import sys

from cotprobe.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_lines_at_most_every_interval_and_always_at_the_end(caplog):
    clock = Clock()
    progress = Progress("generate out.jsonl", 100, "prompts", every=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="cotprobe"):
        for _ in range(10):
            clock.now += 10  # 10 prompts every 10 s
            progress.update(10)
    lines = [r.getMessage() for r in caplog.records]
    # At 30, 60 and 90 s, and the last update.
    assert len(lines) == 4
    assert lines[0] == "generate out.jsonl: 30/100 prompts (30%), 1 prompts/s, elapsed 0:30, ETA 1:10"
    assert lines[-1] == "generate out.jsonl: 100/100 prompts (100%), 1 prompts/s, elapsed 1:40"


def test_nothing_to_do_says_so_once(caplog):
    with caplog.at_level(logging.INFO, logger="cotprobe"):
        Progress("judge v.jsonl", 0, "samples", every=30).update(0)
    assert [r.getMessage() for r in caplog.records] == ["judge v.jsonl: 0/0 samples (100%)"]


def test_hours_in_the_eta():
    clock = Clock()
    progress = Progress("train run", 1000, "steps", every=1e9, clock=clock)
    clock.now += 40
    progress.done = 10  # 0.25 steps/s: 990 steps left take 3960 s
    assert progress.line().endswith("elapsed 0:40, ETA 1:06:00")


def test_log_level_option_and_environment(tmp_path):
    spec = '{"kind": "shapes", "args": {"n": 2, "seed": 0}}'

    def run(*extra, env=None):
        cmd = [sys.executable, "-m", "cotprobe", *extra, "prepare", "--spec", spec,
               "--out", str(tmp_path / "d/samples.jsonl")]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        return proc.stderr

    import os

    assert " INFO cotprobe" in run()
    assert run("--log-level", "warning") == ""
    assert run(env={**os.environ, "COTPROBE_LOG_LEVEL": "ERROR"}) == ""
    assert " INFO cotprobe" in run("--log-level", "debug")
