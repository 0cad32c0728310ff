# GRPO training (cotprobe.training). Every saved step of every seed is a declared output dir,
# evaluated as the model {run}-s{seed}-step{N} by the generation rules like any other model.
from pathlib import Path

from cotprobe.workflow import TRAINING_CURVES, TRAINING_FIGURES


rule prepare_training_data:
    output:
        samples="results/training/data/{data}/samples.jsonl",
    log:
        "logs/prepare_training_data/{data}.log",
    benchmark:
        "benchmarks/prepare_training_data/{data}.tsv"
    wildcard_constraints:
        data=_alternation(GRID.training_data) or "$^",
    conda:
        "../../envs/eval.yaml"
    params:
        spec=training_data_spec,
    shell:
        "python -m cotprobe prepare --spec {params.spec:q} --out {output.samples} > {log} 2>&1"


# One rule per run: its saved steps (hence its outputs) come from the config.
for _run, _r in GRID.training_runs.items():
    _samples = " ".join(
        f"--samples {d}={s}"
        for d, s in zip(_r["data"], GRID.train_inputs(_run)["samples"])
    )
    if _r["backend"] == "verl":

        rule:
            name:
                f"verl_prepare_{_run}"
            input:
                **GRID.train_inputs(_run),
            output:
                parquet=f"results/training/{_run}/seed{{seed}}/verl/train.parquet",
                reward=f"results/training/{_run}/seed{{seed}}/verl/reward_fn.py",
                overrides=f"results/training/{_run}/seed{{seed}}/verl/overrides.txt",
                script=f"results/training/{_run}/seed{{seed}}/verl/run.sh",
            log:
                f"logs/verl_prepare/{_run}/seed{{seed}}.log",
            conda:
                "../../envs/eval.yaml"
            resources:
                # SLURM requests (per-run rule names cannot live in the profile); grow on a retry.
                cpus_per_task=4,
                mem_mb=lambda w, attempt: 32000 * attempt,
                runtime=lambda w, attempt: 120 * attempt,
            params:
                spec=as_json(GRID.train_spec(_run)),
                base=lambda w, input, _hub=GRID.train_base(_run): (
                    input.base[0] if input.base else _hub
                ),
                samples=_samples,
                out=lambda w, output: str(Path(output.parquet).parent.parent),
                name=f"{_run}-s{{seed}}",
            shell:
                "python -m cotprobe verl-prepare --spec {params.spec:q} --base {params.base} {params.samples}"
                " --seed {wildcards.seed} --name {params.name} --out {params.out} > {log} 2>&1"

        # verl starts its own Ray cluster on the job's node(s); see README for multi-node.
        rule:
            name:
                f"train_{_run}"
            input:
                script=f"results/training/{_run}/seed{{seed}}/verl/run.sh",
                parquet=f"results/training/{_run}/seed{{seed}}/verl/train.parquet",
                reward=f"results/training/{_run}/seed{{seed}}/verl/reward_fn.py",
            output:
                [directory(p) for p in GRID.trained_outputs(_run)],
            log:
                f"logs/train/{_run}/seed{{seed}}.log",
            benchmark:
                f"benchmarks/train/{_run}/seed{{seed}}.tsv"
            conda:
                "../../envs/verl.yaml"
            resources:
                gpu=GRID.train_gpus(_run),
                nodes=_r.get("verl", {}).get("nnodes", 1),
                # Whole nodes on SLURM: --exclusive grants every CPU and all memory of the node.
                slurm_extra="'--exclusive'",
                runtime=lambda w, attempt: 1440 * attempt,
            shell:
                "bash {input.script} > {log} 2>&1"

        continue

    rule:
        name:
            f"train_{_run}"
        input:
            **GRID.train_inputs(_run),
        output:
            [directory(p) for p in GRID.trained_outputs(_run)],
        log:
            f"logs/train/{_run}/seed{{seed}}.log",
        benchmark:
            f"benchmarks/train/{_run}/seed{{seed}}.tsv"
        conda:
            "../../envs/train.yaml"
        # One thread: on a CPU two single-threaded runs beat one run on two threads (OpenMP threads
        # wait for each other at every small op, and for any other job on the cores); a GPU run
        # does not need more.
        threads: 1
        resources:
            gpu=GRID.train_gpus(_run),
            # SLURM requests (per-run rule names cannot live in the profile); grow on a retry.
            cpus_per_task=8,
            mem_mb=lambda w, attempt: 32000 * attempt,
            runtime=lambda w, attempt: 240 * attempt,
        params:
            spec=as_json(GRID.train_spec(_run)),
            # The built base model's dir (an input), else its hub id.
            base=lambda w, input, _hub=GRID.train_base(_run): (
                input.base[0] if input.base else _hub
            ),
            samples=_samples,
            out=lambda w, output: str(Path(output[0]).parent),
        shell:
            "python -m cotprobe train --spec {params.spec:q} --base {params.base} {params.samples}"
            " --seed {wildcards.seed} --threads {threads} --out {params.out} > {log} 2>&1"


rule training_curves:
    input:
        summary="results/metrics/summary.csv",
        # The thinks behind the reward-hacking diagnostics (think length, templated share, ...).
        parsed=GRID.training_parsed(),
    output:
        curves=report(
            TRAINING_CURVES,
            caption="../report/training_curves_table.rst",
            category="Metrics",
        ),
        figure=report(
            TRAINING_FIGURES[0],
            caption="../report/training_curves.rst",
            category="Figures",
        ),
        figure_pdf=TRAINING_FIGURES[1],
    log:
        "logs/training_curves/training_curves.log",
    benchmark:
        "benchmarks/training_curves/training_curves.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        runs=as_json(GRID.training_axes()),
        parsed_axes=as_json(GRID.training_parsed_axes()),
        judge=GRID.figure_judge,
        version=METRICS_VERSION,
    shell:
        "python -m cotprobe training-curves --summary {input.summary} --runs {params.runs:q}"
        " --parsed-axes {params.parsed_axes:q}"
        " --out {output.curves} --figure {output.figure} --judge {params.judge} > {log} 2>&1"
