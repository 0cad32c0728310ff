import re
from pathlib import Path

from snakemake.utils import validate

from cotprobe.early_answer import EARLY_VERSION
from cotprobe.workflow import (
    FIGURES_VERSION,
    METRICS_VERSION,
    PARSER_VERSION,
    SAMPLES_VERSION,
    Grid,
    as_json,
    export_model_server_env,
)

# Our validator first: its errors name the bad key and suggest the closest known name.
GRID = Grid.from_config(
    config, Path(workflow.current_basedir) / "../schemas/config.schema.yaml"
)
validate(config, schema="../schemas/config.schema.yaml")
GRID.check_plugins()

# Generation cells of one model share one load (cotprobe.serving.leases.attach). Told by environment
# (inherited by every job), not by params or the shell command: it changes no output, so switching
# it must not rerun cells. The environment also carries this run's id (COTPROBE_RUN_ID), which the
# servers its cells start record: the run's end stops only those, and only when idle.
RUN_ID = export_model_server_env(config, main_process=workflow.is_main_process)


def _alternation(ids):
    # An empty list matches nothing (e.g. no ensemble configured).
    return "|".join(map(re.escape, ids)) or "(?!)"


wildcard_constraints:
    model=_alternation(GRID.models),
    bench=_alternation(GRID.benchmarks),
    variant=_alternation(GRID.variants),
    judge=_alternation(GRID.judges),
    seed=r"\d+",


def get_final_output():
    return GRID.final_targets()


def get_model_inputs(wildcards):
    return GRID.model_inputs(wildcards.model)


def get_perturb_reports(wildcards):
    return GRID.perturb_reports()


def get_metric_inputs(wildcards):
    return GRID.metric_inputs()


def bench_spec(wildcards):
    return as_json(GRID.bench_spec(wildcards.bench))


def variant_spec(wildcards):
    return as_json(GRID.variant_spec(wildcards.variant))


def model_params(wildcards):
    return as_json(GRID.model_params(wildcards.model))


def build_spec(wildcards):
    return as_json(GRID.build_spec(wildcards.model))


def training_data_spec(wildcards):
    return as_json(GRID.training_data_spec(wildcards.data))


def get_train_inputs(wildcards):
    return GRID.train_inputs(wildcards.run)


def get_train_job_inputs(wildcards):
    return GRID.train_job_inputs(wildcards.run, wildcards.seed)


def get_train_gpus(wildcards):
    return GRID.train_gpus(wildcards.run)


def train_spec(wildcards):
    return as_json(GRID.train_spec(wildcards.run))


# The params derived from a job's input or output are not recorded by Snakemake (not rerun triggers).
def train_base(wildcards, input):
    # The built base model's dir (an input), else its hub id.
    return input.base[0] if input.base else GRID.train_base(wildcards.run)


def train_samples(wildcards):
    return GRID.train_samples_option(wildcards.run)


def train_dir(wildcards, output):
    # The dir holding the step dirs (the outputs).
    return str(Path(output[0]).parent)


def verl_dir(wildcards, output):
    # The dir holding verl/ (the outputs).
    return str(Path(output.parquet).parent.parent)


def train_name(wildcards):
    return f"{wildcards.run}-s{wildcards.seed}"


# The params a trainer's command may read (cotprobe.training.Trainer.params).
TRAIN_PARAMS = {
    "spec": train_spec,
    "base": train_base,
    "samples": train_samples,
    "out": train_dir,
}


def trainer_env(trainer):
    return f"../../envs/{trainer.env}.yaml"


def extractor_spec(wildcards):
    return as_json(GRID.extractor_spec())


def judge_spec(wildcards):
    return as_json(GRID.judge_spec(wildcards.judge))


def ack_spec(wildcards):
    return as_json(GRID.ack_spec(wildcards.judge))


def get_judge_inputs(wildcards):
    return GRID.judge_inputs(wildcards.judge)


def get_judge_gpus(wildcards):
    return GRID.judge_gpus(wildcards.judge)


def get_ensemble_inputs(wildcards):
    return GRID.ensemble_inputs(
        wildcards.judge,
        wildcards.model,
        wildcards.bench,
        wildcards.variant,
        wildcards.seed,
    )


def get_table_inputs(wildcards):
    return GRID.table_inputs()


def get_sample_inputs(wildcards):
    return GRID.sample_inputs()


def get_agreement_inputs(wildcards):
    return GRID.agreement_inputs()


def grid_axes():
    return as_json(GRID.axes())


def get_model_gpus(wildcards):
    return GRID.model_gpus(wildcards.model)


# A model's generation jobs run in its backend's conda env (the backend's `env`).
def model_env(wildcards):
    return f"../../envs/{GRID.backend_env(GRID.models[wildcards.model].backend)}.yaml"


# A judge's cells run where its backend runs (an LLM judge on vLLM needs the vLLM env).
def judge_env(wildcards):
    return f"../../envs/{GRID.backend_env(GRID.judge_backend(wildcards.judge))}.yaml"


localrules:
    all,
    parse_answers,
    compute_metrics,
    sample_browser,
    plot_figures,
    training_curves,
    ensemble_verdicts,
    compute_judge_agreement,
    plot_judge_agreement,
    paper_tables,
    compute_acknowledgment,
    plot_acknowledgment,
    compute_early_answering,
    plot_early_answering,
    image_skips,


def stop_model_servers():
    # The idle shared model servers this run started end with it rather than after their idle
    # timeout; a server another run started, or one a cell (of any run) still uses, is left alone.
    from cotprobe.serving.leases import stop_servers

    n = stop_servers(run=RUN_ID)
    if n:
        print(f"stopped {n} idle shared model server(s) this run started")


onsuccess:
    stop_model_servers()


onerror:
    stop_model_servers()
