"""`snakemake -n` on a paper-scale grid, against a bare Snakefile with the same jobs.

Grid: 10 models x 8 benchmarks x 9 variants x 3 seeds x 3 judges (the models point at hub ids
that are not present; a dry run never loads them). The bare Snakefile has the same rules,
wildcards and job count but no package, no validation and no params. Prints both times and
their ratio (target: under 30 s and within 1.5x).

    python perf/dag_speed.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [
    "base", "stop_think", "wrong_think", "wrong_think_but", "wrong_caption",
    "wrong_caption_disclaimer", "correct_caption", "correct_think", "abstain",
]  # fmt: skip
MODELS = [f"model-{i}" for i in range(10)]
BENCHES = [f"bench-{i}" for i in range(8)]
JUDGES = [f"judge-{i}" for i in range(3)]
SEEDS = [0, 1, 2]

BARE = """
M = {models}
B = {benches}
V = {variants}
S = {seeds}
J = {judges}

wildcard_constraints:
    model="|".join(M),
    bench="|".join(B),
    variant="|".join(V),
    judge="|".join(J),
    seed=r"\\d+",

rule all:
    input:
        "results/figures/accuracy.png",

rule prepare_bare:
    output:
        "results/data/{{bench}}/samples.jsonl",
    shell:
        "touch {{output}}"

rule perturb_bare:
    input:
        "results/data/{{bench}}/samples.jsonl",
    output:
        "results/prompts/{{bench}}/{{variant}}/seed{{seed}}.jsonl",
    shell:
        "touch {{output}}"

rule generate_bare:
    input:
        "results/prompts/{{bench}}/{{variant}}/seed{{seed}}.jsonl",
    output:
        "results/generations/{{model}}/{{bench}}/{{variant}}/seed{{seed}}.jsonl",
        "results/logits/{{model}}/{{bench}}/{{variant}}/seed{{seed}}.parquet",
    shell:
        "touch {{output}}"

rule judge_bare:
    input:
        "results/generations/{{model}}/{{bench}}/{{variant}}/seed{{seed}}.jsonl",
    output:
        "results/verdicts/{{judge}}/{{model}}/{{bench}}/{{variant}}/seed{{seed}}.jsonl",
    shell:
        "touch {{output}}"

rule metrics_bare:
    input:
        expand(
            "results/verdicts/{{judge}}/{{model}}/{{bench}}/{{variant}}/seed{{seed}}.jsonl",
            judge=J, model=M, bench=B, variant=V, seed=S,
        ),
    output:
        "results/metrics/summary.csv",
    shell:
        "touch {{output}}"

rule figures_bare:
    input:
        "results/metrics/summary.csv",
    output:
        "results/figures/accuracy.png",
    shell:
        "touch {{output}}"
"""


def paper_scale_config() -> dict:
    return {
        "seeds": SEEDS,
        "variants": VARIANTS,
        "benchmarks": {b: {"kind": "shapes", "args": {"n": 100, "seed": i}} for i, b in enumerate(BENCHES)},
        "models": {m: {"backend": "hf", "path": f"Org/Model-{i}-7B"} for i, m in enumerate(MODELS)},
        "judges": {j: {"kind": "rule"} for j in JUDGES},
    }


def dry_run(workdir: Path, *args: str) -> tuple[float, str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *args], check=False,
        cwd=workdir, env=env, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(proc.stdout + proc.stderr)
    total = [line for line in proc.stdout.splitlines() if line.startswith("total")]
    return elapsed, total[0] if total else proc.stdout[-200:]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ours, bare = Path(tmp, "ours"), Path(tmp, "bare")
        ours.mkdir(), bare.mkdir()
        for name in ("Snakefile", "workflow", "config"):
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, ours / name)
        (ours / "paper-scale.yaml").write_text(yaml.safe_dump(paper_scale_config()))
        (bare / "Snakefile").write_text(
            BARE.format(models=MODELS, benches=BENCHES, variants=VARIANTS, seeds=SEEDS, judges=JUDGES)
        )
        t_ours, jobs_ours = dry_run(ours, "--configfile", "paper-scale.yaml")
        t_bare, jobs_bare = dry_run(bare)
    print(f"cotprobe Snakefile : {t_ours:6.1f} s  ({jobs_ours.strip()})")
    print(f"bare Snakefile     : {t_bare:6.1f} s  ({jobs_bare.strip()})")
    print(f"ratio              : {t_ours / t_bare:6.2f}x  (target <= 1.5x, and under 30 s)")


if __name__ == "__main__":
    main()
