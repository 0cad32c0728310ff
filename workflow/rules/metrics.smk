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
        effects=report(
            "results/metrics/effects.csv",
            caption="../report/effects.rst",
            category="Metrics",
        ),
        auroc=report(
            "results/metrics/auroc.csv",
            caption="../report/auroc_table.rst",
            category="Metrics",
        ),
        aurc=report(
            "results/metrics/aurc.csv",
            caption="../report/aurc.rst",
            category="Metrics",
        ),
        risk_coverage=report(
            "results/metrics/risk_coverage.csv",
            caption="../report/risk_coverage_table.rst",
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
        analysis=as_json(GRID.analysis),
        version=METRICS_VERSION,
    threads: 2
    shell:
        "python -m cotprobe metrics --axes {params.axes:q} --analysis {params.analysis:q} --threads {threads}"
        " --cells {output.cells} --summary {output.summary} --effects {output.effects}"
        " --auroc {output.auroc} --aurc {output.aurc} --risk-coverage {output.risk_coverage}"
        " > {log} 2>&1"


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
        analysis=as_json(GRID.analysis),
        version=METRICS_VERSION,
    shell:
        "python -m cotprobe agreement --axes {params.axes:q} --judges {params.judges:q}"
        " --analysis {params.analysis:q} --out {output.agreement} > {log} 2>&1"


# The paper's tables (cotprobe.tables) as CSV, and one HTML page of them for the report.
rule paper_tables:
    input:
        unpack(get_table_inputs),
    output:
        table1="results/tables/table1_accuracy.csv",
        delta="results/tables/table_delta.csv",
        auroc="results/tables/table_auroc.csv",
        agreement="results/tables/table3_agreement.csv",
        abstain="results/tables/table_abstain.csv",
        audit="results/tables/audit.csv",
        html=report(
            "results/tables/tables.html",
            caption="../report/tables.rst",
            category="Tables",
        ),
    log:
        "logs/paper_tables/paper_tables.log",
    benchmark:
        "benchmarks/paper_tables/paper_tables.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        analysis=as_json(GRID.analysis),
        agreement=GRID.table_agreement_option,
        version=METRICS_VERSION,
    shell:
        "python -m cotprobe tables --summary {input.summary} --effects {input.effects}"
        " --auroc {input.auroc} --cells {input.cells} {params.agreement}"
        " --analysis {params.analysis:q} --out-dir results/tables > {log} 2>&1"


# Every cell's samples in one table, and a static HTML browser over it (opens from file://).
rule sample_browser:
    input:
        get_sample_inputs,
    output:
        table="results/samples/samples.parquet",
        browser=report(
            "results/samples/browser.html",
            caption="../report/samples.rst",
            category="Samples",
        ),
    log:
        "logs/sample_browser/sample_browser.log",
    benchmark:
        "benchmarks/sample_browser/sample_browser.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        axes=grid_axes(),
        version=SAMPLES_VERSION,
    shell:
        "python -m cotprobe samples --axes {params.axes:q} --table {output.table}"
        " --browser {output.browser} > {log} 2>&1"


# Only with an image variant: how many samples each image cell kept and skipped, per category and
# reason (the transform's effect on a skipped sample's answer is not known).
rule image_skips:
    input:
        reports=get_perturb_reports,
    output:
        table=report(
            "results/metrics/image_skips.csv",
            caption="../report/image_skips.rst",
            category="Metrics",
        ),
    log:
        "logs/image_skips/image_skips.log",
    benchmark:
        "benchmarks/image_skips/image_skips.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        version=METRICS_VERSION,
    shell:
        "python -m cotprobe image-skips --out {output.table} {input.reports} > {log} 2>&1"
