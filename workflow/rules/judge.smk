rule judge_completions:
    input:
        prompts="results/prompts/{bench}/{variant}/seed{seed}.jsonl",
        generations="results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl",
        weights=get_judge_inputs,
    output:
        verdicts="results/verdicts/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl",
    log:
        "logs/judge_completions/{judge}/{model}/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/judge_completions/{judge}/{model}/{bench}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        judge=_alternation(GRID.base_judges),
    conda:
        judge_env
    threads: 1
    resources:
        gpu=get_judge_gpus,
        model_server=SERVER_ARGS,
    params:
        spec=judge_spec,
        # The judge re-reads each answer letter from the generation's text (cotprobe.parsing).
        parser=PARSER_VERSION,
    shell:
        "python -m cotprobe judge --judge {wildcards.judge} --spec {params.spec:q}"
        " --prompts {input.prompts} --generations {input.generations} --threads {threads}"
        " --gpus {resources.gpu} {resources.model_server} --out {output.verdicts} > {log} 2>&1"


# An ensemble's verdicts: its members' verdicts of the same cell, combined.
rule ensemble_verdicts:
    input:
        get_ensemble_inputs,
    output:
        verdicts="results/verdicts/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl",
    log:
        "logs/ensemble_verdicts/{judge}/{model}/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/ensemble_verdicts/{judge}/{model}/{bench}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        judge=_alternation(GRID.ensemble_judges),
    conda:
        "../../envs/eval.yaml"
    params:
        spec=judge_spec,
    shell:
        "python -m cotprobe ensemble --judge {wildcards.judge} --spec {params.spec:q}"
        " --verdicts {input:q} --out {output.verdicts} > {log} 2>&1"
