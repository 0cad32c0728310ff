rule compute_metrics:
    input:
        get_metric_inputs,
    output:
        cells="results/metrics/cells.csv",
        summary="results/metrics/summary.csv",
        auroc="results/metrics/auroc.csv",
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
