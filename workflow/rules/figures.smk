rule plot_figures:
    input:
        summary="results/metrics/summary.csv",
        effects="results/metrics/effects.csv",
        auroc="results/metrics/auroc.csv",
        aurc="results/metrics/aurc.csv",
        risk_coverage="results/metrics/risk_coverage.csv",
    output:
        accuracy=report(
            "results/figures/accuracy.png",
            caption="../report/accuracy.rst",
            category="Figures",
        ),
        accuracy_pdf="results/figures/accuracy.pdf",
        quadrants=report(
            "results/figures/quadrants.png",
            caption="../report/quadrants.rst",
            category="Figures",
        ),
        quadrants_pdf="results/figures/quadrants.pdf",
        auroc=report(
            "results/figures/auroc.png",
            caption="../report/auroc.rst",
            category="Figures",
        ),
        auroc_pdf="results/figures/auroc.pdf",
        forest=report(
            "results/figures/delta_forest.png",
            caption="../report/delta_forest.rst",
            category="Figures",
        ),
        forest_pdf="results/figures/delta_forest.pdf",
        uncertainty=report(
            "results/figures/uncertainty.png",
            caption="../report/uncertainty.rst",
            category="Figures",
        ),
        uncertainty_pdf="results/figures/uncertainty.pdf",
        risk_coverage=report(
            "results/figures/risk_coverage.png",
            caption="../report/risk_coverage.rst",
            category="Figures",
        ),
        risk_coverage_pdf="results/figures/risk_coverage.pdf",
    log:
        "logs/plot_figures/plot_figures.log",
    benchmark:
        "benchmarks/plot_figures/plot_figures.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        version=FIGURES_VERSION,
        judge=GRID.figure_judge,
    shell:
        "python -m cotprobe figures --summary {input.summary} --auroc {input.auroc} --judge {params.judge}"
        " --effects {input.effects} --aurc {input.aurc} --risk-coverage {input.risk_coverage}"
        " --accuracy {output.accuracy} --quadrants {output.quadrants} --auroc-out {output.auroc}"
        " --forest {output.forest} --uncertainty {output.uncertainty}"
        " --risk-coverage-out {output.risk_coverage} > {log} 2>&1"


rule plot_judge_agreement:
    input:
        agreement="results/metrics/judge_agreement.csv",
    output:
        png=report(
            "results/figures/judge_agreement.png",
            caption="../report/judge_agreement.rst",
            category="Figures",
        ),
        pdf="results/figures/judge_agreement.pdf",
    log:
        "logs/plot_judge_agreement/plot_judge_agreement.log",
    benchmark:
        "benchmarks/plot_judge_agreement/plot_judge_agreement.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        version=FIGURES_VERSION,
    shell:
        "python -m cotprobe agreement-figure --agreement {input.agreement} --out {output.png} > {log} 2>&1"
