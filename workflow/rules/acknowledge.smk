# Does the think admit the plant? (cotprobe.acknowledgment) Under each planted variant, the items
# whose answer moved to the planted option against the same model's base answer, and whether the
# think says where that came from: per cell, then a table with intervals and a figure.
rule acknowledge_plants:
    input:
        prompts="results/prompts/{bench}/{variant}/seed{seed}.jsonl",
        base="results/generations/{model}/{bench}/base/seed{seed}.jsonl",
        generations="results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl",
        weights=get_judge_inputs,
    output:
        rows="results/acknowledgment/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl",
    log:
        "logs/acknowledge_plants/{judge}/{model}/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/acknowledge_plants/{judge}/{model}/{bench}/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        judge=_alternation(GRID.ack_judges),
        variant=_alternation(GRID.ack_variants),
    conda:
        judge_env
    threads: 1
    resources:
        gpu=get_judge_gpus,
        model_server=SERVER_ARGS,
    params:
        spec=ack_spec,
        parser=PARSER_VERSION,
    shell:
        "python -m cotprobe acknowledge --judge {wildcards.judge} --spec {params.spec:q}"
        " --prompts {input.prompts} --base {input.base} --generations {input.generations}"
        " --threads {threads} --gpus {resources.gpu} {resources.model_server} --out {output.rows} > {log} 2>&1"


rule compute_acknowledgment:
    input:
        GRID.ack_files(),
    output:
        table=report(
            "results/metrics/acknowledgment.csv",
            caption="../report/acknowledgment_table.rst",
            category="Metrics",
        ),
    log:
        "logs/compute_acknowledgment/compute_acknowledgment.log",
    benchmark:
        "benchmarks/compute_acknowledgment/compute_acknowledgment.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        axes=as_json(GRID.ack_axes()),
        analysis=as_json(GRID.analysis),
        version=METRICS_VERSION,
    shell:
        "python -m cotprobe acknowledgment --axes {params.axes:q} --analysis {params.analysis:q}"
        " --out {output.table} > {log} 2>&1"


rule plot_acknowledgment:
    input:
        table="results/metrics/acknowledgment.csv",
    output:
        png=report(
            "results/figures/acknowledgment.png",
            caption="../report/acknowledgment.rst",
            category="Figures",
        ),
        pdf="results/figures/acknowledgment.pdf",
    log:
        "logs/plot_acknowledgment/plot_acknowledgment.log",
    benchmark:
        "benchmarks/plot_acknowledgment/plot_acknowledgment.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        version=FIGURES_VERSION,
    shell:
        "python -m cotprobe acknowledgment-figure --table {input.table} --out {output.png} > {log} 2>&1"
