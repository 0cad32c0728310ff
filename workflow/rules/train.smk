# GRPO training (cotprobe.training). Every saved step of every seed is a declared output dir,
# evaluated as the model {run}-s{seed}-step{N} by the generation rules like any other model.
from cotprobe.training import per_attempt
from cotprobe.training.verl_backend import PREPARED as VERL_PREPARED
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


# verl's input files of one (run, seed): the trainer's preparation (cotprobe.training.verl_backend).
rule verl_prepare:
    input:
        unpack(get_train_inputs),
    output:
        **VERL_PREPARED,
    log:
        "logs/verl_prepare/{run}/seed{seed}.log",
    wildcard_constraints:
        run=_alternation(GRID.trainer_runs("verl")),
    conda:
        "../../envs/eval.yaml"
    resources:
        # SLURM requests; they grow on a retry.
        cpus_per_task=4,
        mem_mb=per_attempt(32000),
        runtime=per_attempt(120),
    params:
        spec=train_spec,
        base=train_base,
        samples=train_samples,
        out=verl_dir,
        name=train_name,
    shell:
        "python -m cotprobe verl-prepare --spec {params.spec:q} --base {params.base} {params.samples}"
        " --seed {wildcards.seed} --name {params.name} --out {params.out} > {log} 2>&1"


# Training one (run, seed). Snakemake fixes a rule's outputs when it defines the rule, and each run
# saves its own steps, so each run gets a rule whose outputs are its step dirs; everything else
# (inputs, env, command, resources) is the run's trainer's, reached through the {run} wildcard.
# One rule over {run} would have to declare the whole seed dir as its output: Snakemake deletes a
# failed job's outputs, which would take the trainer's resume state (seed{seed}/work/) with them, and
# every trained model's cells would get a new input and rerun.
for _run in GRID.training_runs:
    _trainer = GRID.trainer(_run)

    rule:
        name:
            f"train_{_run}"
        input:
            unpack(get_train_job_inputs),
        output:
            [directory(p) for p in GRID.trained_outputs(_run)],
        log:
            "logs/train/{run}/seed{seed}.log",
        benchmark:
            "benchmarks/train/{run}/seed{seed}.tsv"
        wildcard_constraints:
            run=re.escape(_run),
        conda:
            trainer_env(_trainer)
        threads: _trainer.threads
        resources:
            gpu=get_train_gpus,
            **_trainer.resources(GRID.training_runs[_run]),
        params:
            **{name: TRAIN_PARAMS[name] for name in _trainer.params},
        shell:
            f"{_trainer.command} > {{log}} 2>&1"


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
