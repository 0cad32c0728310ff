import re
from pathlib import Path

from snakemake.utils import validate

from cotprobe.workflow import FIGURES_VERSION, METRICS_VERSION, Grid, as_json

# Our validator first: its errors name the bad key and suggest the closest known name.
GRID = Grid.from_config(
    config, Path(workflow.current_basedir) / "../schemas/config.schema.yaml"
)
validate(config, schema="../schemas/config.schema.yaml")
GRID.check_plugins()


def _alternation(ids):
    return "|".join(map(re.escape, ids))


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


def get_metric_inputs(wildcards):
    return GRID.metric_inputs()


def bench_spec(wildcards):
    return as_json(GRID.bench_spec(wildcards.bench))


def variant_spec(wildcards):
    return as_json(GRID.variant_spec(wildcards.variant))


def model_spec(wildcards):
    return as_json(GRID.model_spec(wildcards.model))


def build_spec(wildcards):
    return as_json(GRID.build_spec(wildcards.model))


def judge_spec(wildcards):
    return as_json(GRID.judge_spec(wildcards.judge))


def grid_axes():
    return as_json(GRID.axes())


def get_model_gpus(wildcards):
    return GRID.model_gpus(wildcards.model)


localrules:
    all,
    compute_metrics,
    plot_figures,
