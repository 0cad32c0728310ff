# One model load per model: the cells of a served model (backend hf or vllm) are consumers of
# that model's server, a Snakemake service job. Snakemake runs the server and the stale cells
# together (one group job on one node on a cluster) and terminates the server when they are done;
# each cell still writes its own files and reruns alone when only it is stale. The address file
# exists from the start (empty, then "loading"): cells wait in `connect` until the model is loaded.
rule serve_model:
    input:
        weights=get_model_inputs,
    output:
        service("resources/servers/{model}.json"),
    log:
        "logs/serve_model/{model}.log",
    conda:
        "../../envs/eval.yaml"
    threads: get_server_threads
    resources:
        gpu=get_model_gpus,
    params:
        spec=model_spec,
    shell:
        ": > {output} && exec python -m cotprobe serve-model --model {wildcards.model} --spec {params.spec:q}"
        " --threads {threads} --url-file {output} > {log} 2>&1"


rule generate_completions:
    input:
        prompts="results/prompts/{bench}/{variant}/seed{seed}.jsonl",
        weights=get_model_inputs,
        server=get_server_inputs,
    output:
        generations="results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl",
        logits="results/logits/{model}/{bench}/{variant}/seed{seed}.parquet",
    log:
        "logs/generate_completions/{model}/{bench}/{variant}/seed{seed}.log",
    benchmark:
        "benchmarks/generate_completions/{model}/{bench}/{variant}/seed{seed}.tsv"
    conda:
        "../../envs/eval.yaml"
    threads: get_cell_threads
    resources:
        gpu=get_cell_gpus,
    params:
        spec=model_spec,
        server=server_flag,
    shell:
        "python -m cotprobe generate --model {wildcards.model} --spec {params.spec:q}"
        " --prompts {input.prompts} --seed {wildcards.seed} --threads {threads} {params.server}"
        " --out {output.generations} --logits-out {output.logits} > {log} 2>&1"
