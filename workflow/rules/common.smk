import functools
import inspect
import re
from pathlib import Path

from snakemake.common import overwrite_function_params
from snakemake.utils import validate

from cotprobe.early_answer import EARLY_VERSION
from cotprobe.specs import ServerSettings
from cotprobe.workflow import (
    FIGURES_VERSION,
    METRICS_VERSION,
    PARSER_VERSION,
    SAMPLES_VERSION,
    Grid,
    as_json,
    export_run_id,
)

# Our validator first: its errors name the bad key and suggest the closest known name.
GRID = Grid.from_config(
    config, Path(workflow.current_basedir) / "../schemas/config.schema.yaml"
)
validate(config, schema="../schemas/config.schema.yaml")
GRID.check_plugins()

# How the cells of one model share one load (cotprobe.serving.leases.attach), passed to the
# model-loading jobs as the resource model_server (in their shell text as {resources.model_server}).
# A resource, not a param, because these settings change no output: Snakemake reruns a job whose
# params changed, never one whose resources did. (SLURM jobs get it like any other resource.)
SERVER_ARGS = ServerSettings.from_config(config).as_args()
# This run's id, inherited by its jobs: the servers its cells start record it, and the run's end
# stops only those, and only when idle.
RUN_ID = export_run_id(main_process=workflow.is_main_process)


def _alternation(ids):
    # An empty list matches nothing (e.g. no ensemble configured).
    return "|".join(map(re.escape, ids)) or "(?!)"


wildcard_constraints:
    model=_alternation(GRID.models),
    bench=_alternation(GRID.benchmarks),
    variant=_alternation(GRID.variants),
    judge=_alternation(GRID.judges),
    seed=r"\d+",


def job_function(func):
    # Snakemake reads a job function's signature each time it calls it (inspect.signature: about a
    # fifth of `snakemake -n` on the paper grid); its own helpers tell it the parameters once.
    overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def get_final_output():
    return GRID.final_targets()


@job_function
def get_model_inputs(wildcards):
    return GRID.model_inputs(wildcards.model)


@job_function
def get_perturb_reports(wildcards):
    return GRID.perturb_reports()


@job_function
def get_metric_inputs(wildcards):
    return GRID.metric_inputs()


# A spec's JSON, once per key: thousands of jobs share a model's, a judge's or a variant's.
@functools.cache
def _json(spec, key):
    return as_json(spec(key))


@job_function
def bench_spec(wildcards):
    return _json(GRID.bench_spec, wildcards.bench)


@job_function
def variant_spec(wildcards):
    return _json(GRID.variant_spec, wildcards.variant)


@job_function
def model_params(wildcards):
    return _json(GRID.model_params, wildcards.model)


@job_function
def build_spec(wildcards):
    return _json(GRID.build_spec, wildcards.model)


@job_function
def training_data_spec(wildcards):
    return _json(GRID.training_data_spec, wildcards.data)


@job_function
def get_train_inputs(wildcards):
    return GRID.train_inputs(wildcards.run)


@job_function
def get_train_job_inputs(wildcards):
    return GRID.train_job_inputs(wildcards.run, wildcards.seed)


@job_function
def get_train_gpus(wildcards):
    return GRID.train_gpus(wildcards.run)


@job_function
def train_spec(wildcards):
    return _json(GRID.train_spec, wildcards.run)


# The params derived from a job's input or output are not recorded by Snakemake (not rerun triggers).
@job_function
def train_base(wildcards, input):
    # The built base model's dir (an input), else its hub id.
    return input.base[0] if input.base else GRID.train_base(wildcards.run)


@job_function
def train_samples(wildcards):
    return GRID.train_samples_option(wildcards.run)


@job_function
def train_dir(wildcards, output):
    # The dir holding the step dirs (the outputs).
    return str(Path(output[0]).parent)


@job_function
def verl_dir(wildcards, output):
    # The dir holding verl/ (the outputs).
    return str(Path(output.parquet).parent.parent)


@job_function
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


@job_function
def judge_spec(wildcards):
    return _json(GRID.judge_spec, wildcards.judge)


@job_function
def ack_spec(wildcards):
    return _json(GRID.ack_spec, wildcards.judge)


@job_function
def get_judge_inputs(wildcards):
    return GRID.judge_inputs(wildcards.judge)


@job_function
def get_judge_gpus(wildcards):
    return GRID.judge_gpus(wildcards.judge)


@job_function
def get_ensemble_inputs(wildcards):
    return GRID.ensemble_inputs(
        wildcards.judge,
        wildcards.model,
        wildcards.bench,
        wildcards.variant,
        wildcards.seed,
    )


@job_function
def get_table_inputs(wildcards):
    return GRID.table_inputs()


@job_function
def get_sample_inputs(wildcards):
    return GRID.sample_inputs()


@job_function
def get_agreement_inputs(wildcards):
    return GRID.agreement_inputs()


def grid_axes():
    return as_json(GRID.axes())


@job_function
def get_model_gpus(wildcards):
    return GRID.model_gpus(wildcards.model)


# A model's generation jobs run in its backend's conda env (the backend's `env`).
@job_function
def model_env(wildcards):
    return f"../../envs/{GRID.backend_env(GRID.models[wildcards.model].backend)}.yaml"


# A judge's cells run where its backend runs (an LLM judge on vLLM needs the vLLM env).
@job_function
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
