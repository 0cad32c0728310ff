rule judge_completions:
    input:
        prompts="results/prompts/{bench}/{variant}/seed{seed}.jsonl",
        generations="results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl",
    output:
        verdicts="results/verdicts/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl",
    log:
        "logs/judge_completions/{judge}/{model}/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/judge_completions/{judge}/{model}/{bench}/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        spec=judge_spec,
    shell:
        "python -m cotprobe judge --judge {wildcards.judge} --spec {params.spec:q}"
        " --prompts {input.prompts} --generations {input.generations}"
        " --out {output.verdicts} > {log} 2>&1"
