"""`snakemake -n` on the paper grid (config/paper.yaml), against a bare Snakefile with the same jobs.

The bare Snakefile is derived from the real job graph (``snakemake --dag``): one rule per real
rule, with exactly as many jobs, each job reading the outputs of the jobs it depends on in the
real DAG and touching one file. It has no package, no validation, no params and no wildcards but
a job index, so the difference is what cotprobe adds to Snakemake's own cost for a DAG of that
size. Prints each rule's job count in both, both times (wall and CPU) and their ratios (target: <= 1.3x),
and the same for ``--dag`` (the DAG built and printed, without the dry run's report of each job).

One pair of runs swings by several percent on a VM (a run that did strictly less work has taken 5 %
longer), as much as the distance to the target: ``--repeat N`` runs the pairs N times, the two
Snakefiles one after the other each time, and prints every pair's ratio and their median.

    python perf/dag_speed.py [--configfile config/paper.yaml] [--repeat 1]
"""

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("Snakefile", "workflow", "config", "profiles")

BARE_HEAD = """
import json

DEPS = json.load(open("deps.json"))


def deps(rule):
    return lambda wildcards: DEPS[rule][int(wildcards.i)]


wildcard_constraints:
    i=r"\\d+",


rule all:
    input:
        DEPS["all"][0],
"""

BARE_RULE = """

rule {rule}:
    input:
        deps("{rule}"),
    output:
        "jobs/{rule}/{{i}}",
    shell:
        "touch {{output}}"
"""

NODE = re.compile(r'^\s*(\d+)\[label = "([^"\\]+)')
EDGE = re.compile(r"^\s*(\d+) -> (\d+)")


def snakemake(workdir: Path, *args: str) -> tuple[float, float, str]:
    """Run ``snakemake *args``: its wall and CPU seconds (user + system) and its stdout."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        check=False,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if proc.returncode != 0:
        sys.exit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return wall, cpu, proc.stdout


def job_graph(workdir: Path, *args: str) -> tuple[dict[str, str], list[tuple[str, str]], float, float]:
    """The real DAG's jobs (id -> rule) and edges (dependency, dependent), from ``--dag``, and that
    run's wall and CPU seconds."""
    wall, cpu, dot = snakemake(workdir, "--dag", *args)
    rules, edges = {}, []
    for line in dot.splitlines():
        if m := NODE.match(line):
            rules[m[1]] = m[2]
        elif m := EDGE.match(line):
            edges.append((m[1], m[2]))
    return rules, edges, wall, cpu


def bare_workflow(rules: dict[str, str], edges: list[tuple[str, str]]) -> tuple[str, dict]:
    """A Snakefile and its ``deps.json`` with the same jobs and edges, one rule per real rule."""
    index, per_rule = {}, defaultdict(int)
    for job, rule in sorted(rules.items(), key=lambda kv: int(kv[0])):
        index[job] = per_rule[rule]
        per_rule[rule] += 1
    path = {job: f"jobs/{rule}/{index[job]}" for job, rule in rules.items()}
    deps: dict[str, list[list[str]]] = {rule: [[] for _ in range(n)] for rule, n in per_rule.items()}
    for dep, job in edges:
        deps[rules[job]][index[job]].append(path[dep])
    if per_rule.get("all") != 1:
        sys.exit(f"expected one 'all' job in the real DAG, found {per_rule.get('all', 0)}")
    body = "".join(BARE_RULE.format(rule=rule) for rule in per_rule if rule != "all")
    return BARE_HEAD + body, deps


def job_counts(table: str) -> dict[str, int]:
    """``--quiet rules`` output (a ``job  count`` table) as {rule: count}, with ``total``."""
    counts = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def ratios(label: str, ours: list[tuple[float, float]], bare: list[tuple[float, float]]) -> None:
    """Each pair's times (wall, CPU) and ratios, then the medians."""
    print(
        f"{label:20} {'wall s':>8} {'CPU s':>8}   {'bare wall':>9} {'bare CPU':>9}   {'wall x':>7} {'CPU x':>7}"
    )
    for i, ((w, c), (bw, bc)) in enumerate(zip(ours, bare), 1):
        print(
            f"{'pair ' + str(i):20} {w:8.1f} {c:8.1f}   {bw:9.1f} {bc:9.1f}   {w / bw:6.2f}x {c / bc:6.2f}x"
        )
    if len(ours) > 1:
        walls = [w / bw for (w, _), (bw, _) in zip(ours, bare)]
        cpus = [c / bc for (_, c), (_, bc) in zip(ours, bare)]
        print(
            f"{'median (min-max)':20} {'':8} {'':8}   {'':9} {'':9}   {statistics.median(walls):6.2f}x"
            f" {statistics.median(cpus):6.2f}x  CPU {min(cpus):.2f}-{max(cpus):.2f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default="config/paper.yaml")
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs of each kind (median reported)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        ours, bare = Path(tmp, "ours"), Path(tmp, "bare")
        ours.mkdir(), bare.mkdir()
        for name in COPIED:
            src = ROOT / name
            if src.exists():
                (shutil.copytree if src.is_dir() else shutil.copy)(src, ours / name)
        config = ("--configfile", args.configfile)
        rules, edges, dag_wall, dag_cpu = job_graph(ours, *config)
        runs["dag ours"].append((dag_wall, dag_cpu))
        snakefile, deps = bare_workflow(rules, edges)
        (bare / "Snakefile").write_text(snakefile)
        (bare / "deps.json").write_text(json.dumps(deps))
        for i in range(args.repeat):
            wall, cpu, out_ours = snakemake(ours, "-n", "--quiet", "rules", *config)
            runs["n ours"].append((wall, cpu))
            wall, cpu, out_bare = snakemake(bare, "-n", "--quiet", "rules")
            runs["n bare"].append((wall, cpu))
            if i:  # the first --dag of ours built the bare Snakefile
                runs["dag ours"].append(snakemake(ours, "--dag", *config)[:2])
            runs["dag bare"].append(snakemake(bare, "--dag")[:2])
    n_ours, n_bare = job_counts(out_ours), job_counts(out_bare)
    print(f"{'rule':32} {'cotprobe':>9} {'bare':>9}")
    for rule in sorted(n_ours, key=lambda r: (r == "total", r)):
        print(f"{rule:32} {n_ours[rule]:9d} {n_bare.get(rule, 0):9d}")
    print(f"edges in the real DAG: {len(edges)}")
    if n_ours != n_bare:
        print("WARNING: the job counts differ")
    # On a shared machine the CPU time is the fair comparison (wall time counts others' work too).
    ratios("snakemake -n", runs["n ours"], runs["n bare"])
    print("(target <= 1.3x)")
    # `--dag` builds the same DAG and prints it as DOT, without the dry run's report of each job
    # (its formatted shell command, resources, log and benchmark paths): where the two differ.
    ratios("--dag only", runs["dag ours"], runs["dag bare"])


if __name__ == "__main__":
    main()
