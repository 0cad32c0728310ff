"""A generation job killed with SIGKILL resumes from its part file without redoing finished records."""

import json
import os
import signal
import subprocess
import sys
import time

from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import write_jsonl
from cotprobe.variants import perturb

# 12 batches of 4: the kill lands after 3 are on disk, with 9 (several seconds of generation) to go;
# a job that finished first fails the test rather than passing it unkilled.
N = 48


def _generate_cmd(model_dir, prompts, out):
    spec = {
        "backend": "hf",
        "path": str(model_dir),
        "settings": {"device": "cpu"},
        "generation": {"max_new_tokens": 48, "temperature": 0.0, "top_p": 1.0, "batch_size": 4},
        "version": 1,
    }
    return [sys.executable, "-m", "cotprobe", "generate", "--model", "tiny", "--spec", json.dumps(spec),
            "--prompts", str(prompts), "--seed", "0", "--threads", "1",
            "--out", str(out), "--logits-out", str(out.with_suffix(".parquet"))]  # fmt: skip


def _texts(path):
    return [(r["id"], r["text"]) for r in map(json.loads, path.read_text().splitlines())]


def test_sigkill_then_restart_finishes_without_redoing(tiny_model_dir, tmp_path):
    samples = Shapes(n=N, seed=5).prepare(tmp_path / "data")
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, (p.to_dict() for p in perturb(samples, "base", bench="shapes", seed=0)))
    reference = tmp_path / "reference.jsonl"
    subprocess.run(_generate_cmd(tiny_model_dir, prompts, reference), check=True, capture_output=True)

    out = tmp_path / "gen.jsonl"
    part = tmp_path / "gen.jsonl.part"
    proc = subprocess.Popen(_generate_cmd(tiny_model_dir, prompts, out), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once a few batches are on disk
        if part.exists() and part.read_text().count("\n") >= 1 + 3 * 4:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the job finished before it could be killed"
    done = part.read_text().count("\n") - 1
    assert 0 < done < N

    log = subprocess.run(
        _generate_cmd(tiny_model_dir, prompts, out), check=True, capture_output=True, text=True
    )
    assert f"{done} already generated (resumed), {N - done} to go" in log.stderr
    assert _texts(out) == _texts(reference)
    assert not part.exists()
