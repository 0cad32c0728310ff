rule compute_metrics:
    input:
        get_metric_inputs,
    output:
        cells=report(
            "results/metrics/cells.csv",
            caption="../report/cells.rst",
            category="Metrics",
        ),
        summary=report(
            "results/metrics/summary.csv",
            caption="../report/summary.rst",
            category="Metrics",
        ),
        auroc=report(
            "results/metrics/auroc.csv",
            caption="../report/auroc_table.rst",
            category="Metrics",
        ),
    log:
        "logs/compute_metrics/compute_metrics.log",
    benchmark:
        "benchmarks/compute_metrics/compute_metrics.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        axes=grid_axes(),
        version=METRICS_VERSION,
    shell:
        "python -m cotprobe metrics --axes {params.axes:q} --cells {output.cells}"
        " --summary {output.summary} --auroc {output.auroc} > {log} 2>&1"


# Only a target with two or more judges (GRID.agreement_judges).
rule compute_judge_agreement:
    input:
        get_agreement_inputs,
    output:
        agreement=report(
            "results/metrics/judge_agreement.csv",
            caption="../report/judge_agreement_table.rst",
            category="Metrics",
        ),
    log:
        "logs/compute_judge_agreement/compute_judge_agreement.log",
    benchmark:
        "benchmarks/compute_judge_agreement/compute_judge_agreement.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        axes=grid_axes(),
        judges=as_json(GRID.agreement_judges),
        version=METRICS_VERSION,
    shell:
        "python -m cotprobe agreement --axes {params.axes:q} --judges {params.judges:q}"
        " --out {output.agreement} > {log} 2>&1"
