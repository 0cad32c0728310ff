# The parser's version is not a param here: the generation file keeps the model's raw text (its
# own parse is only for reading by eye; parse_answers and the judges re-read it), and the letter
# scores depend on where <answer> is, never on the letter read from it (backends.base.scoring_point).
rule generate_completions:
    input:
        prompts="results/prompts/{bench}/{variant}/seed{seed}.jsonl",
        weights=get_model_inputs,
    output:
        generations="results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl",
        logits="results/logits/{model}/{bench}/{variant}/seed{seed}.parquet",
    log:
        "logs/generate_completions/{model}/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/generate_completions/{model}/{bench}/{variant}/seed{seed}.tsv"
    conda:
        model_env
    threads: 1
    resources:
        gpu=get_model_gpus,
        model_server=SERVER_ARGS,
    params:
        spec=model_params,
    shell:
        "python -m cotprobe generate --model {wildcards.model} --spec {params.spec:q}"
        " --prompts {input.prompts} --seed {wildcards.seed} --threads {threads} --gpus {resources.gpu}"
        " {resources.model_server} --out {output.generations} --logits-out {output.logits} > {log} 2>&1"
