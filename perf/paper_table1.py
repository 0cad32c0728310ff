"""The first check of a real run (needs a GPU and the hub's model and datasets): Qwen2.5-VL-7B-Instruct's
base accuracy on CV-Bench and 3DSRBench against the paper's Table 1 (78.60 and 55.25), within ±1.5 points.

Runs the pipeline's own rules (`snakemake --cores all`) on a slice of config/paper.yaml: that model,
those two benchmarks, the base prompt, seed 0, the rule judge, the paper's generation settings. The
work happens in a scratch copy of the workflow (``--workdir``) whose ``resources`` links to this
checkout's, so datasets downloaded for the paper config are reused. 3DSRBench is reported raw (every
rotation and flip a sample) and with its own protocol (an item counts only if all are right): the
paper's table does not say which, and the line says which one lands within the tolerance.

    python perf/paper_table1.py                 # the real run (GPU; HF cache or internet)
    python perf/paper_table1.py --dry-run       # the jobs it would run (any machine)
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MODEL = "qwen25vl-7b"
PAPER = {"cvbench": 78.60, "3dsrbench": 55.25}  # Table 1, Qwen2.5-VL-7B-Instruct, accuracy (%)
TOLERANCE = 1.5


def slice_config(paper: dict) -> dict:
    """config/paper.yaml cut down to the model, the two benchmarks, the base prompt and seed 0."""
    return {
        "seeds": [0],
        "variants": ["base"],
        "benchmarks": {b: paper["benchmarks"][b] for b in PAPER},
        "models": {MODEL: paper["models"][MODEL]},
        "generation": paper["generation"],
        "judges": {"rule": {"kind": "rule"}},
        "analysis": {"judge": "rule"},
    }


def prepare(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "envs"):
        src, dst = ROOT / name, workdir / name
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        elif dst.is_dir():
            shutil.rmtree(dst)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    link = workdir / "resources"  # the checkout's datasets and models, when it has any
    if (ROOT / "resources").exists() and not link.exists():
        link.symlink_to(ROOT / "resources")
    config = slice_config(yaml.safe_load((ROOT / "config" / "paper.yaml").read_text()))
    path = workdir / "table1.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_summary(path: Path) -> dict[str, dict[str, float]]:
    """bench -> {"raw": %, "circular": %} of the model's base rows (rule judge)."""
    out: dict[str, dict[str, float]] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            if (row["model"], row["variant"], row["judge"]) != (MODEL, "base", "rule"):
                continue
            out[row["bench"]] = {
                "raw": 100 * float(row["accuracy"]),
                "circular": 100 * float(row.get("accuracy_circular") or row["accuracy"]),
            }
    return out


def verdict(bench: str, measured: dict[str, float]) -> str:
    paper = PAPER[bench]
    parts = [f"{k} {v:.2f} (Δ {v - paper:+.2f})" for k, v in measured.items()]
    within = [k for k, v in measured.items() if abs(v - paper) <= TOLERANCE]
    status = f"met ({', '.join(within)})" if within else "MISSED"
    return f"{bench:10s} paper {paper:.2f} ± {TOLERANCE}: " + ", ".join(parts) + f"  -> {status}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=ROOT / "perf-runs" / "table1")
    p.add_argument("--dry-run", action="store_true", help="print the jobs, run nothing")
    p.add_argument("--cores", default="all")
    args = p.parse_args()
    config = prepare(args.workdir)
    target = "results/metrics/summary.csv"
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", args.cores, "--configfile", str(config)]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if args.dry_run:
        return subprocess.run(
            [*cmd, "-n", "--quiet", "rules"], cwd=args.workdir, env=env, check=False
        ).returncode
    subprocess.run(cmd, cwd=args.workdir, env=env, check=True)
    measured = read_summary(args.workdir / target)
    lines = [verdict(b, measured[b]) for b in PAPER]
    print("\n".join(lines))
    return 0 if all("met" in line for line in lines) else 1


if __name__ == "__main__":
    raise SystemExit(main())
