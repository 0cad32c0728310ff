rule plot_figures:
    input:
        summary="results/metrics/summary.csv",
        auroc="results/metrics/auroc.csv",
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
        " --accuracy {output.accuracy} --quadrants {output.quadrants}"
        " --auroc-out {output.auroc} > {log} 2>&1"


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
