"""Wall time of the embedded default study end to end (tiny model build included), on this machine.

Runs `snakemake --cores all` on config/config.yaml in a scratch copy and prints the total time
and the time per rule (from Snakemake's benchmark files). Target: under 10 minutes on 2 cores.

    python perf/study_time.py
"""

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("Snakefile", "workflow", "config", "envs", "profiles"):
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "all", "--quiet"], cwd=work, env=env, check=True
        )
        total = time.perf_counter() - t0
        per_rule: dict[str, list[float]] = defaultdict(list)
        for tsv in (work / "benchmarks").rglob("*.tsv"):
            rule = tsv.relative_to(work / "benchmarks").parts[0]
            with tsv.open() as fh:
                per_rule[rule].append(float(next(csv.DictReader(fh, delimiter="\t"))["s"]))
    print(f"default study end to end: {total:.1f} s on {os.cpu_count()} cores (target <= 600 s)")
    for rule, secs in sorted(per_rule.items(), key=lambda kv: -sum(kv[1])):
        print(
            f"  {rule:22s} {len(secs):3d} jobs  {sum(secs):7.1f} s in all  {sum(secs) / len(secs):6.2f} s/job"
        )


if __name__ == "__main__":
    main()
