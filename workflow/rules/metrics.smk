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
