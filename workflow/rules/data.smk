rule prepare_benchmark:
    output:
        samples="results/data/{bench}/samples.jsonl",
        report="results/data/{bench}/report.json",
        images=directory("results/data/{bench}/images"),
    log:
        "logs/prepare_benchmark/{bench}.log",
    benchmark:
        "benchmarks/prepare_benchmark/{bench}.tsv"
    conda:
        "../../envs/eval.yaml"
    params:
        spec=bench_spec,
    shell:
        "python -m cotprobe prepare --spec {params.spec:q} --out {output.samples} > {log} 2>&1"
