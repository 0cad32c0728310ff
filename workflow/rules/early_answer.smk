# Early answering (cotprobe.early_answer): the model's own base think cut at 0-100 % of its tokens,
# pre-filled and closed, the letter distribution read at <answer> (the letter-scoring path, no
# sampling). One cell per (model, bench, seed); the model's shared server serves it like generation.
rule early_answer:
    input:
        prompts="results/prompts/{bench}/base/seed{seed}.jsonl",
        generations="results/generations/{model}/{bench}/base/seed{seed}.jsonl",
        weights=get_model_inputs,
    output:
        table="results/early_answer/{model}/{bench}/seed{seed}.parquet",
    log:
        "logs/early_answer/{model}/{bench}/seed{seed}.log",
    benchmark:
        "benchmarks/early_answer/{model}/{bench}/seed{seed}.tsv"
    conda:
        model_env
    threads: 1
    resources:
        gpu=get_model_gpus,
        model_server=SERVER_ARGS,
    params:
        spec=model_params,
        parser=PARSER_VERSION,
        version=EARLY_VERSION,
    shell:
        "python -m cotprobe early-answer --model {wildcards.model} --spec {params.spec:q}"
        " --prompts {input.prompts} --generations {input.generations} --threads {threads}"
        " --gpus {resources.gpu} {resources.model_server} --out {output.table} > {log} 2>&1"


rule compute_early_answering:
    input:
        GRID.early_files(),
    output:
        table=report(
            "results/metrics/early_answering.csv",
            caption="../report/early_answering_table.rst",
            category="Metrics",
        ),
    log:
        "logs/compute_early_answering/compute_early_answering.log",
    benchmark:
        "benchmarks/compute_early_answering/compute_early_answering.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        axes=as_json(GRID.early_axes()),
        analysis=as_json(GRID.analysis),
        version=METRICS_VERSION,
    shell:
        "python -m cotprobe early-answering --axes {params.axes:q} --analysis {params.analysis:q}"
        " --out {output.table} > {log} 2>&1"


rule plot_early_answering:
    input:
        table="results/metrics/early_answering.csv",
    output:
        png=report(
            "results/figures/early_answering.png",
            caption="../report/early_answering.rst",
            category="Figures",
        ),
        pdf="results/figures/early_answering.pdf",
    log:
        "logs/plot_early_answering/plot_early_answering.log",
    benchmark:
        "benchmarks/plot_early_answering/plot_early_answering.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        version=FIGURES_VERSION,
    shell:
        "python -m cotprobe early-answering-figure --table {input.table} --out {output.png} > {log} 2>&1"
