"""perf/paper_table1.py: the GPU check of Table 1 plans the right jobs here and reads its result right."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("paper_table1", ROOT / "perf" / "paper_table1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dry_run_plans_one_generation_per_benchmark(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "perf" / "paper_table1.py"), "--dry-run", "--workdir", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts["generate_completions"] == 2 and counts["prepare_benchmark"] == 2, proc.stdout
    assert "train" not in " ".join(counts)


def test_the_verdict_reads_raw_and_circular_accuracy(tmp_path):
    t1 = _script()
    summary = tmp_path / "summary.csv"
    summary.write_text(
        "model,bench,variant,judge,accuracy,accuracy_circular\n"
        "qwen25vl-7b,cvbench,base,rule,0.79,0.79\n"
        "qwen25vl-7b,3dsrbench,base,rule,0.60,0.552\n"
        "qwen25vl-7b,3dsrbench,wrong_think,rule,0.1,0.1\n"
    )
    measured = t1.read_summary(summary)
    assert measured["3dsrbench"] == {"raw": 60.0, "circular": 55.2}
    assert t1.verdict("cvbench", measured["cvbench"]).endswith("met (raw, circular)")
    assert t1.verdict("3dsrbench", measured["3dsrbench"]).endswith("met (circular)")
    assert t1.verdict("3dsrbench", {"raw": 60.0}).endswith("MISSED")
