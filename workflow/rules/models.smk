rule build_tiny_model:
    output:
        directory("resources/models/{model}"),
    log:
        "logs/build_tiny_model/{model}.log",
    benchmark:
        "benchmarks/build_tiny_model/{model}.tsv"
    conda:
        "../../envs/eval.yaml"
    threads: 2
    params:
        spec=build_spec,
    shell:
        "python -m cotprobe build-model --spec {params.spec:q} --threads {threads}"
        " --out {output} > {log} 2>&1"
