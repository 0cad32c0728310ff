# cotprobe: robustness and chain-of-thought consistency of RL-finetuned VLMs.
#
# Path grammar (stage first, then the grid axes in this order):
#   results/data/{bench}/samples.jsonl
#   results/prompts/{bench}/{variant}/seed{seed}.jsonl (an image variant also: seed{seed}.images/, seed{seed}.report.json)
#   results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl
#   results/logits/{model}/{bench}/{variant}/seed{seed}.parquet
#   results/parsed/{model}/{bench}/{variant}/seed{seed}.jsonl
#   results/verdicts/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl
#   results/acknowledgment/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl (planted variants only)
#   results/early_answer/{model}/{bench}/seed{seed}.parquet (the base think cut at 0-100 %)
#   results/metrics/{cells,summary,auroc}.csv, results/figures/*.{png,pdf}
#   results/training/data/{data}/samples.jsonl, results/training/{run}/seed{seed}/step{N}/ (model {run}-s{seed}-step{N})
#   results/metrics/training_curves.csv
#   logs/<rule>/<wildcards>.log, benchmarks/<rule>/<wildcards>.tsv
from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


# The default study, unless the command line names another: `--configfile my.yaml` then replaces
# it instead of being merged into it (a study's models must not inherit the tiny one).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/perturb.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/parse.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/acknowledge.smk"
include: "workflow/rules/early_answer.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/train.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
